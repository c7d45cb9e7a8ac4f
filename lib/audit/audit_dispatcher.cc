#include "lib/audit/audit_dispatcher.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/crypto/digest.h"
#include "lib/util/mutex.h"

namespace strongbox::audit {

absl::StatusOr<std::string> HashForAudit(absl::string_view salt,
                                         absl::string_view value) {
  absl::StatusOr<crypto::Sha256Digest> mac = crypto::HmacSha256(salt, value);
  if (!mac.ok()) return mac.status();
  return absl::StrCat(
      "hmac-sha256:",
      absl::BytesToHexString(absl::string_view(
          reinterpret_cast<const char*>(mac->data()), mac->size())));
}

// One sink, its queue and its thread. Shared by the dispatcher and the
// thread (std::enable_shared_from_this): a thread abandoned by Shutdown
// (its sink hung past the timeout) keeps the worker, the sink and the queue
// alive until its write returns, then exits, touching nothing else.
class AuditDispatcher::Worker
    : public std::enable_shared_from_this<AuditDispatcher::Worker> {
 public:
  // The longest a queued response entry waits for a batch to ride with.
  static constexpr absl::Duration kUnwaitedDelay = absl::Milliseconds(20);
  // The most queued entries a caller's direct write takes along.
  static constexpr size_t kMaxRiders = 32;

  // One entry on its way to the sink. `entry` and `waited` are written
  // before the entry is queued and only read afterwards; `done` and
  // `status` are guarded by the worker's mu_.
  struct Pending {
    AuditEntry entry;
    bool waited = true;  // false: nobody waits (a response entry)
    bool done = false;
    absl::Status status;
  };

  // `on_unwaited_failure` is told, on this worker's thread, of every failed
  // write of an entry nobody waits for.
  Worker(SinkOptions options,
         std::function<void(const AuditFailure&)> on_unwaited_failure)
      : on_unwaited_failure_(std::move(on_unwaited_failure)),
        name_(std::move(options.name)),
        sink_(std::move(options.sink)),
        timeout_(options.timeout),
        max_queue_(options.max_queue) {
    direct_.store(!sink_->blocking(), std::memory_order_relaxed);
    set_salt(options.salt.empty() ? SecretBytes::Random(32)
                                  : std::move(options.salt));
  }

  // Starts the sink's thread (once, right after construction: the thread
  // holds a reference).
  void Start() {
    thread_ = std::thread([self = shared_from_this()] { self->Run(); });
  }

  // Asks the thread to write what is queued and stop.
  void RequestStop() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
    }
    mu_.SignalAll();
  }

  // Waits for the thread until `deadline` (real time): joins it if it
  // stopped, else abandons it (its sink is inside a write that does not
  // return): it will exit once that write returns, telling no one of its
  // outcome, and drop what is still queued. Either way, once this returns
  // the thread never calls on_unwaited_failure_ again. REQUIRES:
  // RequestStop() was called.
  void Shutdown(absl::Time deadline) {
    bool stopped;
    {
      MutexLock lock(&mu_);
      stopped = mu_.AwaitWithTimeout(
          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exited_; },
          std::max(deadline - absl::Now(), absl::ZeroDuration()));
      if (!stopped) {
        abandoned_ = true;
        // A failure report in progress is short (observers return
        // promptly); after it, none starts (Run checks abandoned_).
        mu_.Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return reporting_ == 0;
        });
      }
    }
    if (stopped) {
      thread_.join();
    } else {
      thread_.detach();
    }
  }

  const std::string& name() const { return name_; }
  absl::Duration timeout() const { return timeout_; }
  bool enabled() const { return enabled_.load(std::memory_order_acquire); }
  // Request entries are written on the caller's thread (a non-blocking
  // sink that has not yet overrun its timeout).
  bool direct() const { return direct_.load(std::memory_order_acquire); }
  void demote() { direct_.store(false, std::memory_order_release); }
  void set_enabled(bool e) { enabled_.store(e, std::memory_order_release); }
  std::shared_ptr<const SecretBytes> salt() const {
    MutexLock lock(&salt_mu_);
    return salt_;
  }
  void set_salt(SecretBytes salt) {
    auto fresh = std::make_shared<const SecretBytes>(std::move(salt));
    MutexLock lock(&salt_mu_);
    salt_.swap(fresh);
    // The old salt is wiped (SecretBytes) when `fresh` goes, outside the
    // lock, once no entry in flight holds it.
  }
  AuditSink* sink() { return sink_.get(); }

  // Queues `entry`; null (and *reason set) if the sink is hung or its queue
  // is full.
  std::shared_ptr<Pending> Submit(AuditEntry entry, bool waited,
                                  AuditFailure::Reason* reason) {
    auto pending = std::make_shared<Pending>();
    pending->entry = std::move(entry);
    pending->waited = waited;
    {
      MutexLock lock(&mu_);
      if (hung_) {
        *reason = AuditFailure::Reason::kHung;
        return nullptr;
      }
      if (queue_.size() >= max_queue_) {
        *reason = AuditFailure::Reason::kQueueFull;
        return nullptr;
      }
      queue_.push_back(pending);
      if (!waited) return pending;  // rides with the next batch (Run)
      ++waited_queued_;
    }
    mu_.SignalAll();
    return pending;
  }

  // Waits up to `wait` for `pending`; false on timeout (the sink is then
  // marked hung until its current write returns).
  bool Await(const std::shared_ptr<Pending>& pending, absl::Duration wait,
             absl::Status* status) {
    MutexLock lock(&mu_);
    Pending* p = pending.get();
    const bool done = mu_.AwaitWithTimeout([p] { return p->done; }, wait);
    if (!done) {
      hung_ = true;
      return false;
    }
    *status = p->status;
    return true;
  }

  // Waits until everything queued has been written, at most `wait`.
  bool Flush(absl::Duration wait) {
    MutexLock lock(&mu_);
    ++flushers_;
    mu_.SignalAll();
    const bool done = mu_.AwaitWithTimeout(
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return queue_.empty() && !in_write_ && riders_out_ == 0;
        },
        wait);
    --flushers_;
    return done;
  }

  // For a request entry written on the caller's thread (direct()): moves
  // up to kMaxRiders queued entries nobody waits for (response entries)
  // into `riders`, to go in front of it in the same write — one write(2)
  // instead of two, and no batch from the sink's thread contending with
  // the caller's write. Takes nothing while the sink's thread is writing
  // (its batch holds older entries: the file keeps their order). Every
  // call is followed by EndRiders once they are written (Flush waits).
  void TakeRiders(std::vector<std::shared_ptr<Pending>>* riders) {
    MutexLock lock(&mu_);
    ++riders_out_;
    if (in_write_) return;
    while (!queue_.empty() && !queue_.front()->waited &&
           riders->size() < kMaxRiders) {
      riders->push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  void EndRiders() {
    bool flushing;
    {
      MutexLock lock(&mu_);
      --riders_out_;
      flushing = flushers_ > 0;
    }
    // Only a Flush waits on riders: waking the sink's thread for nothing
    // would cost two context switches per request.
    if (flushing) mu_.SignalAll();
  }

 private:
  void Run() {
    std::vector<std::shared_ptr<Pending>> batch;
    std::vector<const AuditEntry*> entries;
    for (;;) {
      {
        MutexLock lock(&mu_);
        // Wake for a waited entry, a flush or stop; entries nobody waits
        // for (responses) are not worth a wake-up of their own: they go
        // with the next batch, or after kUnwaitedDelay at the latest.
        mu_.AwaitWithTimeout(
            [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
              return stop_ || waited_queued_ > 0 ||
                     (flushers_ > 0 && !queue_.empty());
            },
            kUnwaitedDelay);
        if (abandoned_ || (queue_.empty() && stop_)) {
          // Stopped with everything written, or abandoned (the rest of the
          // queue goes with the worker).
          exited_ = true;
          mu_.SignalAll();
          return;
        }
        if (queue_.empty()) continue;
        batch.assign(queue_.begin(), queue_.end());
        queue_.clear();
        waited_queued_ = 0;
        in_write_ = true;
      }
      entries.clear();
      for (const auto& p : batch) entries.push_back(&p->entry);
      const absl::Status s = sink_->WriteBatch(entries);
      if (!s.ok() && BeginReport()) {
        for (const auto& p : batch) {
          if (!p->waited) {
            on_unwaited_failure_(AuditFailure{
                name_, p->entry.kind, AuditFailure::Reason::kFailed, s});
          }
        }
        EndReport();
      }
      {
        MutexLock lock(&mu_);
        for (const auto& p : batch) {
          p->done = true;
          p->status = s;
        }
        hung_ = false;  // it answered
        in_write_ = false;
      }
      mu_.SignalAll();
      batch.clear();
    }
  }

  // Whether the dispatcher may still be told of failures (not abandoned);
  // if so, EndReport must follow.
  bool BeginReport() {
    MutexLock lock(&mu_);
    if (abandoned_) return false;
    ++reporting_;
    return true;
  }
  void EndReport() {
    {
      MutexLock lock(&mu_);
      --reporting_;
    }
    mu_.SignalAll();
  }

  // Constant after construction.
  const std::function<void(const AuditFailure&)> on_unwaited_failure_;
  const std::string name_;
  const std::unique_ptr<AuditSink> sink_;
  mutable Mutex salt_mu_;
  std::shared_ptr<const SecretBytes> salt_ ABSL_GUARDED_BY(salt_mu_);
  const absl::Duration timeout_;
  const size_t max_queue_;
  std::atomic<bool> enabled_{true};
  std::atomic<bool> direct_{false};

  Mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool hung_ ABSL_GUARDED_BY(mu_) = false;
  size_t waited_queued_ ABSL_GUARDED_BY(mu_) = 0;  // waited entries queued
  int flushers_ ABSL_GUARDED_BY(mu_) = 0;          // threads in Flush
  bool in_write_ ABSL_GUARDED_BY(mu_) = false;
  int riders_out_ ABSL_GUARDED_BY(mu_) = 0;  // TakeRiders without EndRiders
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;     // Run returned (or will)
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;  // Shutdown gave up on it
  int reporting_ ABSL_GUARDED_BY(mu_) = 0;       // in on_unwaited_failure_

  std::thread thread_;  // Start(); joined or detached by Shutdown
};

AuditDispatcher::AuditDispatcher(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock()) {}

AuditDispatcher::~AuditDispatcher() {
  // Stop the sink threads first: while they drain they may still Report()
  // into the counters below. All at once, each within its own timeout from
  // now: a hung sink's thread is abandoned (Worker::Shutdown).
  for (const auto& w : workers_) w->RequestStop();
  const absl::Time now = absl::Now();
  for (const auto& w : workers_) w->Shutdown(now + w->timeout());
  workers_.clear();
}

absl::Status AuditDispatcher::AddSink(SinkOptions options) {
  if (options.sink == nullptr) {
    return absl::InvalidArgumentError("audit sink: no sink given");
  }
  if (options.name.empty()) {
    return absl::InvalidArgumentError("audit sink: no name given");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("audit sink: timeout must be positive");
  }
  for (const auto& w : workers_) {
    if (w->name() == options.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("audit sink \"", options.name, "\" already exists"));
    }
  }
  workers_.push_back(std::make_shared<Worker>(
      std::move(options), [this](const AuditFailure& f) { Report(f); }));
  workers_.back()->Start();
  return absl::OkStatus();
}

