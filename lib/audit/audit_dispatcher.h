// AuditDispatcher: hands each audit event to every enabled sink, redacted
// with that sink's salt, and decides whether a request may execute.
//
// Semantics (issue 15; what Vault gets wrong, avoided):
//   - LogRequest: OK once at least one enabled sink accepted the request
//     entry within its timeout. Otherwise UNAVAILABLE ("audit: no sink
//     accepted the request entry"): the caller must not execute the
//     request, and nothing is applied. With no enabled sink, auditing is
//     off and every request passes.
//   - A sink that does not answer within its timeout is reported
//     (observer: kTimedOut) and marked hung: until its stuck write returns,
//     later entries fail over it at once instead of waiting again, so a hung
//     sink never freezes callers (Vault #37, #5361, #18943). An entry that
//     timed out stays queued and may still be written late.
//   - LogResponse never fails and never waits: it queues the response entry
//     on each enabled sink and returns (the entry is written with the
//     sink's next batch, or within 20 ms; Flush() writes it now); a sink that
//     refuses it (reported from the sink's thread) or cannot queue it (hung,
//     queue full) is counted (Stats::response_failures) and reported, and the
//     response stands (a committed write stays committed; Vault PR #6484).
//   - Every field marked secret is replaced, per sink, by
//     "hmac-sha256:<hex>" of the value under that sink's salt before the
//     entry leaves the dispatcher; raw values never reach a sink.
//
// Each sink runs on a thread of its own, which drains the sink's queue in
// batches (one WriteBatch per drain), so concurrent requests share a write
// (and an fsync). A sink whose blocking() is false gets its request entries
// written on the caller's thread instead (no hand-off), each with the
// response entries queued before it in the same WriteBatch; one such write
// that overruns the sink's timeout is reported (kTimedOut, the entry still
// accepted) and moves the sink to its thread for good.
//
// Thread-safe. Sinks are added before use (AddSink is not synchronized
// with LogRequest/LogResponse: call it before the dispatcher is shared).
#ifndef STRONGBOX_LIB_AUDIT_AUDIT_DISPATCHER_H_
#define STRONGBOX_LIB_AUDIT_AUDIT_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/clock.h"
#include "strongbox/secret_bytes.h"

namespace strongbox::audit {

// "hmac-sha256:" + the lowercase hex HMAC-SHA256 of `value` under `salt`.
// INTERNAL if the crypto provider fails.
absl::StatusOr<std::string> HashForAudit(absl::string_view salt,
                                         absl::string_view value);

// One request or response detail. `value` is a view: it must outlive the
// LogRequest / LogResponse call (the dispatcher copies only redacted text).
struct AuditField {
  std::string name;
  absl::string_view value;
  bool secret = false;  // hashed per sink; never written as is
};

// What happened, unredacted. Built by the store per request.
struct AuditEvent {
  const CallContext* caller = nullptr;  // REQUIRED
  std::string operation;
  std::string path;
  std::vector<AuditField> fields;
  // AuditEntry::forwarded, AuditEntry::forwarded_to.
  bool forwarded = false;
  std::string forwarded_to;
  // Response only.
  absl::Status outcome;
  uint64_t index = 0;
  absl::Duration elapsed;
};

// Public in strongbox/audit_sink.h.
using AuditFailure = ::strongbox::AuditFailure;
using AuditObserver = ::strongbox::AuditObserver;

class AuditDispatcher {
 public:
  struct Options {
    // Entry times and elapsed times. Not owned. Default: RealClock().
    Clock* clock = nullptr;
    // Told of every sink failure. Not owned. Optional.
    AuditObserver* observer = nullptr;
  };

  struct SinkOptions {
    // Unique among this dispatcher's sinks (shown in reports). REQUIRED.
    std::string name;
    // The sink. Owned by the dispatcher. REQUIRED.
    std::unique_ptr<AuditSink> sink;
    // HMAC key for this sink's secret values. Empty: 32 random bytes until
    // SetSalt (SecretStore keeps each sink's salt behind the barrier and
    // sets it before the first entry). Default: empty.
    SecretBytes salt;
    // Longest wait for this sink to accept one entry. Default: 2 s.
    absl::Duration timeout = absl::Seconds(2);
    // Entries waiting for this sink beyond which new ones are refused at
    // once (kQueueFull). Default: 4096.
    size_t max_queue = 4096;
  };

  using Stats = AuditStats;

  explicit AuditDispatcher(const Options& options);
  // Stops the sink threads, each after writing what is queued for it, but
  // waits for each at most its timeout: a sink whose write has not
  // returned by then is abandoned (audit_sink.h, "Shutdown").
  ~AuditDispatcher();
  AuditDispatcher(const AuditDispatcher&) = delete;
  AuditDispatcher& operator=(const AuditDispatcher&) = delete;

  // INVALID_ARGUMENT for a missing sink or name, a duplicate name, or a
  // non-positive timeout.
  absl::Status AddSink(SinkOptions options);
  // Replaces sink `name`'s salt (SecretStore loads the one kept behind the
  // barrier on unseal). Entries made after the call use it; safe against
  // concurrent LogRequest / LogResponse. INVALID_ARGUMENT for an empty salt,
  // NOT_FOUND for an unknown name.
  absl::Status SetSalt(absl::string_view name, SecretBytes salt);
  // The names of the sinks, in the order added.
  std::vector<std::string> sink_names() const;
  // Enables or disables a sink (a disabled one gets no entries). NOT_FOUND
  // for an unknown name.
  absl::Status SetEnabled(absl::string_view name, bool enabled);
  // Whether any enabled sink exists (auditing is on).
  bool enabled() const;

  // See the file comment. `id_out` receives the entry id for LogResponse.
  absl::Status LogRequest(const AuditEvent& event, uint64_t* id_out);
  void LogResponse(uint64_t id, const AuditEvent& event);

  // Waits until every entry queued so far is written (or failed), at most
  // `timeout` per sink; false if some sink did not finish in time.
  bool Flush(absl::Duration timeout);

  // Reopens every sink (log rotation). The first error, after trying all.
  absl::Status ReopenSinks();

  // `value` hashed as sink `name` writes it (for an operator grepping the
  // log for a known value). NOT_FOUND for an unknown sink.
  absl::StatusOr<std::string> HashValue(absl::string_view name,
                                        absl::string_view value) const;

  Stats stats() const;

 private:
  class Worker;

  // Sends the entry to every enabled sink. A request entry: waits, and
  // returns the number of sinks that accepted it. A response entry: the
  // number that queued it.
  int Dispatch(AuditEntry::Kind kind, uint64_t id, const AuditEvent& event);
  // Counts and reports one failure (any thread).
  void Report(const AuditFailure& failure);

  const Options options_;
  Clock* const clock_;
  std::vector<std::shared_ptr<Worker>> workers_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> requests_refused_{0};
  std::atomic<uint64_t> sink_failures_{0};
  std::atomic<uint64_t> sink_timeouts_{0};
  std::atomic<uint64_t> response_failures_{0};
};

}  // namespace strongbox::audit

#endif  // STRONGBOX_LIB_AUDIT_AUDIT_DISPATCHER_H_
