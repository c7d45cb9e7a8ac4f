// NodeHost: the host side of the strongbox_node example — one strongbox
// node (LmdbBackend + HaCoordinator + SecretStore) driven by a line
// protocol, one command in, one JSON object out:
//
//   init SHARES THRESHOLD   {"ok":true,"shares":["<hex>",...]}
//                           (with --pkcs11-*: "recovery_shares", and the
//                           node then unseals itself; pkcs11_node.h)
//   auto-unseal             {"ok":true,"sealed":false} (after a `seal`,
//                           which stops the automatic retries)
//   migrate-to-auto SHARE...  {"ok":true}  Shamir -> auto on the active
//                           (needs --pkcs11-* or --wrapper-key-file): a
//                           threshold of unseal shares, which become the
//                           recovery shares
//   migrate-to-shamir RECOVERY_SHARE...  {"ok":true}  auto -> Shamir: a
//                           threshold of recovery shares, which become the
//                           unseal shares
//   rotate-wrapper-key RECOVERY_SHARE...  {"ok":true,"rewrapped":true}
//                           the stored keys rewrapped under the wrapper's
//                           current key (false: already were)
//   rekey NEW_SHARES NEW_THRESHOLD SHARE...
//                           {"ok":true,"shares":[...]} ("recovery_shares"
//                           in auto mode, authorized by recovery shares):
//                           phase one; the new shares work only after
//   rekey-complete NEW_SHARE...  {"ok":true}
//   rekey-cancel            {"ok":true}
//                           (seal commands run on the active only; a standby
//                           answers UNAVAILABLE with "leader". Shares are
//                           hex, as `unseal` takes them, never echoed.)
//   unseal <hex share> {"ok":true,"sealed":false,"progress":0,"threshold":3}
//   status                  {"ok":true,"initialized":true,"sealed":false,
//                            "state":"active","leader":"ADDR","fence":"7",
//                            "seal_type":"pkcs11"}  (only with --pkcs11-*
//                            or an auto-sealed store: "pkcs11", or
//                            "shamir" for a Shamir store; while sealed
//                            also "seal_error")
//   put PATH K=V [K=V...]   {"ok":true,"version":1}
//   get PATH                {"ok":true,"version":1,"data":{"K":"V"}}
//                           (+ "data_b64":{"K2":"<base64>"}, see below)
//   cas-put PATH CAS K=V... {"ok":true,"version":2,"index":17}
//                           (check-and-set; CAS 0: only if absent;
//                           a mismatch answers ABORTED)
//   get-min PATH MIN_INDEX  as get, once this node has reached MIN_INDEX
//   step-down | seal        {"ok":true}
//   policy-put NAME <policy JSON on one line>
//                           {"ok":true,"index":"12"}
//   policy-get NAME         {"ok":true,"name":"NAME","policy":"<the JSON>"}
//   policy-delete NAME      {"ok":true,"index":"13"}
//   policy-list             {"ok":true,"policies":["NAME",...]}
//   as CALLER POLICY[,POLICY...] <put|get|policy-... command>
//                           that one command as CALLER with those policies
//                           (commands without `as` run as the host's
//                           administrator, CallContext::Root); a policy
//                           refusal is {"ok":false,"code":"PERMISSION_DENIED",
//                           "error":"..."}
//   quit                    (handled by the I/O loop; see strongbox_node.cc)
//
// `state` is uninitialized, sealed, standby, perf_standby or active. In
// `status`, "leader" and "fence" (a decimal string) are present only while an
// active node is known. Every failure is
//   {"ok":false,"code":"<absl code name>","error":"<message>"}
// plus "leader":"ADDR" when this node is not the active one and knows who
// is. Malformed lines (unknown command, wrong arity, bad numbers or hex,
// K=V without '=', duplicate fields, lines that are too long or not UTF-8)
// answer INVALID_ARGUMENT and change nothing. No answer ever echoes the
// input line (an unknown command may be a share pasted on its own).
//
// Policies are Vault's JSON policy format,
// {"path":{"app/*":{"capabilities":["read","list"]}}}: KV paths are the
// paths `put` and `get` use (no "data/" prefix); metadata operations check
// "metadata/<path>", policy commands "sys/policy/<name>" with "sudo". KV
// paths whose first segment is metadata, undelete, destroy, transit or sys
// are refused (INVALID_ARGUMENT) while policies are enforced. "index" is a
// decimal string (a later read's min_index).
//
// --audit-file=F: every request and its outcome are appended to F as JSON
// lines (mode 0600), secret values as "hmac-sha256:<hex>" under a salt kept
// behind the barrier (AuditSink's file sink, named "file").
//
// Binary values: lines are UTF-8 text, and a secret may hold any bytes
// (written through the library API). `get` answers each value that is
// valid UTF-8 in "data" and every other value, base64-encoded (standard
// alphabet, padded), in "data_b64", present only when there is one; the
// field names of the two objects are disjoint. `put` takes a value in
// base64 as K:b64=BASE64 (strict canonical base64); so a field whose name
// itself ends in ":b64" is written as NAME:b64:b64=BASE64.
//
// Secrets in memory: the request, the response and the answer's buffers
// are wiped before they are freed; HandleLine(std::string*) also wipes the
// line it was given. The caller wipes the answer it gets back.
//
// Without --listen the host moves no bytes between nodes (no Forwarder): a
// write on a standby answers UNAVAILABLE with the leader's address; a read
// on a performance standby is served locally, on a plain standby it is
// redirected the same way. With --listen (NodeConfig::listen) a
// performance standby forwards writes to the active over the gRPC
// transport and answers with the active's result; a plain standby still
// answers with the leader.
//
// Thread-compatible: one thread calls HandleLine(); the coordinator runs its
// own election thread inside.
#ifndef STRONGBOX_EXAMPLES_NODE_NODE_HOST_H_
#define STRONGBOX_EXAMPLES_NODE_NODE_HOST_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "examples/node/pkcs11_node.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace node {