absl::Status AuditDispatcher::SetSalt(absl::string_view name,
                                      SecretBytes salt) {
  if (salt.empty()) {
    return absl::InvalidArgumentError("audit sink: the salt is empty");
  }
  for (const auto& w : workers_) {
    if (w->name() == name) {
      w->set_salt(std::move(salt));
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no audit sink \"", name, "\""));
}

absl::Status AuditDispatcher::SetEnabled(absl::string_view name, bool enabled) {
  for (const auto& w : workers_) {
    if (w->name() == name) {
      w->set_enabled(enabled);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no audit sink \"", name, "\""));
}

std::vector<std::string> AuditDispatcher::sink_names() const {
  std::vector<std::string> names;
  for (const auto& w : workers_) names.push_back(w->name());
  return names;
}

bool AuditDispatcher::enabled() const {
  for (const auto& w : workers_) {
    if (w->enabled()) return true;
  }
  return false;
}

int AuditDispatcher::Dispatch(AuditEntry::Kind kind, uint64_t id,
                              const AuditEvent& event) {
  const absl::Time now = clock_->Now();
  struct InFlight {
    Worker* worker;
    std::shared_ptr<Worker::Pending> pending;
  };
  std::vector<InFlight> in_flight;
  std::vector<AuditFailure> failures;
  int accepted = 0;
  for (const auto& w : workers_) {
    if (!w->enabled()) continue;
    std::shared_ptr<const SecretBytes> salt;
    AuditEntry e;
    e.kind = kind;
    e.id = id;
    e.time = now;
    if (event.caller != nullptr) {
      e.caller = event.caller->caller;
      e.policies = event.caller->policies;
      e.root = event.caller->root;
    }
    e.operation = event.operation;
    e.path = event.path;
    e.forwarded = event.forwarded;
    e.forwarded_to = event.forwarded_to;
    e.fields.reserve(event.fields.size());
    for (const AuditField& f : event.fields) {
      if (!f.secret) {
        e.fields.emplace_back(f.name, std::string(f.value));
        continue;
      }
      if (salt == nullptr) salt = w->salt();
      absl::StatusOr<std::string> h = HashForAudit(salt->view(), f.value);
      // Never the value: without a hash, the field says so.
      e.fields.emplace_back(
          f.name, h.ok() ? *std::move(h) : std::string("hmac-sha256:error"));
    }
    if (kind == AuditEntry::Kind::kResponse) {
      e.code = event.outcome.code();
      e.error = std::string(event.outcome.message());
      e.index = event.index;
      e.elapsed = event.elapsed;
    }
    // Only a request entry is waited for; a response entry's failure is
    // reported by the sink's thread (Report).
    const bool wait = kind == AuditEntry::Kind::kRequest;
    if (wait && w->direct()) {
      // A non-blocking sink: written here (audit_sink.h, blocking()), with
      // the response entries queued so far in front of it.
      std::vector<std::shared_ptr<Worker::Pending>> riders;
      w->TakeRiders(&riders);
      const absl::Duration began = clock_->MonotonicNow();
      absl::Status written;
      if (riders.empty()) {
        written = w->sink()->Write(e);
      } else {
        std::vector<const AuditEntry*> batch;
        batch.reserve(riders.size() + 1);
        for (const auto& r : riders) batch.push_back(&r->entry);
        batch.push_back(&e);
        written = w->sink()->WriteBatch(batch);
      }
      w->EndRiders();
      if (written.ok()) {
        ++accepted;
      } else {
        failures.push_back(
            {w->name(), kind, AuditFailure::Reason::kFailed, written});
        for (const auto& r : riders) {
          failures.push_back({w->name(), r->entry.kind,
                              AuditFailure::Reason::kFailed, written});
        }
      }
      if (clock_->MonotonicNow() - began > w->timeout()) {
        w->demote();
        failures.push_back({w->name(), kind, AuditFailure::Reason::kTimedOut,
                            absl::OkStatus()});
      }
      continue;
    }
    AuditFailure::Reason reason;
    std::shared_ptr<Worker::Pending> p = w->Submit(std::move(e), wait, &reason);
    if (p == nullptr) {
      failures.push_back({w->name(), kind, reason, absl::OkStatus()});
    } else if (wait) {
      in_flight.push_back({w.get(), std::move(p)});
    } else {
      ++accepted;  // queued
    }
  }
  const absl::Duration start = clock_->MonotonicNow();
  for (InFlight& f : in_flight) {
    absl::Duration wait =
        f.worker->timeout() - (clock_->MonotonicNow() - start);
    if (wait < absl::ZeroDuration()) wait = absl::ZeroDuration();
    absl::Status status;
    if (!f.worker->Await(f.pending, wait, &status)) {
      failures.push_back({f.worker->name(), kind,
                          AuditFailure::Reason::kTimedOut, absl::OkStatus()});
    } else if (!status.ok()) {
      failures.push_back(
          {f.worker->name(), kind, AuditFailure::Reason::kFailed, status});
    } else {
      ++accepted;
    }
  }
  for (const AuditFailure& f : failures) Report(f);
  return accepted;
}

