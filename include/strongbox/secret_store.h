// SecretStore: what a host calls — versioned KV secrets and Transit
// encryption, on top of one node's HaCoordinator.
//
// Every operation is a protobuf store::Request with a matching
// store::Response (strongbox/requests.proto, the public wire protocol). One
// table classifies each operation as a read (changes no storage) or a write
// (ClassifyRequest), and names the engine (KV, Transit) that executes it.
// Handle() executes a request on this node, or, when this node must not serve
// it:
//   - a performance standby forwards a write through the host's Forwarder
//     (if one is registered) to the active node and returns its answer;
//   - otherwise the answer is UNAVAILABLE with the active node's advertise
//     address and the route ("forward_to_active" / "redirect_to_active"),
//     readable from a Status with GetRouteHint();
//   - sealed or uninitialized: FAILED_PRECONDITION.
// A forwarded request (Request.forwarded) is executed only if this node is
// the active; it is never forwarded again, so there are no loops. The
// library never touches the network: the host's Forwarder moves the bytes
// and the receiving host passes them to its node's HandleSerialized().
// The typed calls are Handle() with a request built for the host, except
// that KvGet (without min_index), KvPut and the one-item Transit calls
// build no request or response when none is needed: with no audit sink,
// on an unsealed node that serves the call itself. They go through the
// same steps in the same order and answer exactly as Handle() would. In a
// forked child every call answers FAILED_PRECONDITION.
//
// Consistency model:
//   - Every write is applied by the active node, in one atomic backend
//     commit carrying its fence; a deposed active's write is refused by the
//     backend. A write returns an index (Response.index: the backend
//     revision it was applied at, monotonic across the cluster).
//   - A read may carry min_index: a node that has not seen the backend at
//     that index waits up to Options::max_index_wait, then forwards the read
//     to the active (Request.forward_if_behind) or fails UNAVAILABLE.
//   - Nodes read the shared backend directly, so with a linearizable
//     backend (in-memory, LMDB, etcd) a read that follows an acknowledged
//     write, on any node, sees it. Caches (Transit keys on standbys) are
//     re-validated against storage before use unless this node is the
//     active that wrote them.
//   - Transit encrypt and rewrap are writes: every encryption is counted
//     per key version in storage, in blocks the active reserves with its
//     fence, and the active rotates the key at the limit (issue 9 item 13;
//     lib/store/transit_engine.h). A performance standby cannot write
//     storage, so it holds no block and forwards them to the active (or
//     answers UNAVAILABLE with the route); it serves decrypt itself.
//   - A write interrupted by failover is either applied once and
//     acknowledged, or reported failed (UNAVAILABLE: retry at the new
//     active). If the acknowledgement itself is lost after the commit, the
//     write may have been applied; a check-and-set retry (cas) tells.
//
// Secrets in memory (D5): every request, response and record the store
// builds, copies or parses is wiped before it is freed, including on
// overwrite, destroy and forwarding. What it hands back (a Response, the
// bytes of HandleSerialized, a KvSecret, Transit plaintext) belongs to the
// caller, who wipes it with WipeMessage() / WipeString() when done.
//
// Policies and audit (issue 15; DESIGN.md's request pipeline): every
// request is judged and recorded before it runs, on whichever node takes
// it, in this order: the caller's policies must allow the operation on its
// path (PERMISSION_DENIED otherwise; the table is lib/access/
// request_access.h), then at least one enabled audit sink must accept the
// request entry within its timeout (UNAVAILABLE otherwise: nothing is
// applied), then the request is routed and executed, then its response
// entry is written — a failure there is counted (audit_stats()) and
// reported (Options::audit_observer), never turned into an error, so a
// committed write stays acknowledged.
//   - The caller: Handle(request, caller) and the typed calls take a
//     CallContext from the host; Handle(request) and HandleSerialized take
//     the request's own Request.caller (for bytes from the host's own
//     server or forwarded by a cluster peer, whose transport authenticated
//     them; a forwarded request carries its caller unchanged and is judged
//     again on the active). A request with no caller (an empty CallContext,
//     no Request.caller) passes while no policy exists and is refused once
//     one does; CallContext::Root() skips the policy check (still audited).
//   - Policies are stored behind the barrier ("policy/<name>"), written
//     through the active (policy_put / policy_delete, which need "sudo" on
//     sys/policy/<name>), read on every node; each node caches them (the
//     active trusts its cache under its verified fence; other nodes read
//     one epoch record's version per request and reload when it moved;
//     lib/access/stored_policies.h), so a policy change acknowledged at
//     index N is in force for a
//     request carrying min_index N on any node (the node first catches up
//     to N, then judges; a node that cannot catch up in time forwards the
//     read, judged and audited on the active, or refuses it UNAVAILABLE,
//     neither judged nor audited here).
//   - While policies are enforced, KV paths whose first segment is
//     "metadata", "undelete", "destroy", "transit" or "sys" are refused
//     (INVALID_ARGUMENT): their policy path would be another operation's.
//   - Each sink's HMAC salt is kept behind the barrier ("audit/salt/<sink>"),
//     created once by the active node and loaded by every node before its
//     first audited request (a standby answers UNAVAILABLE until the active
//     has created it); AuditHash() hashes a known value with it, for an
//     operator grepping the log.
//   - A sealed node executes nothing and judges nothing (no policy or salt
//     is readable): it refuses (FAILED_PRECONDITION) and audits the
//     refusal, best effort, with caller, operation, path and outcome but no
//     field at all (it cannot hash values without its salts, and never
//     writes them in the clear). Paths are not secret here, as in Vault.
//   - A forwarded request is audited on both nodes, as Vault does, with
//     the same caller, operation, path and outcome: the active's entries
//     carry AuditEntry::forwarded, the standby's response entry
//     AuditEntry::forwarded_to (the active's address).
//   - The store owns its audit dispatcher: destroying the store waits for
//     each sink at most its timeout; a sink hung past it is abandoned, its
//     call left to return on its own (audit_sink.h, "Shutdown": a lent sink
//     must stay valid until that call returns).
//
// Ownership: the caller owns the coordinator and the forwarder; both must
// outlive the store. Create one SecretStore per coordinator: the Transit
// key cache and the policy cache trust that every write on the active goes
// through it.
// Thread-safe: every method may be called concurrently.
#ifndef STRONGBOX_SECRET_STORE_H_
#define STRONGBOX_SECRET_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/requests.pb.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {

