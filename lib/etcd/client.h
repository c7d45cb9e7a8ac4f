// etcd::Client: EtcdBackend's connection to an etcd cluster — one gRPC
// channel per endpoint, endpoint failover, unary calls with the request
// timeout, and the bookkeeping that lets a failed endpoint's streams move
// on. Knows nothing of strongbox's key layout.
//
// Failover. Calls go to the preferred endpoint while its channel is READY.
// A call that fails as an endpoint failure would (UNAVAILABLE, deadline
// exceeded, a broken connection) marks that endpoint failed: the preference
// moves to the next endpoint, the failed one is avoided for a cool-down
// while another is READY, and every stream registered on it is cancelled so
// its owner reopens it elsewhere. A stopped member keeps its TCP connection
// open, so only a deadline finds it; that is why every call has one.
//
// Reads vs writes. kRead calls are retried on another endpoint while the
// request timeout lasts. kWrite calls are sent at most once: a failure
// after sending is reported as UNAVAILABLE "outcome unknown", never
// retried, so a write is never applied twice (D7).
//
// Thread-safety: all methods are safe to call concurrently.
#ifndef STRONGBOX_LIB_ETCD_CLIENT_H_
#define STRONGBOX_LIB_ETCD_CLIENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "lib/etcd/proto/rpc.grpc.pb.h"
#include "lib/util/mutex.h"

namespace strongbox {
namespace etcd {

struct ClientOptions {
  std::vector<std::string> endpoints;     // URLs: http://h:p or https://h:p
  std::string ca_pem, cert_pem, key_pem;  // PEM text (files already read)
  std::string username, password;
  absl::Duration dial_timeout = absl::Seconds(2);
  absl::Duration request_timeout = absl::Seconds(3);
};

// One endpoint: its channel and stubs. Constant after construction.
struct Endpoint {
  std::string url;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
};

class Client {
 public:
  enum class Kind { kRead, kWrite };

  // Parses the endpoints and makes the channels; connects nothing.
  // INVALID_ARGUMENT for a malformed URL or mixed schemes.
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const ClientOptions& options);
  ~Client();

  // Waits (up to the dial timeout) for an endpoint to connect, then
  // authenticates if credentials were given. UNAVAILABLE with gRPC's
  // reason (refused, TLS handshake failed, ...) when none connects.
  absl::Status Connect();

  // One unary call: `fn` issues it on the given endpoint and context
  // (deadline and credentials already set). `what` names it in errors.
  absl::Status Call(
      Kind kind, absl::string_view what,
      const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& fn);

  // The same call on one given endpoint only, no retry (health checks).
  absl::Status CallOn(
      int endpoint, absl::string_view what,
      const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& fn);

  // A READY endpoint to open a stream on (waits up to `deadline`).
  absl::StatusOr<int> AwaitEndpoint(absl::Time deadline);
  Endpoint& endpoint(int i) { return *endpoints_[i]; }
  int endpoint_count() const { return static_cast<int>(endpoints_.size()); }

  // Sets credentials (and the deadline unless InfiniteFuture) on a context.
  void PrepareContext(grpc::ClientContext* context, absl::Time deadline);

  // Streams register their context while open, so that a failure of their
  // endpoint cancels them. Unregister before destroying the context.
  void RegisterStream(int endpoint, grpc::ClientContext* context);
  void UnregisterStream(grpc::ClientContext* context);

  // Marks `endpoint` failed (see the file comment).
  void EndpointFailed(int endpoint);

  std::string current_endpoint() const;
  absl::Duration request_timeout() const { return options_.request_timeout; }

 private:
  explicit Client(const ClientOptions& options);
  absl::Status Authenticate();
  // Maps a failed call's gRPC status to the status Call() returns.
  absl::Status MapError(Kind kind, absl::string_view what,
                        const grpc::Status& status, int endpoint) const;

  // Constant after construction.
  const ClientOptions options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;

  std::atomic<int> preferred_{0};

  mutable Mutex mu_;
  std::vector<absl::Time> avoid_until_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, grpc::ClientContext*>> streams_
      ABSL_GUARDED_BY(mu_);
  std::string token_ ABSL_GUARDED_BY(mu_);  // etcd auth token, if any
};

// True for gRPC codes that say the endpoint (or the cluster through it) did
// not answer: the call may or may not have been applied.
bool IsEndpointFailure(const grpc::Status& status);

}  // namespace etcd
}  // namespace strongbox

#endif  // STRONGBOX_LIB_ETCD_CLIENT_H_
