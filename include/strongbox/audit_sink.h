// AuditSink: where strongbox writes its audit trail — one entry before a
// request executes and one with its outcome — and the built-in file sink.
//
// An AuditEntry reaches a sink already redacted: every secret value
// (secret data, Transit plaintext and ciphertext, shares, context) is
// replaced by "hmac-sha256:<64 hex>", an HMAC-SHA256 of the value under a
// salt of the sink's own, so an operator holding the salt (or asking the
// node to hash a known value) can grep for a value without the log ever
// holding it. Entries carry no secret byte (D5).
//
// The dispatcher that calls sinks (lib/audit/audit_dispatcher.h) runs each
// sink on a thread of its own and waits for it at most the sink's timeout:
// a request executes only after at least one enabled sink accepted its
// request entry; a failing or hung sink is counted and reported, never
// freezes the caller, and a failed response entry never turns a committed
// write into an error.
//
// Thread safety: the dispatcher calls Write/WriteBatch from one thread per
// sink (and, for a sink whose blocking() is false, Write from the
// requests' threads too), and Reopen from whichever thread the host uses;
// an implementation makes Reopen safe against a concurrent write.
//
// Shutdown (destroying the SecretStore, i.e. its dispatcher) is bounded:
// each sink's thread gets the sink's timeout to write what is queued for
// it and stop. A sink still inside Write/WriteBatch then is abandoned: the
// store is destroyed without waiting, and the sink's thread lives on until
// that call returns, then exits at once — it writes nothing more (entries
// still queued are dropped), reports nothing (the observer and the store
// are not touched again), and frees what it shares only with itself (its
// queue and, for a sink the store owns, the sink). REQUIRES of the host: a
// sink it lends the store (SecretStore::Options::audit_sinks) stays valid
// until every call into it has returned, so before destroying a sink that
// may be hung, make its call return (e.g. close what it blocks on); a sink
// that was not hung at shutdown may be destroyed right after the store.
#ifndef STRONGBOX_AUDIT_SINK_H_
#define STRONGBOX_AUDIT_SINK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace strongbox {

// One audit entry, redacted. Plain value.
struct AuditEntry {
  enum class Kind { kRequest, kResponse };
  Kind kind = Kind::kRequest;
  // Pairs a response entry with its request entry (unique per dispatcher).
  uint64_t id = 0;
  absl::Time time;  // when the entry was made (the store's clock)
  // Who: as the host's CallContext said.
  std::string caller;
  std::vector<std::string> policies;
  bool root = false;
  // What: the operation's name ("kv_put") and the path its policy check
  // used ("app/db", "metadata/app/db", "transit/keys/k", "sys/policy/p").
  std::string operation;
  std::string path;
  // Further request / response details by name ("data.password",
  // "items.0.plaintext", "version"): secret values already replaced by
  // "hmac-sha256:<hex>". None on the entries of a request refused because
  // the node is sealed (it cannot read its salts, so it records no value,
  // hashed or not).
  std::vector<std::pair<std::string, std::string>> fields;
  // Forwarding. A request a performance standby forwards to the active is
  // audited on both nodes (as Vault does), each node's pair of entries
  // with its own id: `forwarded` is true on the active's entries (the
  // request came from a peer), `forwarded_to` is the active's address on
  // the standby's response entry (its outcome is the active's).
  bool forwarded = false;
  std::string forwarded_to;
  // Response entries only: the outcome (absl::StatusCode and message), the
  // index the write was applied at or the read saw, and the time from the
  // request entry to the response.
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string error;
  uint64_t index = 0;
  absl::Duration elapsed;

  // One line of JSON (no trailing newline): the file sink's format.
  std::string ToJsonLine() const;
};

class AuditSink {
 public:
  AuditSink() = default;
  virtual ~AuditSink() = default;
  AuditSink(const AuditSink&) = delete;
  AuditSink& operator=(const AuditSink&) = delete;

