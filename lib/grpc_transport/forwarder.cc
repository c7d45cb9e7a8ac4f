// GrpcForwarder (strongbox/grpc_transport.h).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "lib/grpc_transport/credentials.h"
#include "lib/grpc_transport/forwarding.grpc.pb.h"
#include "lib/util/mutex.h"
#include "strongbox/grpc_transport.h"
#include "strongbox/secret_store.h"

namespace strongbox {

namespace {

absl::Status FromGrpc(const grpc::Status& status, absl::string_view address) {
  const std::string message =
      absl::StrCat("call to ", address, " failed: ", status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(
          absl::StrCat(message, " (outcome unknown)"));
    case grpc::StatusCode::FAILED_PRECONDITION:
      return absl::FailedPreconditionError(message);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

class GrpcForwarder::Impl final : public ClusterCredentialsObserver {
 public:
  explicit Impl(const Options& options) : options_(options) {
    options_.identity->AddObserver(this);
  }
  ~Impl() override { options_.identity->RemoveObserver(this); }

  void OnClusterCredentialsChanged(
      const ClusterCredentialsChange& change) override {
    MutexLock l(&mu_);
    ++epoch_;
    channels_.clear();  // next call dials with the new credentials
  }

  absl::StatusOr<std::shared_ptr<transport::Forwarding::Stub>> Stub(
      absl::string_view address) {
    uint64_t epoch;
    {
      MutexLock l(&mu_);
      auto it = channels_.find(address);
      if (it != channels_.end()) return it->second;
      epoch = epoch_;
    }
    // Credentials may change between here and the insert below: then the
    // channel serves this one call and is not kept.
    absl::StatusOr<ClusterCredentials> creds = options_.identity->Current();
    if (!creds.ok()) {
      return absl::Status(
          creds.status().code(),
          absl::StrCat("no cluster credentials: ", creds.status().message()));
    }
    std::shared_ptr<grpc::ChannelCredentials> channel_creds =
        grpc_transport::ClientCredentials(*creds);
    auto stub =
        std::make_shared<transport::Forwarding::Stub>(grpc::CreateCustomChannel(
            std::string(address), channel_creds,
            grpc_transport::ChannelArgs(options_.max_message_bytes)));
    MutexLock l(&mu_);
    if (epoch != epoch_) return stub;
    auto [it, inserted] = channels_.emplace(std::string(address), stub);
    return it->second;
  }

  absl::StatusOr<std::string> Forward(absl::string_view address,
                                      absl::string_view request) {
    if (request.size() > options_.max_message_bytes) {
      return absl::InvalidArgumentError("forwarded request is too large");
    }
    absl::StatusOr<std::shared_ptr<transport::Forwarding::Stub>> stub =
        Stub(address);
    if (!stub.ok()) return stub.status();
    transport::ForwardRequest req;
    req.set_request(std::string(request));
    transport::ForwardResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
    grpc::Status status = (*stub)->Forward(&ctx, req, &resp);
    WipeMessage(&req);
    if (!status.ok()) {
      WipeMessage(&resp);
      return FromGrpc(status, address);
    }
    std::string out = std::move(*resp.mutable_response());
    return out;
  }

  absl::StatusOr<std::string> Echo(absl::string_view address,
                                   absl::string_view payload) {
    absl::StatusOr<std::shared_ptr<transport::Forwarding::Stub>> stub =
        Stub(address);
    if (!stub.ok()) return stub.status();
    transport::EchoMessage req;
    req.set_payload(std::string(payload));
    transport::EchoMessage resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
    grpc::Status status = (*stub)->Echo(&ctx, req, &resp);
    if (!status.ok()) return FromGrpc(status, address);
    return std::move(*resp.mutable_payload());
  }

 private:
  const Options options_;
  Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<transport::Forwarding::Stub>>
      channels_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // credential changes seen
};

absl::StatusOr<std::unique_ptr<GrpcForwarder>> GrpcForwarder::Create(
    const Options& options) {
  if (options.identity == nullptr) {
    return absl::InvalidArgumentError("GrpcForwarder needs a ClusterIdentity");
  }
  if (options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("deadline must be positive");
  }
  if (options.max_message_bytes == 0 ||
      options.max_message_bytes > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(
        "max_message_bytes must be in [1, 1 GiB]");
  }
  return std::unique_ptr<GrpcForwarder>(
      new GrpcForwarder(std::make_unique<Impl>(options)));
}

GrpcForwarder::GrpcForwarder(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
GrpcForwarder::~GrpcForwarder() = default;

absl::StatusOr<std::string> GrpcForwarder::Forward(
    absl::string_view leader_address, absl::string_view request) {
  return impl_->Forward(leader_address, request);
}

absl::StatusOr<std::string> GrpcForwarder::Echo(absl::string_view address,
                                                absl::string_view payload) {
  return impl_->Echo(address, payload);
}

}  // namespace strongbox
