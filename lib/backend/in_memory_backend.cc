#include "strongbox/in_memory_backend.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/backend/batch.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {
namespace {

// The lease as the backend sees it; shared with the grants it hands out.
struct LeaseCore {
  explicit LeaseCore(Clock* c, absl::Duration poll) : clock(c), poll(poll) {}

  Clock* const clock;
  const absl::Duration poll;

  // Lease expiries are kept on the monotonic clock (as absl::UnixEpoch()
  // + MonotonicNow()), so a wall-clock step neither stretches nor cuts a
  // grant; they are turned into wall time only when handed out.
  absl::Time MonoNow() const {
    return absl::UnixEpoch() + clock->MonotonicNow();
  }
  absl::Time ToWall(absl::Time mono) const {
    return clock->Now() + (mono - MonoNow());
  }

  Mutex mu;
  // current->expiry is monotonic (see MonoNow).
  std::optional<LeaseHolder> current ABSL_GUARDED_BY(mu);
  absl::Duration current_ttl ABSL_GUARDED_BY(mu);
  FenceToken last_fence ABSL_GUARDED_BY(mu) = kNoFence;

  // True when `fence` is the current, unexpired grant.
  bool IsCurrent(FenceToken fence, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return current.has_value() && current->fence == fence &&
           now < current->expiry;
  }
  // Drops an expired grant so the lease reads as free.
  void Expire(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (current.has_value() && now >= current->expiry) current.reset();
  }
};

class InMemoryGrant final : public LeadershipGrant {
 public:
  InMemoryGrant(std::shared_ptr<LeaseCore> core, LeaseHolder granted,
                absl::Duration ttl)
      : core_(std::move(core)),
        granted_(std::move(granted)),
        ttl_(ttl),
        expiry_(granted_.expiry) {}

  ~InMemoryGrant() override { Release().IgnoreError(); }

  FenceToken fence() const override { return granted_.fence; }
  std::string holder() const override { return granted_.holder; }

  absl::Status Renew() override {
    MutexLock lock(&core_->mu);
    const absl::Time now = core_->MonoNow();
    if (lost_ || !core_->IsCurrent(granted_.fence, now)) {
      lost_ = true;
      return absl::FailedPreconditionError(
          absl::StrCat("lease grant ", granted_.fence, " is lost"));
    }
    core_->current->expiry = now + ttl_;
    expiry_ = core_->current->expiry;
    return absl::OkStatus();
  }

  absl::Status Release() override {
    {
      MutexLock lock(&core_->mu);
      if (core_->current.has_value() &&
          core_->current->fence == granted_.fence) {
        core_->current.reset();
      }
      lost_ = true;
    }
    core_->mu.SignalAll();
    return absl::OkStatus();
  }

  absl::Time expiry() const override {
    MutexLock lock(&core_->mu);
    return core_->ToWall(expiry_);
  }

  bool Lost() override {
    MutexLock lock(&core_->mu);
    return CheckLost();
  }

  bool WaitLost(absl::Time deadline) override {
    // The wall-clock deadline becomes a time left, counted on the
    // monotonic clock.
    const absl::Duration remaining = deadline - core_->clock->Now();
    const absl::Duration start = core_->clock->MonotonicNow();
    MutexLock lock(&core_->mu);
    while (!CheckLost()) {
      if (core_->clock->MonotonicNow() - start >= remaining) return false;
      core_->mu.AwaitWithTimeout(
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) { return lost_; },
          core_->poll);
    }
    return true;
  }

 private:
  bool CheckLost() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
    if (!lost_ && !core_->IsCurrent(granted_.fence, core_->MonoNow())) {
      lost_ = true;
    }
    return lost_;
  }

  const std::shared_ptr<LeaseCore> core_;
  const LeaseHolder granted_;
  const absl::Duration ttl_;
  bool lost_ ABSL_GUARDED_BY(core_->mu) = false;
  absl::Time expiry_ ABSL_GUARDED_BY(core_->mu);  // monotonic
};

class InMemoryBackend final : public Backend, public HaBackend {
 public:
  explicit InMemoryBackend(const InMemoryBackendOptions& options)
      : clock_(options.clock != nullptr ? options.clock : RealClock()),
        limits_(options.limits),
        lease_(std::make_shared<LeaseCore>(clock_, options.poll_interval)) {}

