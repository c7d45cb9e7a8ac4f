// ForwardingService (strongbox/grpc_transport.h).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/grpc_transport/credentials.h"
#include "lib/grpc_transport/forwarding.grpc.pb.h"
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
    grpc::Status refused = Admit(context);
    if (!refused.ok()) {
      WipeMessage(owned);
      return refused;
    }
    if (request->request().size() > options_.max_message_bytes) {
      WipeMessage(owned);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "forwarded request is too large");
    }
    // Unparseable bytes answer a serialized INVALID_ARGUMENT Response.
    response->set_response(
        options_.store->HandleSerialized(request->request()));
    WipeMessage(owned);
    return grpc::Status::OK;
  }

  grpc::Status Echo(grpc::ServerContext* context,
                    const transport::EchoMessage* request,
                    transport::EchoMessage* response) override {
    grpc::Status refused = Admit(context);
    if (!refused.ok()) return refused;
    response->set_payload(request->payload());
    return grpc::Status::OK;
  }

 private:
  // The TLS handshake already required a client certificate that chains to
  // the cluster CA; this refuses what a host's own server might let through
  // (an insecure port) and every call while this node is sealed.
  grpc::Status Admit(grpc::ServerContext* context) {
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    if (auth == nullptr || !auth->IsPeerAuthenticated() ||
        auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME).empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "a cluster client certificate is required");
    }
    const HaState state = options_.coordinator->state();
    if (state == HaState::kSealed || state == HaState::kUninitialized) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("this node is ", HaStateName(state)));
    }
    return grpc::Status::OK;
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
