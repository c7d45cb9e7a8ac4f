// //:grpc_transport — an optional add-on that moves forwarded requests
// between the nodes of one strongbox cluster over gRPC with mutual TLS.
// Needs `--config=openssl` (gRPC links OpenSSL 3); hosts that bring their
// own transport never link it.
//
// Three parts:
//   GrpcForwarder     a SecretStore Forwarder: one channel per leader
//                     address, mTLS with this node's cluster credentials,
//                     a deadline per call.
//   ForwardingService the gRPC service a node serves to its peers; hands
//                     the bytes to SecretStore::HandleSerialized().
//   ForwardingServer  a gRPC server the add-on runs itself (for hosts
//                     without one): serves the service on one address.
//
// Security. Every certificate comes from ClusterIdentity
// (strongbox/cluster_credentials.h): the trust bundle is the cluster CA
// (and, right after a rotation, the previous one), each node presents its
// own short-lived leaf. The server requires and verifies a client
// certificate (gRPC's REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY),
// so a peer without one, with a self-signed one or with one from another
// cluster fails the TLS handshake and no request is read. The client
// verifies the server against the same bundle and the fixed name
// kClusterServerName (node addresses are opaque to strongbox). A sealed
// node has no credentials: its forwarder fails FAILED_PRECONDITION without
// dialing, its ForwardingServer stops listening, and the service refuses
// with FAILED_PRECONDITION (for a host's own server that keeps running).
// Keys: gRPC copies the leaf key into buffers of its own that strongbox
// cannot wipe; they live as long as the channel or server that uses them
// (both are rebuilt or dropped when the credentials change or the node
// seals).
//
// Deadlines and outcomes. Each forwarded call has GrpcForwarder::Options::
// deadline. A call that fails (deadline, connection lost, the active died)
// is reported UNAVAILABLE by SecretStore; its write may or may not have been
// applied if the failure came after the active received it: retry with a
// check-and-set (cas) to tell (D7). A forwarded request is executed only by
// the active node and never forwarded again (SecretStore).
//
// Messages above max_message_bytes are refused by gRPC before any handler
// runs (RESOURCE_EXHAUSTED); bytes that do not parse as a Request answer a
// serialized INVALID_ARGUMENT Response.
//
// Running the service in the host's own gRPC server (the normal case):
//   auto service = ForwardingService::Create({store, coordinator});
//   builder.RegisterService((*service)->service());
//   builder.AddListeningPort(addr, *ForwardingService::ServerCredentials(
//                                      *identity->Current()));
//   builder.SetMaxReceiveMessageSize(kDefaultMaxForwardBytes);
// and rebuild the server's credentials when a ClusterCredentialsObserver
// reports a change (gRPC's server credentials are fixed per server); stop
// listening when it reports the seal. ForwardingServer does exactly this.
//
// Threading: every class is thread-safe. GrpcForwarder::Forward blocks the
// caller for at most the deadline. The service runs on gRPC's threads.
// ForwardingServer restarts its server on a thread of its own, never on the
// thread that reported the change (a Seal() caller is not held up).
#ifndef STRONGBOX_GRPC_TRANSPORT_H_
#define STRONGBOX_GRPC_TRANSPORT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/secret_store.h"

namespace grpc {
class Service;
class ServerCredentials;
}  // namespace grpc

namespace strongbox {

// Largest forwarded request or response, bytes: above SecretStore's largest
// secret (512 KiB by default) with room for the envelope.
inline constexpr size_t kDefaultMaxForwardBytes = size_t{4} << 20;

class GrpcForwarder final : public Forwarder {
 public:
  struct Options {
    // This node's credentials. Not owned. REQUIRED.
    ClusterIdentity* identity = nullptr;
    // Deadline of each forwarded call. Default: 5 s. REQUIRES: > 0.
    absl::Duration deadline = absl::Seconds(5);
    size_t max_message_bytes = kDefaultMaxForwardBytes;
  };
  static absl::StatusOr<std::unique_ptr<GrpcForwarder>> Create(
      const Options& options);
  ~GrpcForwarder() override;

  // Sends `request` to the node at `leader_address` ("host:port") and
  // returns its serialized Response. FAILED_PRECONDITION without
  // credentials (sealed); UNAVAILABLE or DEADLINE_EXCEEDED when the call
  // fails (see "Deadlines and outcomes").
  absl::StatusOr<std::string> Forward(absl::string_view leader_address,
                                      absl::string_view request) override;

  // The Echo call over the same channel: the hop's own cost.
  absl::StatusOr<std::string> Echo(absl::string_view address,
                                   absl::string_view payload);

  class Impl;

 private:
  explicit GrpcForwarder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class ForwardingService {
 public:
  struct Options {
    // Not owned; both REQUIRED and must outlive the service.
    SecretStore* store = nullptr;
    HaCoordinator* coordinator = nullptr;
    size_t max_message_bytes = kDefaultMaxForwardBytes;
  };
  static absl::StatusOr<std::unique_ptr<ForwardingService>> Create(
      const Options& options);
  virtual ~ForwardingService() = default;

  // Register this with a grpc::ServerBuilder (owned by this object).
  virtual grpc::Service* service() = 0;

  // mTLS server credentials from `credentials`: this node's leaf, and
  // client certificates required and verified against the trust bundle.
  static absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
  ServerCredentials(const ClusterCredentials& credentials);
};

class ForwardingServer {
 public:
  struct Options {
    // "host:port" to listen on (port 0: any; the first port bound is kept
    // across restarts). REQUIRED.
    std::string listen_address;
    // Not owned; REQUIRED; must outlive the server.
    SecretStore* store = nullptr;
    HaCoordinator* coordinator = nullptr;
    ClusterIdentity* identity = nullptr;
    size_t max_message_bytes = kDefaultMaxForwardBytes;
    // How long a restart (new credentials, seal) lets calls in flight
    // finish before cancelling them. Default: 1 s.
    absl::Duration drain = absl::Seconds(1);
  };
  // Starts listening as soon as the node has credentials (not while
  // sealed), and restarts on every credentials change.
  static absl::StatusOr<std::unique_ptr<ForwardingServer>> Create(
      const Options& options);
  virtual ~ForwardingServer() = default;

  // The bound port; 0 while not serving.
  virtual int port() = 0;
  // Waits until the server serves credentials of generation >=
  // `generation` (0: any), up to `timeout`. DEADLINE_EXCEEDED otherwise.
  virtual absl::Status AwaitServing(uint64_t generation,
                                    absl::Duration timeout) = 0;
};

}  // namespace strongbox

#endif  // STRONGBOX_GRPC_TRANSPORT_H_