// Moves a serialized request to the active node and returns its serialized
// response. Implemented by the host with its own transport. Must be
// thread-safe. A transport failure is returned as a non-OK status (it
// becomes UNAVAILABLE for the caller).
class Forwarder {
 public:
  Forwarder() = default;
  virtual ~Forwarder() = default;
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;
  virtual absl::StatusOr<std::string> Forward(absl::string_view leader_address,
                                              absl::string_view request) = 0;
};

// Read or write, from the one classification table. INVALID_ARGUMENT for a
// request with no operation set.
absl::StatusOr<OperationKind> ClassifyRequest(const store::Request& request);
// The operation's name ("kv_put", "transit_encrypt", ...), "" if none.
absl::string_view OperationName(const store::Request& request);

// Where to go instead, attached to an UNAVAILABLE status.
struct RouteHint {
  RouteDecision::Action action = RouteDecision::Action::kUnavailable;
  std::string leader_address;  // empty when unknown
};
std::optional<RouteHint> GetRouteHint(const absl::Status& status);

// The status a Response carries (code, message, route hint).
absl::Status ResponseStatus(const store::Response& response);

// Overwrites every string and bytes field of `message` in place (nested
// and repeated fields, map values, unknown fields), up to each buffer's
// capacity. Secrets reach the host in protobuf messages (a KvSecret, a
// Response, the std::string of HandleSerialized): wipe them with this, or
// WipeString(), before freeing them (invariant D5). The store does the same
// for every message it builds. The message stays valid (same sizes).
void WipeMessage(google::protobuf::Message* message);