void AuditDispatcher::Report(const AuditFailure& f) {
  if (f.reason == AuditFailure::Reason::kFailed) {
    sink_failures_.fetch_add(1, std::memory_order_relaxed);
  } else {
    sink_timeouts_.fetch_add(1, std::memory_order_relaxed);
  }
  if (f.kind == AuditEntry::Kind::kResponse) {
    response_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  if (options_.observer != nullptr) options_.observer->OnAuditFailure(f);
}

absl::Status AuditDispatcher::LogRequest(const AuditEvent& event,
                                         uint64_t* id_out) {
  const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  if (id_out != nullptr) *id_out = id;
  if (!enabled()) return absl::OkStatus();
  if (Dispatch(AuditEntry::Kind::kRequest, id, event) == 0) {
    requests_refused_.fetch_add(1, std::memory_order_relaxed);
    return absl::UnavailableError(
        "audit: no sink accepted the request entry; request not executed");
  }
  return absl::OkStatus();
}

void AuditDispatcher::LogResponse(uint64_t id, const AuditEvent& event) {
  if (!enabled()) return;
  Dispatch(AuditEntry::Kind::kResponse, id, event);
}

bool AuditDispatcher::Flush(absl::Duration timeout) {
  bool all = true;
  for (const auto& w : workers_) all = w->Flush(timeout) && all;
  return all;
}

absl::Status AuditDispatcher::ReopenSinks() {
  absl::Status first;
  for (const auto& w : workers_) {
    absl::Status s = w->sink()->Reopen();
    if (!s.ok() && first.ok()) {
      first = absl::Status(s.code(), absl::StrCat("audit sink \"", w->name(),
                                                  "\": ", s.message()));
    }
  }
  return first;
}

absl::StatusOr<std::string> AuditDispatcher::HashValue(
    absl::string_view name, absl::string_view value) const {
  for (const auto& w : workers_) {
    if (w->name() == name) return HashForAudit(w->salt()->view(), value);
  }
  return absl::NotFoundError(absl::StrCat("no audit sink \"", name, "\""));
}

AuditDispatcher::Stats AuditDispatcher::stats() const {
  Stats s;
  s.requests_refused = requests_refused_.load(std::memory_order_relaxed);
  s.sink_failures = sink_failures_.load(std::memory_order_relaxed);
  s.sink_timeouts = sink_timeouts_.load(std::memory_order_relaxed);
  s.response_failures = response_failures_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace strongbox::audit