// Longest command line accepted, in bytes (without the newline).
inline constexpr size_t kMaxLineBytes = 64 << 10;

struct NodeConfig {
  // The backend: exactly one of --dir and --etcd.
  std::string dir;  // --dir: the shared LMDB directory.
  // --etcd=URL[,URL...]: EtcdBackend on this etcd cluster (client URLs as
  // etcd prints them, http://host:port or https://host:port). Needs a
  // strongbox_node built with --config=openssl; otherwise Open() fails
  // with FAILED_PRECONDITION saying so. The etcd request timeout is
  // lease_ttl / 2, within [1 s, 3 s].
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "strongbox/";  // --etcd-prefix
  // --etcd-ca, --etcd-cert, --etcd-key: PEM files for https endpoints.
  std::string etcd_ca, etcd_cert, etcd_key;
  std::string node_id;        // --node-id. REQUIRED.
  std::string advertise;      // --advertise: this node's address. REQUIRED.
  bool perf_standby = false;  // --perf-standby: serve reads as a standby.
  // --lease-ttl-ms: the lease TTL. The active renews every TTL/4; standbys
  // re-read the leader every TTL/4 (at most 500 ms); a node that steps down
  // waits TTL/2 before contending again. Default: 2000 ms. REQUIRES:
  // 40 <= TTL <= 600000 ms.
  absl::Duration lease_ttl = absl::Milliseconds(2000);
  // LmdbBackendOptions::kill_hung_holder: a standby kills an active node
  // hung inside an LMDB write once its lease has been expired for the
  // grace, HungHolderGrace(lease_ttl) (identity proven by boot id, pid
  // namespace, pid and start time). Default: on; --no-kill-hung-holder
  // turns it off (the takeover then waits for the hung node to resume or
  // die).
  bool kill_hung_holder = true;
  // --audit-file=F: the file audit sink (JSON lines, 0600). Default: none.
  std::string audit_file;
  // --pkcs11-*: auto-unseal through a PKCS#11 token (pkcs11_node.h).
  NodePkcs11Config pkcs11;
  // --wrapper-key-file=F: auto-unseal through a software key wrapper with
  // the keys in F (key_file_wrapper.h). Excludes --pkcs11-*.
  std::string wrapper_key_file;
  // --listen=HOST:PORT: serve the forwarding service (//:grpc_transport)
  // there, and forward a performance standby's writes to the active over
  // it (mutual TLS with the cluster identity, strongbox/
  // cluster_credentials.h); --advertise then defaults to this address and
  // must be where peers reach it. Needs a strongbox_node built with
  // --config=openssl. Empty (default): no transport, the protocol is as
  // without it.
  std::string listen;
};

// The hung-holder grace the node gives LmdbBackend: one lease TTL, but never
// less than kMinHungHolderGrace. The library's default (one TTL) is right
// for TTLs of seconds; at the smallest TTLs (40 ms) it would kill an active
// node whose one commit stalls for a fraction of a second (an fsync behind a
// busy disk, swap, a starved container): a failover and a restart for a
// hiccup, since a kill is not undone. With the floor, a node frozen inside a
// write costs at most about TTL + 1 s without an active node.
inline constexpr absl::Duration kMinHungHolderGrace = absl::Seconds(1);
absl::Duration HungHolderGrace(absl::Duration lease_ttl);

