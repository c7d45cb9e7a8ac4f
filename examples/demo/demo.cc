// The strongbox demo: leader election and fenced writes over a shared
// backend.
//
// Three nodes of one service share a backend (here the in-memory one, so
// the "nodes" are threads of this process). Each campaigns for the HA lease
// with its advertise address; the winner writes with its fence token. The
// story has three acts: an election, a graceful hand-over, and a leader that
// hangs, loses its lease while paused, and wakes up still believing it
// leads. In both hand-overs the deposed leader's late write is refused with
// FAILED_PRECONDITION and changes nothing: that is what fencing buys.
//
// It stays at the Backend level on purpose; the full HA story (seal,
// barrier, coordinator, store) is examples/ha_demo (processes on LMDB) and
// examples/cluster_demo (in one process), which tools/demo runs.
//
// The program checks every promise the story makes and exits non-zero if
// one fails, so it also runs as a test (//examples/demo:demo_test).

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/in_memory_backend.h"

namespace strongbox_demo {
namespace {

using strongbox::Backend;
using strongbox::FenceToken;
using strongbox::HaBackend;
using strongbox::kNoFence;
using strongbox::LeadershipGrant;

// Short, so the "hung leader" act takes well under a second of real time.
constexpr absl::Duration kLeaseTtl = absl::Milliseconds(600);
// How long the story waits for something that should happen at once (or at
// a lease expiry) before calling it a failure.
constexpr absl::Duration kPatience = absl::Seconds(10);

constexpr absl::string_view kMotdKey = "app/config/motd";

// Prints the story, with time since the start, and keeps score of the
// promises checked along the way.
class Narrator {
 public:
  Narrator() : start_(absl::Now()) {}

  void Title(absl::string_view text) { Print(absl::StrCat(text, "\n")); }

  void Act(int number, absl::string_view title) {
    Print(absl::StrFormat("\n== Act %d. %s\n", number, title));
  }

  // One event, stamped with the time since the demo started.
  template <typename... Args>
  void Say(const absl::FormatSpec<Args...>& format, const Args&... args) {
    const int64_t ms = absl::ToInt64Milliseconds(absl::Now() - start_);
    Print(absl::StrFormat("  [%5d ms] %s\n", ms,
                          absl::StrFormat(format, args...)));
  }

  // A promise of the story; a broken one is reported and fails the demo.
  void Check(bool held, absl::string_view promise) {
    ++checks_;
    if (held) {
      Print(absl::StrCat("             ok: ", promise, "\n"));
    } else {
      ++broken_;
      Print(absl::StrCat("             BROKEN: ", promise, "\n"));
    }
  }

  int checks() const { return checks_; }
  int broken() const { return broken_; }

 private:
  void Print(const std::string& text) {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
  }

  const absl::Time start_;
  int checks_ = 0;
  int broken_ = 0;
};

std::string Describe(const absl::Status& status) {
  return status.ok() ? "OK" : status.ToString();
}

class Node;

// Where nodes announce that they won the lease, and where the story waits
// for the next winner.
class Election {
 public:
  void Announce(Node* node, FenceToken fence) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      winners_.emplace_back(node, fence);
    }
    cv_.notify_all();
  }

  // The first node to win with a fence greater than `after`, or nullptr if
  // none does within `timeout`.
  Node* AwaitWinner(FenceToken after, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    Node* found = nullptr;
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
      for (const auto& [node, fence] : winners_) {
        if (fence > after) {
          found = node;
          return true;
        }
      }
      return false;
    });
    return found;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<Node*, FenceToken>> winners_;
};

// One copy of the host service. A background thread campaigns for the
// lease and, once granted, renews it every third of its TTL, until the node
// steps down, is frozen (stops renewing, as a paused process would), or
// stops. A node campaigns once: in a real deployment a deposed node returns
// to standby and campaigns again; here it retires, to keep the story short.
//
// Thread-safe.
class Node {
 public:
  Node(std::string name, std::string address, Backend* backend,
       Election* election)
      : name_(std::move(name)),
        address_(std::move(address)),
        backend_(backend),
        election_(election) {}

