// OpenNodeTransport() for the OpenSSL build: --listen serves the
// forwarding service (//:grpc_transport) and forwards a performance
// standby's writes to the active over mutual TLS with the cluster identity.
#include <algorithm>
#include <memory>
#include <utility>

#include "examples/node/node_host.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/grpc_transport.h"

namespace strongbox {
namespace node {
namespace {

class GrpcNodeTransport final : public NodeTransport {
 public:
  GrpcNodeTransport(const NodeConfig& config, HaCoordinator* coordinator)
      : config_(config), coordinator_(coordinator) {}

  absl::Status Open() {
    ClusterIdentity::Options identity_options;
    identity_options.coordinator = coordinator_;
    identity_options.advertise_address = config_.advertise;
    identity_options.refresh_interval = absl::Seconds(1);
    absl::StatusOr<std::unique_ptr<ClusterIdentity>> identity =
        ClusterIdentity::Create(identity_options);
    if (!identity.ok()) return identity.status();
    identity_ = *std::move(identity);
    GrpcForwarder::Options forwarder_options;
    forwarder_options.identity = identity_.get();
    // A forwarded write waits at most about one lease TTL for the active.
    forwarder_options.deadline = std::max(config_.lease_ttl, absl::Seconds(1));
    absl::StatusOr<std::unique_ptr<GrpcForwarder>> forwarder =
        GrpcForwarder::Create(forwarder_options);
    if (!forwarder.ok()) return forwarder.status();
    forwarder_ = *std::move(forwarder);
    return absl::OkStatus();
  }

  Forwarder* forwarder() override { return forwarder_.get(); }

  absl::Status Serve(SecretStore* store) override {
    ForwardingServer::Options options;
    options.listen_address = config_.listen;
    options.store = store;
    options.coordinator = coordinator_;
    options.identity = identity_.get();
    absl::StatusOr<std::unique_ptr<ForwardingServer>> server =
        ForwardingServer::Create(options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    return absl::OkStatus();
  }

  void StopServing() override { server_.reset(); }

  ~GrpcNodeTransport() override {
    server_.reset();
    forwarder_.reset();
    identity_.reset();
  }

 private:
  const NodeConfig config_;
  HaCoordinator* const coordinator_;
  std::unique_ptr<ClusterIdentity> identity_;
  std::unique_ptr<GrpcForwarder> forwarder_;
  std::unique_ptr<ForwardingServer> server_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NodeTransport>> OpenNodeTransport(
    const NodeConfig& config, HaCoordinator* coordinator) {
  auto transport = std::make_unique<GrpcNodeTransport>(config, coordinator);
  absl::Status opened = transport->Open();
  if (!opened.ok()) return opened;
  return std::unique_ptr<NodeTransport>(std::move(transport));
}

}  // namespace node
}  // namespace strongbox