// Parses the command line (argv[0] is the program). INVALID_ARGUMENT with a
// usage-style message for anything unknown, missing or out of range.
absl::StatusOr<NodeConfig> ParseNodeFlags(int argc, char** argv);

// One line of usage text for error messages.
std::string NodeUsage();

// The node's EtcdBackend for config.etcd_*: examples/node/etcd_open_*.cc,
// one per crypto provider (the BoringSSL build has no gRPC and refuses).
absl::StatusOr<std::unique_ptr<Backend>> OpenNodeEtcdBackend(
    const NodeConfig& config);

// The node's peer transport for --listen: examples/node/transport_*.cc,
// one per crypto provider (the BoringSSL build has no gRPC and refuses).
class NodeTransport {
 public:
  virtual ~NodeTransport() = default;
  // For SecretStore::Options::forwarder.
  virtual Forwarder* forwarder() = 0;
  // Starts serving forwarded requests to `store` (which must outlive it
  // or StopServing()).
  virtual absl::Status Serve(SecretStore* store) = 0;
  virtual void StopServing() = 0;
};
absl::StatusOr<std::unique_ptr<NodeTransport>> OpenNodeTransport(
    const NodeConfig& config, HaCoordinator* coordinator);

class NodeHost {
 public:
  // Opens the backend and builds the node (it starts uninitialized or
  // sealed). State changes are logged to stderr.
  static absl::StatusOr<std::unique_ptr<NodeHost>> Open(
      const NodeConfig& config);
  // The same on a backend of the caller's (it must support HA; config.dir
  // is not used): tests and fuzzers run the protocol on an in-memory one.
  static absl::StatusOr<std::unique_ptr<NodeHost>> OpenWithBackend(
      const NodeConfig& config, std::unique_ptr<Backend> backend);

  // Destroys the node: the coordinator stops, releases its lease and
  // seals, then the backend closes.
  ~NodeHost();
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Runs one command line (without its newline; a trailing '\r' is
  // ignored) and returns the JSON answer (without a newline). `quit` is not
  // a command here: the I/O loop handles it.
  std::string HandleLine(absl::string_view line);
  // The same, then wipes *line (it may have carried a share or a secret).
  std::string HandleLine(std::string* line);

  HaCoordinator* coordinator() { return coordinator_.get(); }
  SecretStore* store() { return store_.get(); }

 private:
  class StateLogger;
  explicit NodeHost(const NodeConfig& config);
  // --listen: the transport, before the store is built (it provides the
  // forwarder); ServeTransport() once the store exists.
  absl::Status OpenTransport();
  absl::Status ServeTransport();

  std::string Init(absl::string_view shares, absl::string_view threshold);
  std::string Unseal(absl::string_view hex);
  // migrate-to-*, rotate-wrapper-key, rekey, rekey-complete, rekey-cancel.
  std::string SealCommand(const std::vector<absl::string_view>& words);
  std::string Status();
  std::string Put(const std::vector<absl::string_view>& words,
                  size_t first_field = 2,
                  std::optional<uint64_t> cas = std::nullopt);
  std::string Get(absl::string_view path, uint64_t min_index = 0);
  std::string CasPutOrGetMin(const std::vector<absl::string_view>& words);
  // Policy commands and the `as` prefix (issue 15). `rest`: the line after
  // the command word.
  std::string PolicyCommand(absl::string_view command, absl::string_view rest);
  std::string As(absl::string_view line);
  // Whom store requests run as: the `as` caller of this line, else root.
  const CallContext& caller() const { return as_.has_value() ? *as_ : root_; }
  // {"ok":false,...} for `status`, with the leader when this node is not
  // active (from `leader_hint`, else from the coordinator).
  std::string Failure(const absl::Status& status,
                      absl::string_view leader_hint = "");

  const NodeConfig config_;
  // Destroyed in reverse order: store, coordinator (releases the lease),
  // logger, backend.
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<StateLogger> logger_;
  // --pkcs11-* or --wrapper-key-file; outlives the node.
  std::unique_ptr<KeyWrapper> key_wrapper_;
  std::unique_ptr<HaCoordinator> coordinator_;
  std::unique_ptr<AuditSink> audit_sink_;  // --audit-file; outlives store_
  std::unique_ptr<SecretStore> store_;
  const CallContext root_ = CallContext::Root("root");
  std::optional<CallContext> as_;  // set while one `as` command runs
  // --listen only (OpenTransport): destroyed by ~NodeHost in its own order
  // (stop serving, then the store, then the forwarder and identity).
  std::unique_ptr<NodeTransport> transport_;
};

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_NODE_HOST_H_