  ~Node() { Stop(); }

  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  const std::string& address() const { return address_; }

  // Starts campaigning for the lease in the background.
  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  // The fence of the grant this node holds, or last held.
  FenceToken fence() const {
    std::lock_guard<std::mutex> lock(mu_);
    return fence_;
  }

  // A write as this node's leader code would issue it: fenced with the
  // grant it believes it holds.
  absl::StatusOr<uint64_t> Write(absl::string_view key,
                                 absl::string_view value) {
    return backend_->Put(key, value, fence());
  }

  // Gives the lease up now; a waiting node is granted it at once.
  void StepDown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      step_down_ = true;
    }
    cv_.notify_all();
  }

  // Stops renewing without telling anyone, as a process stuck in a long
  // pause would. The grant lapses at its TTL.
  void Freeze() {
    std::lock_guard<std::mutex> lock(mu_);
    frozen_ = true;
  }

  // Whether the node's grant is known lost (false if it never had one).
  bool GrantLost() {
    std::lock_guard<std::mutex> lock(mu_);
    return grant_ != nullptr && grant_->Lost();
  }

  // Ends the campaign (cancelling a blocked acquire) and releases the lease
  // if held. Idempotent.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cancel_.Cancel();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    HaBackend* ha = backend_->ha();
    strongbox::AcquireOptions options;
    options.holder = address_;
    options.ttl = kLeaseTtl;
    options.cancel = &cancel_;
    absl::StatusOr<std::unique_ptr<LeadershipGrant>> granted =
        ha->Acquire(options);
    if (!granted.ok()) return;  // cancelled: the demo is over
    const FenceToken fence = (*granted)->fence();
    {
      std::lock_guard<std::mutex> lock(mu_);
      grant_ = *std::move(granted);
      fence_ = fence;
    }
    election_->Announce(this, fence);

    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(kLeaseTtl / 3),
                   [&] { return stop_ || step_down_; });
      if (stop_ || step_down_) {
        grant_->Release().IgnoreError();
        return;
      }
      if (frozen_) continue;
      // A failed renewal means the lease is gone: stop acting as leader.
      if (!grant_->Renew().ok()) return;
    }
  }

  const std::string name_;
  const std::string address_;
  Backend* const backend_;
  Election* const election_;
  strongbox::Cancellation cancel_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<LeadershipGrant> grant_;  // guarded by mu_
  FenceToken fence_ = kNoFence;             // guarded by mu_
  bool step_down_ = false;                  // guarded by mu_
  bool frozen_ = false;                     // guarded by mu_
  bool stop_ = false;                       // guarded by mu_
};

// Everything the acts share.
struct Story {
  Narrator narrator;
  std::unique_ptr<Backend> backend;
  Election election;
  std::vector<std::unique_ptr<Node>> nodes;
  // (node, fence) for every leader so far, in order.
  std::vector<std::pair<Node*, FenceToken>> leaders;
};

std::string Others(const Story& story, const Node* except) {
  std::vector<std::string> names;
  for (const auto& node : story.nodes) {
    if (node.get() != except) names.push_back(node->name());
  }
  return absl::StrJoin(names, " and ");
}

// Shows the lease as any node (or an operator) sees it.
void ShowHolder(Story& story) {
  absl::StatusOr<std::optional<strongbox::LeaseHolder>> holder =
      story.backend->ha()->CurrentHolder();
  if (!holder.ok()) {
    story.narrator.Say("reading the lease failed: %s",
                       Describe(holder.status()));
    return;
  }
  if (!holder->has_value()) {
    story.narrator.Say("nobody holds the lease");
    return;
  }
  story.narrator.Say(
      "everyone can read the holder: %s with fence %d, expiring in %d ms",
      (*holder)->holder, (*holder)->fence,
      absl::ToInt64Milliseconds((*holder)->expiry - absl::Now()));
}

