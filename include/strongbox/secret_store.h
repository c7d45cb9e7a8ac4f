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
// Ownership: the caller owns the coordinator and the forwarder; both must
// outlive the store. Create one SecretStore per coordinator: the Transit
// key cache trusts that every write on the active goes through it.
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
  };

  static absl::StatusOr<std::unique_ptr<SecretStore>> Create(
      const Options& options);
  virtual ~SecretStore() = default;
  SecretStore(const SecretStore&) = delete;
  SecretStore& operator=(const SecretStore&) = delete;

  // Executes (or forwards, or routes) one request. Failures are in
  // Response.code / error / leader_address / route; never throws or
  // crashes on any input.
  virtual store::Response Handle(const store::Request& request) = 0;
  // The same on bytes: what a host's server calls with forwarded bytes.
  // Unparseable input gives a serialized INVALID_ARGUMENT response.
  virtual std::string HandleSerialized(absl::string_view request) = 0;

  // ---- KV conveniences (thin wrappers over Handle).
  virtual absl::StatusOr<KvWriteResult> KvPut(
      absl::string_view path, const std::map<std::string, std::string>& data,
      std::optional<uint64_t> cas = std::nullopt) = 0;
  virtual absl::StatusOr<store::KvSecret> KvGet(absl::string_view path,
                                                uint64_t version = 0,
                                                uint64_t min_index = 0) = 0;
  virtual absl::Status KvDelete(absl::string_view path,
                                std::vector<uint64_t> versions = {}) = 0;
  virtual absl::Status KvUndelete(absl::string_view path,
                                  std::vector<uint64_t> versions) = 0;
  virtual absl::Status KvDestroy(absl::string_view path,
                                 std::vector<uint64_t> versions) = 0;
  virtual absl::StatusOr<store::KvMetadata> KvMetadata(
      absl::string_view path) = 0;
  virtual absl::Status KvSetMetadata(absl::string_view path,
                                     uint32_t max_versions,
                                     bool cas_required) = 0;
  virtual absl::Status KvDeleteAll(absl::string_view path) = 0;
  virtual absl::StatusOr<std::vector<std::string>> KvList(
      absl::string_view prefix) = 0;

  // ---- Transit conveniences.
  virtual absl::Status TransitCreateKey(absl::string_view name) = 0;
  virtual absl::Status TransitRotateKey(absl::string_view name) = 0;
  virtual absl::StatusOr<store::TransitKeyInfo> TransitReadKey(
      absl::string_view name) = 0;
  virtual absl::StatusOr<std::string> TransitEncrypt(
      absl::string_view name, absl::string_view plaintext,
      absl::string_view context = "") = 0;
  virtual absl::StatusOr<std::string> TransitDecrypt(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context = "") = 0;
  virtual absl::StatusOr<std::string> TransitRewrap(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context = "") = 0;

 protected:
  SecretStore() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_SECRET_STORE_H_