  // Records one entry; OK only once it is stored as durably as the sink
  // promises. Any error counts as "not accepted".
  virtual absl::Status Write(const AuditEntry& entry) = 0;
  // Records several entries at once (all or nothing, as far as the sink can
  // tell). The default writes them one by one and stops at the first error.
  virtual absl::Status WriteBatch(absl::Span<const AuditEntry* const> entries);
  // Whether Write may wait on something slow (a disk flush, the network).
  // A sink that answers false promises that Write and WriteBatch return
  // promptly and are safe to call from several threads at once: its
  // request entries are
  // then written on the caller's thread, with no hand-off to the sink's
  // thread and back (the hand-off costs several microseconds per request).
  // Its timeout cannot interrupt such a write: a write that took longer
  // than the timeout still counts as accepted (the entry is stored), is
  // reported (kTimedOut) and counted, and from then on the sink is served
  // from its own thread with its timeout enforced, like a blocking one.
  // Response entries are queued for the sink's thread; a request entry
  // written on a caller's thread takes the ones queued so far along, in
  // front of it in the same WriteBatch (one write instead of two). Default:
  // true.
  virtual bool blocking() const { return true; }
  // Closes and reopens the destination (log rotation: the host calls this
  // after renaming the file, e.g. on SIGHUP — from a thread, not from the
  // signal handler). Default: nothing to do.
  virtual absl::Status Reopen() { return absl::OkStatus(); }
};

// Why a sink did not take an entry, for the host's logs and metrics.
struct AuditFailure {
  enum class Reason { kFailed, kTimedOut, kHung, kQueueFull };
  std::string sink;
  AuditEntry::Kind kind = AuditEntry::Kind::kRequest;
  Reason reason = Reason::kFailed;
  absl::Status status;  // the sink's error for kFailed
};

// Told of every audit failure (SecretStore::Options::audit_observer).
class AuditObserver {
 public:
  virtual ~AuditObserver() = default;
  // Called on the thread that made the entry, or for a response entry that
  // a sink refused, on the thread that wrote it (the sink's, or that of a
  // later request whose entry it went with). Must return promptly and
  // thread-safely.
  virtual void OnAuditFailure(const AuditFailure& failure) = 0;
};

// Counters since the store (its dispatcher) was created.
struct AuditStats {
  uint64_t requests_refused = 0;   // no sink accepted a request entry
  uint64_t sink_failures = 0;      // every kFailed
  uint64_t sink_timeouts = 0;      // every kTimedOut, kHung, kQueueFull
  uint64_t response_failures = 0;  // response entries a sink missed
                                   // (per sink)
};

// The built-in file sink: JSON lines appended to a file.
struct FileAuditSinkOptions {
  // The file; created if missing. REQUIRED.
  std::string path;
  // Permission bits for the file; an existing regular file is set to them
  // too. Default: 0600.
  uint32_t mode = 0600;
  // fsync after every batch, so an accepted entry survives a power loss.
  // Costs a disk flush per batch. Default: false.
  //
  // Without fsync the sink declares itself non-blocking
  // (AuditSink::blocking() false): a request entry is one write(2) to the
  // page cache on the caller's thread, under the sink's lock. Such a write
  // is not bounded by the sink's timeout (a file on a stalled network file
  // system, or a kernel throttling dirty pages, can make it slow): one that
  // overruns it is reported and the sink moves to its own thread for good.
  // With fsync the sink runs on its own thread, each entry within its
  // timeout.
  bool fsync = false;
  // Without fsync, whether the sink declares itself non-blocking (above).
  // false: it runs on its own thread, each entry within its timeout.
  // Default: true.
  bool caller_thread_writes = true;
};

// Opens (creates) the file. INVALID_ARGUMENT without a path; UNAVAILABLE
// if it cannot be opened. Write appends each batch with one write(2), under
// a lock that Reopen also takes, so rotation loses no entry: every entry
// lands whole in the old file or in the new one.
absl::StatusOr<std::unique_ptr<AuditSink>> NewFileAuditSink(
    const FileAuditSinkOptions& options);

}  // namespace strongbox

#endif  // STRONGBOX_AUDIT_SINK_H_