// The leader writes; the result and the stored value are shown.
bool LeaderWrites(Story& story, Node* node, absl::string_view value) {
  absl::StatusOr<uint64_t> revision = node->Write(kMotdKey, value);
  if (revision.ok()) {
    story.narrator.Say(
        "%s writes %s = \"%s\" with fence %d: applied at "
        "revision %d",
        node->name(), kMotdKey, value, node->fence(), *revision);
  } else {
    story.narrator.Say("%s writes %s with fence %d: %s", node->name(), kMotdKey,
                       node->fence(), Describe(revision.status()));
  }
  return revision.ok();
}

// A deposed leader's late write: it must be refused and change nothing.
void StaleWriteIsRefused(Story& story, Node* deposed) {
  absl::StatusOr<strongbox::Entry> before = story.backend->Get(kMotdKey);
  absl::StatusOr<uint64_t> revision = deposed->Write(
      kMotdKey, absl::StrCat("stale write from ", deposed->name()));
  story.narrator.Say("%s (deposed) writes %s with its old fence %d: %s",
                     deposed->name(), kMotdKey, deposed->fence(),
                     Describe(revision.status()));
  story.narrator.Check(
      revision.status().code() == absl::StatusCode::kFailedPrecondition,
      "the stale fence is refused with FAILED_PRECONDITION");
  absl::StatusOr<strongbox::Entry> after = story.backend->Get(kMotdKey);
  const bool unchanged = before.ok() && after.ok() &&
                         before->value == after->value &&
                         before->version == after->version;
  if (after.ok()) {
    story.narrator.Say("%s still reads \"%s\" (version %d)", kMotdKey,
                       after->value, after->version);
  }
  story.narrator.Check(unchanged, "nothing of the refused write was applied");
}

// Waits for a node to win with a fence above the last leader's.
Node* AwaitNextLeader(Story& story) {
  const FenceToken last =
      story.leaders.empty() ? kNoFence : story.leaders.back().second;
  Node* winner = story.election.AwaitWinner(last, kPatience);
  if (winner == nullptr) {
    story.narrator.Check(false, absl::StrCat("a node wins the lease within ",
                                             absl::FormatDuration(kPatience)));
    return nullptr;
  }
  story.leaders.emplace_back(winner, winner->fence());
  return winner;
}

// Act 1: three nodes campaign; one wins and writes.
Node* ActElection(Story& story) {
  story.narrator.Act(1, "Three nodes campaign for the lease");
  for (const auto& node : story.nodes) {
    story.narrator.Say("%s starts and campaigns, advertising %s", node->name(),
                       node->address());
    node->Start();
  }
  Node* leader = AwaitNextLeader(story);
  if (leader == nullptr) return nullptr;
  story.narrator.Say("%s won the lease: fence %d, TTL %s, renewed every %s",
                     leader->name(), leader->fence(),
                     absl::FormatDuration(kLeaseTtl),
                     absl::FormatDuration(kLeaseTtl / 3));
  story.narrator.Say("%s wait, blocked in Acquire(), as standbys",
                     Others(story, leader));
  ShowHolder(story);
  absl::StatusOr<std::optional<strongbox::LeaseHolder>> holder =
      story.backend->ha()->CurrentHolder();
  story.narrator.Check(holder.ok() && holder->has_value() &&
                           (*holder)->holder == leader->address() &&
                           (*holder)->fence == leader->fence(),
                       "exactly one holder, and everyone sees who it is");
  story.narrator.Check(
      LeaderWrites(story, leader, absl::StrCat("hello from ", leader->name())),
      "the leader's fenced write is applied");
  return leader;
}

// Act 2: the leader steps down; a standby takes over at once with a higher
// fence; the old leader's late write is refused.
Node* ActHandOver(Story& story, Node* old_leader) {
  story.narrator.Act(2, "A graceful hand-over");
  story.narrator.Say("%s steps down and releases the lease",
                     old_leader->name());
  const absl::Time released = absl::Now();
  old_leader->StepDown();
  Node* leader = AwaitNextLeader(story);
  if (leader == nullptr) return nullptr;
  story.narrator.Say(
      "%s took over %d ms after the release: fence %d", leader->name(),
      absl::ToInt64Milliseconds(absl::Now() - released), leader->fence());
  story.narrator.Check(leader->fence() > old_leader->fence(),
                       "the new fence is greater than the old one");
  ShowHolder(story);
  story.narrator.Check(
      LeaderWrites(story, leader, absl::StrCat("hello from ", leader->name())),
      "the new leader's fenced write is applied");
  StaleWriteIsRefused(story, old_leader);
  return leader;
}