// `message` serialized into a wiped-on-free buffer: how a host serializes
// a request that carries secrets. Empty if the message is over 2 GiB.
SecretBytes SerializeToSecretBytes(const google::protobuf::Message& message);

// The result of a KV write.
struct KvWriteResult {
  uint64_t version = 0;
  uint64_t index = 0;  // pass as min_index for read-after-write elsewhere
};

class SecretStore {
 public:
  struct Options {
    // This node. Not owned. REQUIRED.
    HaCoordinator* coordinator = nullptr;
    // The host's transport to the active node. Not owned. Optional: without
    // one, writes on a perf standby answer UNAVAILABLE + the route.
    Forwarder* forwarder = nullptr;
    // How long a read waits for this node to reach its min_index.
    // Default: 500 ms.
    absl::Duration max_index_wait = absl::Milliseconds(500);
    // Time source for metadata (wall time) and for the min_index wait
    // (monotonic time). Not owned. Default: RealClock().
    Clock* clock = nullptr;
    // Longest KV secret path, bytes; lowered automatically to what the
    // backend's key limit leaves room for (LMDB: 482). Default: 512.
    size_t max_path_bytes = 512;
    // Most fields in one secret. Default: 256.
    size_t max_fields = 256;
    // Largest secret (field names plus values), bytes. Default: 512 KiB.
    size_t max_secret_bytes = 512 << 10;
    // Versions kept per secret unless its metadata says otherwise.
    // Default: 10.
    uint32_t default_max_versions = 10;
    // Transit encryptions (encrypt and rewrap items) made with one key
    // version, cluster-wide and across restarts, before the active rotates
    // the key by itself (AES-GCM with random nonces). REQUIRES: >= 1.
    // Small values are for tests. Default: 3,865,470,566 (Vault's limit).
    uint64_t transit_max_encryptions_per_version = 3865470566u;
    // Transit encryptions the active reserves in storage per key-record
    // write: the most a crash can skip. REQUIRES: >= 1 (capped at the
    // limit above). Default: 1,048,576.
    uint64_t transit_encryption_reservation = uint64_t{1} << 20;
    // At that limit, rotate the key (true), or refuse encrypt and rewrap
    // with FAILED_PRECONDITION until an operator rotates it (false).
    // Default: true.
    bool transit_rotate_at_limit = true;

    // ---- Policies and audit (see the file comment).
    // Check each request against the caller's policies. Off: every caller
    // may do everything (requests are still audited). Default: true.
    bool enforce_policies = true;
    struct AuditSinkOptions {
      // Unique among the store's sinks; names its salt record, so keep it
      // stable across restarts. REQUIRED.
      std::string name;
      // The sink. Not owned; must outlive the store, and any call into it
      // that was hung when the store was destroyed (audit_sink.h,
      // "Shutdown"). REQUIRED.
      AuditSink* sink = nullptr;
      // Longest wait for this sink to accept one entry; a sink that does
      // not answer in time is reported and skipped until it answers.
      // Default: 2 s.
      absl::Duration timeout = absl::Seconds(2);
    };
    // Audit sinks. None: no auditing. Default: none.
    std::vector<AuditSinkOptions> audit_sinks;
    // Told of every audit failure. Not owned. Optional.
    AuditObserver* audit_observer = nullptr;
  };

  static absl::StatusOr<std::unique_ptr<SecretStore>> Create(
      const Options& options);
  virtual ~SecretStore() = default;
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  // Executes (or forwards, or routes) one request. Failures are in
  // Response.code / error / leader_address / route; never throws or
  // crashes on any input.
  // The caller is the request's Request.caller (see the file comment).
  virtual store::Response Handle(const store::Request& request) = 0;
  // The same as `caller`, which the host authenticated; it replaces any
  // Request.caller (and is what a forwarded copy carries).
  virtual store::Response Handle(const store::Request& request,
                                 const CallContext& caller) = 0;
  // The same on bytes: what a host's server calls with forwarded bytes.
  // Unparseable input gives a serialized INVALID_ARGUMENT response.
  virtual std::string HandleSerialized(absl::string_view request) = 0;