  absl::StatusOr<Entry> Get(absl::string_view key) override {
    absl::StatusOr<Entry> entry(absl::in_place);
    if (absl::Status s = GetInto(key, &*entry); !s.ok()) entry = std::move(s);
    return entry;
  }

  absl::Status GetInto(absl::string_view key, Entry* entry) override {
    {
      ReaderLock lock(&mu_);
      auto it = Find(key);
      if (it != entries_.end()) {
        // Found: the key is valid, since Commit stores no other under the
        // same limits_, so a read that hits skips ValidateKey.
        entry->value.assign(it->second.value);
        entry->version = it->second.version;
        return absl::OkStatus();
      }
    }
    // A miss answers as Get always does: a malformed key is refused, a
    // well-formed one is absent.
    RETURN_IF_ERROR(ValidateKey(key, limits_));
    return absl::NotFoundError(absl::StrCat("no entry at ", key));
  }

  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override {
    RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
    std::vector<std::string> children;
    ReaderLock lock(&mu_);
    auto it = entries_.lower_bound(prefix);
    while (it != entries_.end() && absl::StartsWith(it->first, prefix)) {
      absl::string_view rest =
          absl::string_view(it->first).substr(prefix.size());
      size_t slash = rest.find('/');
      if (slash == absl::string_view::npos) {
        children.emplace_back(rest);
        ++it;
      } else {
        std::string folder(rest.substr(0, slash + 1));
        // Skip every key under this folder: '0' is the byte after '/'.
        std::string next = absl::StrCat(prefix, rest.substr(0, slash), "0");
        children.push_back(std::move(folder));
        it = entries_.lower_bound(next);
      }
    }
    std::sort(children.begin(), children.end());
    return children;
  }

  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence) override {
    RETURN_IF_ERROR(ValidateBatch(ops, limits_));
    // Lock order: lease, then entries. The fence check and the write happen
    // under both, so a grant cannot change between them.
    MutexLock lease_lock(&lease_->mu);
    if (fence != kNoFence && !lease_->IsCurrent(fence, lease_->MonoNow())) {
      return StaleFenceError(fence);
    }
    WriterLock lock(&mu_);
    // Each key is looked up once: the batch names every key at most once
    // (ValidateBatch), and std::map iterators survive inserting and erasing
    // other keys.
    using Iterator = decltype(entries_)::iterator;
    absl::InlinedVector<Iterator, 8> found;
    found.reserve(ops.size());
    for (const WriteOp& op : ops) {
      auto it = Find(op.key);
      RETURN_IF_ERROR(CheckPrecondition(
          op, it == entries_.end()
                  ? std::nullopt
                  : std::optional<uint64_t>(it->second.version)));
      found.push_back(it);
    }
    if (!HasWrites(ops)) return revision_;
    const uint64_t revision = ++revision_;
    for (size_t i = 0; i < ops.size(); ++i) {
      const WriteOp& op = ops[i];
      switch (op.kind) {
        case WriteOp::Kind::kPut: {
          Iterator it = found[i];
          if (it == entries_.end()) {
            it = entries_.emplace(op.key, Entry()).first;
            if (indexed_) index_.emplace(it->first, it);
          }
          it->second.value = op.value;
          it->second.version = revision;
          break;
        }
        case WriteOp::Kind::kDelete: {
          if (found[i] != entries_.end()) {
            // Out of the index first: its key is a view of the node's.
            if (indexed_) index_.erase(found[i]->first);
            entries_.erase(found[i]);
          }
          break;
        }
        case WriteOp::Kind::kCheck:
          break;
      }
    }
    ResizeIndex();
    return revision;
  }

  absl::StatusOr<uint64_t> Revision() override {
    ReaderLock lock(&mu_);
    return revision_;
  }

  HaBackend* ha() override { return this; }
  BackendLimits limits() const override { return limits_; }

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override {
    if (options.holder.empty()) {
      return absl::InvalidArgumentError("lease holder value is empty");
    }
    if (options.ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("lease TTL must be positive");
    }
    LeaseCore& core = *lease_;
    // The wall-clock deadline becomes a time left, counted on the
    // monotonic clock, so a wall step back does not stretch the wait.
    const absl::Duration remaining = options.deadline - clock_->Now();
    const absl::Duration start = clock_->MonotonicNow();
    MutexLock lock(&core.mu);
    while (true) {
      if (options.cancel != nullptr && options.cancel->cancelled()) {
        return absl::CancelledError("lease acquire cancelled");
      }
      const absl::Time now = core.MonoNow();
      core.Expire(now);
      if (!core.current.has_value()) {
        LeaseHolder granted{options.holder, ++core.last_fence,
                            now + options.ttl};
        core.current = granted;
        core.current_ttl = options.ttl;
        return std::unique_ptr<LeadershipGrant>(
            new InMemoryGrant(lease_, std::move(granted), options.ttl));
      }
      const absl::Duration left = remaining - (clock_->MonotonicNow() - start);
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            "lease is held by another node past the acquire deadline");
      }
      // Wake on release, or re-read the clock after one poll interval (a
      // fake clock may have moved, the holder may have expired).
      absl::Duration wait = core.poll;
      if (clock_ == RealClock()) {
        wait = std::min(
            {core.current->expiry - now, left, absl::Milliseconds(50)});
        if (options.cancel != nullptr) wait = std::min(wait, core.poll);
      }
      const FenceToken seen = core.current->fence;
      core.mu.AwaitWithTimeout(
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core.mu) {
            return !core.current.has_value() || core.current->fence != seen;
          },
          std::max(wait, absl::Microseconds(50)));
    }
  }

  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override {
    MutexLock lock(&lease_->mu);
    lease_->Expire(lease_->MonoNow());
    std::optional<LeaseHolder> holder = lease_->current;
    if (holder.has_value()) holder->expiry = lease_->ToWall(holder->expiry);
    return holder;
  }

  absl::Status BreakLease(FenceToken fence) override {
    {
      MutexLock lock(&lease_->mu);
      if (lease_->current.has_value() && lease_->current->fence == fence) {
        lease_->current.reset();
      }
    }
    lease_->mu.SignalAll();
    return absl::OkStatus();
  }

 private:
  Clock* const clock_;
  const BackendLimits limits_;
  const std::shared_ptr<LeaseCore> lease_;

  using EntryMap = std::map<std::string, Entry, std::less<>>;

  // Point lookups (Get, a batch's keys) on a map of kIndexFrom entries or
  // more go through index_: one hash of the key instead of a walk of the
  // tree, a key comparison at every level, each over the long prefix that
  // keys share (kv/meta/..., at a thousand keys about 11 levels: a fifth of
  // cluster_bench's KV read profile). List keeps the map's order. The index
  // is built when the map reaches kIndexFrom entries and dropped when it
  // falls below half that (so a map at the edge does not rebuild it every
  // commit); below, its upkeep (a hash per key written or erased) would
  // cost more than the short walk it saves.
  static constexpr size_t kIndexFrom = 64;

  EntryMap::iterator Find(absl::string_view key)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    if (!indexed_) return entries_.find(key);
    auto it = index_.find(key);
    return it == index_.end() ? entries_.end() : it->second;
  }

  // After a commit: builds or drops the index as the map's size asks.
  void ResizeIndex() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!indexed_ && entries_.size() >= kIndexFrom) {
      index_.reserve(entries_.size());
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        index_.emplace(it->first, it);
      }
      indexed_ = true;
    } else if (indexed_ && entries_.size() < kIndexFrom / 2) {
      index_ = {};
      indexed_ = false;
    }
  }

  // Held only for a map operation and a copy: waiters spin first.
  SharedMutex mu_{SharedMutex::Waiting::kSpinFirst};
  EntryMap entries_ ABSL_GUARDED_BY(mu_);
  // Every key of entries_ (a view of the node's own key, which stays where
  // it is until the node is erased) to its node, while indexed_.
  absl::flat_hash_map<absl::string_view, EntryMap::iterator> index_
      ABSL_GUARDED_BY(mu_);
  bool indexed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<Backend> NewInMemoryBackend(
    const InMemoryBackendOptions& options) {
  return std::make_unique<InMemoryBackend>(options);
}

}  // namespace strongbox