// Act 3: the leader hangs (stops renewing); its lease expires; the last
// standby takes over; the hung leader wakes and its write is refused.
Node* ActHungLeader(Story& story, Node* hung) {
  story.narrator.Act(3, "A leader hangs and its lease expires");
  story.narrator.Say(
      "%s freezes: no more renewals (a long GC pause, a "
      "stuck disk, a stopped VM)",
      hung->name());
  const absl::Time frozen = absl::Now();
  hung->Freeze();
  Node* leader = AwaitNextLeader(story);
  if (leader == nullptr) return nullptr;
  story.narrator.Say(
      "%s took over %d ms later, once the lease expired: "
      "fence %d",
      leader->name(), absl::ToInt64Milliseconds(absl::Now() - frozen),
      leader->fence());
  story.narrator.Check(leader->fence() > hung->fence(),
                       "the new fence is greater than the hung leader's");
  ShowHolder(story);
  story.narrator.Check(
      LeaderWrites(story, leader, absl::StrCat("hello from ", leader->name())),
      "the new leader's fenced write is applied");
  story.narrator.Say(
      "%s wakes up, still believing it leads, and finishes "
      "the write it had started",
      hung->name());
  StaleWriteIsRefused(story, hung);
  const bool lost = hung->GrantLost();
  story.narrator.Say(
      "%s checks its grant: %s", hung->name(),
      lost ? "lost, so it stops acting as leader" : "still held?");
  story.narrator.Check(lost, "the hung leader learns that its grant is lost");
  return leader;
}

void Epilogue(Story& story) {
  story.narrator.Act(4, "Epilogue");
  std::vector<std::string> order;
  for (const auto& [node, fence] : story.leaders) {
    order.push_back(absl::StrCat(node->name(), " (fence ", fence, ")"));
  }
  story.narrator.Say("leaders in order: %s", absl::StrJoin(order, " -> "));
  absl::StatusOr<std::vector<std::string>> children =
      story.backend->List("app/config/");
  if (children.ok()) {
    story.narrator.Say("List(\"app/config/\") = [%s]",
                       absl::StrJoin(*children, ", "));
  }
  absl::StatusOr<strongbox::Entry> motd = story.backend->Get(kMotdKey);
  if (motd.ok()) {
    story.narrator.Say(
        "%s = \"%s\": only leaders holding the current fence "
        "ever wrote it",
        kMotdKey, motd->value);
  }
}

int Main() {
  Story story;
  story.narrator.Title(
      "strongbox demo: leader election with fenced writes "
      "(in-memory backend, real clock)");
  story.backend = strongbox::NewInMemoryBackend();
  const std::pair<const char*, const char*> kNodes[] = {
      {"node-a", "10.0.0.1:8200"},
      {"node-b", "10.0.0.2:8200"},
      {"node-c", "10.0.0.3:8200"},
  };
  for (const auto& [name, address] : kNodes) {
    story.nodes.push_back(std::make_unique<Node>(
        name, address, story.backend.get(), &story.election));
  }

  Node* leader = ActElection(story);
  if (leader != nullptr) leader = ActHandOver(story, leader);
  if (leader != nullptr) leader = ActHungLeader(story, leader);
  Epilogue(story);
  for (auto& node : story.nodes) node->Stop();

  const Narrator& n = story.narrator;
  std::printf("\n%d of %d promises kept.\n", n.checks() - n.broken(),
              n.checks());
  return n.broken() == 0 && leader != nullptr ? 0 : 1;
}

}  // namespace
}  // namespace strongbox_demo

int main() { return strongbox_demo::Main(); }