  // ---- KV conveniences (thin wrappers over Handle).
  virtual absl::StatusOr<KvWriteResult> KvPut(
      absl::string_view path, const std::map<std::string, std::string>& data,
      std::optional<uint64_t> cas = std::nullopt,
      const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<store::KvSecret> KvGet(
      absl::string_view path, uint64_t version = 0, uint64_t min_index = 0,
      const CallContext& caller = CallContext()) = 0;
  virtual absl::Status KvDelete(absl::string_view path,
                                std::vector<uint64_t> versions = {},
                                const CallContext& caller = CallContext()) = 0;
  virtual absl::Status KvUndelete(
      absl::string_view path, std::vector<uint64_t> versions,
      const CallContext& caller = CallContext()) = 0;
  virtual absl::Status KvDestroy(absl::string_view path,
                                 std::vector<uint64_t> versions,
                                 const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<store::KvMetadata> KvMetadata(
      absl::string_view path, const CallContext& caller = CallContext()) = 0;
  virtual absl::Status KvSetMetadata(
      absl::string_view path, uint32_t max_versions, bool cas_required,
      const CallContext& caller = CallContext()) = 0;
  virtual absl::Status KvDeleteAll(
      absl::string_view path, const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<std::vector<std::string>> KvList(
      absl::string_view prefix, const CallContext& caller = CallContext()) = 0;

  // ---- Transit conveniences.
  virtual absl::Status TransitCreateKey(
      absl::string_view name, const CallContext& caller = CallContext()) = 0;
  virtual absl::Status TransitRotateKey(
      absl::string_view name, const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<store::TransitKeyInfo> TransitReadKey(
      absl::string_view name, const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<std::string> TransitEncrypt(
      absl::string_view name, absl::string_view plaintext,
      absl::string_view context = "",
      const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<std::string> TransitDecrypt(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context = "",
      const CallContext& caller = CallContext()) = 0;
  virtual absl::StatusOr<std::string> TransitRewrap(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context = "",
      const CallContext& caller = CallContext()) = 0;

  // ---- Policies (need "sudo" on sys/policy/<name>; writes go to the
  // active). PolicyPut: INVALID_ARGUMENT naming the line for a bad
  // document (nothing stored); returns the index it was applied at (a
  // min_index for requests that must see it).
  virtual absl::StatusOr<uint64_t> PolicyPut(
      absl::string_view name, absl::string_view document,
      const CallContext& caller = CallContext()) = 0;
  // The document as it was put. NOT_FOUND if there is none.
  virtual absl::StatusOr<std::string> PolicyGet(
      absl::string_view name, const CallContext& caller = CallContext()) = 0;
  // Every policy name, sorted.
  virtual absl::StatusOr<std::vector<std::string>> PolicyList(
      const CallContext& caller = CallContext()) = 0;
  // Absent is fine. Returns the index it was applied at.
  virtual absl::StatusOr<uint64_t> PolicyDelete(
      absl::string_view name, const CallContext& caller = CallContext()) = 0;

  // ---- Audit (operator calls; not themselves audited).
  // `value` as sink `sink` writes it ("hmac-sha256:<hex>" under the sink's
  // salt kept behind the barrier), to grep its log for a known value.
  // NOT_FOUND for an unknown sink; UNAVAILABLE while the salt cannot be
  // loaded (sealed, or no active has created it yet).
  virtual absl::StatusOr<std::string> AuditHash(absl::string_view sink,
                                                absl::string_view value) = 0;
  // Closes and reopens every sink (log rotation; e.g. on SIGHUP, from a
  // thread). The first error, after trying all.
  virtual absl::Status ReopenAuditSinks() = 0;
  // Waits until every entry made so far is written (or failed), at most
  // `timeout` per sink; false if some sink did not finish.
  virtual bool FlushAudit(absl::Duration timeout) = 0;
  virtual AuditStats audit_stats() = 0;

 protected:
  SecretStore() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_SECRET_STORE_H_
