// ForwardingService (strongbox/grpc_transport.h).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/grpc_transport/credentials.h"
#include "lib/grpc_transport/forwarding.grpc.pb.h"
#include "lib/grpc_transport/handler.h"
#include "strongbox/grpc_transport.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace {

class ServiceImpl final : public ForwardingService,
                          public transport::Forwarding::Service {
 public:
  explicit ServiceImpl(const Options& options) : options_(options) {}

  grpc::Service* service() override { return this; }

  grpc::Status Forward(grpc::ServerContext* context,
                       const transport::ForwardRequest* request,
                       transport::ForwardResponse* response) override {
    // gRPC owns the request; it carries secrets, so wipe it once read.
    auto* owned = const_cast<transport::ForwardRequest*>(request);
    grpc::Status refused = Authenticated(context);
    if (!refused.ok()) {
      WipeMessage(owned);
      return refused;
    }
    // The node's state, the size limit, then the store (handler.h).
    // Unparseable bytes answer a serialized INVALID_ARGUMENT Response.
    return ToGrpc(grpc_transport::HandleForward(
        *options_.store, *options_.coordinator, options_.max_message_bytes,
        owned, response));
  }

  grpc::Status Echo(grpc::ServerContext* context,
                    const transport::EchoMessage* request,
                    transport::EchoMessage* response) override {
    grpc::Status refused = Authenticated(context);
    if (!refused.ok()) return refused;
    refused = ToGrpc(grpc_transport::NodeServesPeers(*options_.coordinator));
    if (!refused.ok()) return refused;
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }

 private:
  // The TLS handshake already required a client certificate that chains to
  // the cluster CA; this refuses what a host's own server might let through
  // (an insecure port). Every call is also refused while this node is
  // sealed (NodeServesPeers).
  grpc::Status Authenticated(grpc::ServerContext* context) {
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    if (auth == nullptr || !auth->IsPeerAuthenticated() ||
        auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME).empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "a cluster client certificate is required");
    }
    return grpc::Status::OK;
  }

  static grpc::Status ToGrpc(const absl::Status& status) {
    if (status.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                        std::string(status.message()));
  }

  const Options options_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardingService>> ForwardingService::Create(
    const Options& options) {
  if (options.store == nullptr || options.coordinator == nullptr) {
    return absl::InvalidArgumentError(
        "ForwardingService needs a store and a coordinator");
  }
  return std::unique_ptr<ForwardingService>(new ServiceImpl(options));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
ForwardingService::ServerCredentials(const ClusterCredentials& credentials) {
  if (credentials.private_key_pem.empty() ||
      credentials.certificate_chain_pem.empty() ||
      credentials.trust_bundle_pem.empty()) {
    return absl::FailedPreconditionError("no cluster credentials");
  }
  return grpc_transport::ServerCredentialsFor(credentials);
}

}  // namespace strongbox
