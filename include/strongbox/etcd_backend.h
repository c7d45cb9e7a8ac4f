// EtcdBackend: a Backend on a real etcd v3 cluster (3.4 or later), for
// strongbox nodes on more than one machine. An add-on with a target of its
// own (`//:etcd_backend`): it links gRPC, which links OpenSSL 3, so it
// builds only with `--config=openssl` (see lib/etcd/BUILD.bazel).
//
// Layout. Everything lives under `prefix` (default "strongbox/"):
//   <prefix>format     "strongbox-etcd-1": written by the first Open()
//   <prefix>revision   empty; rewritten by every Commit() that writes, so
//                      its mod_revision is this backend's Revision()
//   <prefix>lock       the leadership lock: the holder value, attached to
//                      the holder's etcd lease
//   <prefix>data/<path> the entries
// Open() refuses a prefix that holds keys but no format record
// (FAILED_PRECONDITION): it belongs to something else.
//
// Versions are etcd revisions: an entry's version is its mod_revision, and a
// write returns the revision of the Txn that applied it. Every Commit() is
// one etcd Txn: the preconditions are its compares (IfAbsent: create
// revision 0; IfVersion: mod_revision), the writes its success branch.
// Reads (Get, List, Revision) are linearizable by default.
//
// Leadership. Acquire() grants an etcd lease with the TTL (rounded up to
// whole seconds, as etcd counts them) and, in one Txn that succeeds only if
// <prefix>lock is absent, creates the lock key with that lease and the
// holder value. The fence is the lock key's create_revision, which etcd
// makes strictly increasing. Every fenced Commit() adds the compare
// "<prefix>lock's create_revision == fence" to its Txn, so etcd itself
// refuses the write of a deposed holder (StaleFenceError, nothing applied).
// A waiting Acquire() watches the lock key (no polling loop; a safety
// re-check runs every `watch_check_interval`). Renew() is one round trip on
// the lease's KeepAlive stream. A grant is lost when its keepalive is not
// answered before its local deadline (expiry(): the time before the grant
// or the last successful renewal was sent, plus the TTL, never later than
// etcd's own expiry), when the watch sees the lock key deleted or
// re-created (an operator's `etcdctl del <prefix>lock`, BreakLease, lease
// expiry), or when a fenced write is refused. Release() revokes the lease,
// so a waiting contender is granted at once.
//
// Endpoint failover. Calls go to one endpoint at a time; one that fails or
// does not answer within `request_timeout` is left for the next. Reads are
// retried on another endpoint within the request timeout. A write is sent
// at most once: if its outcome is unknown (the connection broke or the
// deadline passed after it was sent) Commit() returns UNAVAILABLE saying
// so, and never resends it, so nothing is applied twice (D7).
//
// Limits. etcd bounds a whole request (`--max-request-bytes`, default
// 1.5 MiB) and the operations of one Txn (`--max-txn-ops`, default 128); a
// batch over either fails with INVALID_ARGUMENT and nothing applied. The
// default value limit (1.25 MiB) leaves room for a 1 MiB secret under the
// default server limit.
//
// History. etcd keeps every old revision until it is compacted; the backend
// never compacts. Run etcd with --auto-compaction-retention (e.g. "1h") or
// compact from operations; a watch that meets a compacted revision simply
// re-reads the lock key.
//
// Thread-safety: every method is safe to call concurrently from any thread.
// Ownership: grants must be destroyed before the backend.
#ifndef STRONGBOX_ETCD_BACKEND_H_
#define STRONGBOX_ETCD_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/clock.h"

namespace strongbox {

struct EtcdBackendOptions {
  // The cluster's client URLs, as etcd prints them: "http://host:port" or
  // "https://host:port" (all of one scheme). REQUIRES: at least one.
  std::vector<std::string> endpoints;

  // Every key lives under this prefix. REQUIRES: non-empty, ends with '/',
  // no control bytes. Default: "strongbox/".
  std::string prefix = "strongbox/";

  // Open() fails with UNAVAILABLE when no endpoint connects within this.
  // Default: 2 s.
  absl::Duration dial_timeout = absl::Seconds(2);

  // How long one call may take before its endpoint counts as down and the
  // call fails (UNAVAILABLE; for a write: outcome unknown). Default: 3 s.
  absl::Duration request_timeout = absl::Seconds(3);

  // How often a waiting Acquire() and the lock watch check their endpoint
  // is alive (a stopped member sends no events and no errors). Default: 1 s.
  absl::Duration watch_check_interval = absl::Seconds(1);

  // TLS, for https endpoints: PEM text, or a file to read it from (the
  // *_file field is used when the PEM field is empty). The CA verifies the
  // members; the certificate and key (both or neither) authenticate this
  // client. With https and no CA, the system's roots are used.
  std::string ca_pem, cert_pem, key_pem;
  std::string ca_file, cert_file, key_file;

  // etcd authentication (both or neither). Never logged.
  std::string username, password;

  // Key and value limits (see Limits above). Default: 1 KiB paths,
  // 1.25 MiB values.
  BackendLimits limits = {1024, (1 << 20) + (1 << 18)};

  // Serve Get/List/Revision with serializable reads (the member's local
  // state, maybe behind the leader) instead of linearizable ones: cheaper,
  // for perf standbys that check min_index themselves. Default: false.
  bool serializable_reads = false;

  // Lease time: AcquireOptions::deadline, WaitLost()'s deadline and expiry()
  // are by its Now(); local grant deadlines count on its MonotonicNow().
  // Not owned. Default: RealClock().
  Clock* clock = nullptr;
};

class EtcdBackend : public Backend {
 public:
  // Connects (within dial_timeout), checks the prefix and, if it is empty,
  // writes the format record. INVALID_ARGUMENT for bad options,
  // UNAVAILABLE when no endpoint answers (the message carries gRPC's reason,
  // e.g. a failed TLS handshake), UNAUTHENTICATED / PERMISSION_DENIED for
  // missing or wrong credentials, FAILED_PRECONDITION for a prefix that
  // holds something else.
  static absl::StatusOr<std::unique_ptr<EtcdBackend>> Open(
      const EtcdBackendOptions& options);

  // The key prefix, as given.
  virtual const std::string& prefix() const = 0;

  // The endpoint calls go to now (for logs and tests).
  virtual std::string current_endpoint() const = 0;

 protected:
  EtcdBackend() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_ETCD_BACKEND_H_
