// ForwardingServer (strongbox/grpc_transport.h): a gRPC server that serves
// ForwardingService with the node's current cluster credentials, rebuilt
// on every change, stopped while sealed.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/grpc_transport/credentials.h"
#include "lib/util/mutex.h"
#include "strongbox/grpc_transport.h"

namespace strongbox {
namespace {

// "host:port" -> host (brackets kept for IPv6).
std::string HostOf(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

class ServerImpl final : public ForwardingServer,
                         public ClusterCredentialsObserver {
 public:
  ServerImpl(const Options& options, std::unique_ptr<ForwardingService> service)
      : options_(options), service_(std::move(service)) {}

  void Start() {
    options_.identity->AddObserver(this);
    thread_ = std::thread([this] { Loop(); });
  }

  ~ServerImpl() override {
    options_.identity->RemoveObserver(this);
    {
      MutexLock l(&mu_);
      stop_ = true;
      mu_.SignalAll();
    }
    thread_.join();
    StopServer();
  }

  void OnClusterCredentialsChanged(
      const ClusterCredentialsChange& change) override {
    MutexLock l(&mu_);
    dirty_ = true;
    mu_.SignalAll();
  }

  int port() override {
    MutexLock l(&mu_);
    return serving_generation_ != 0 ? port_ : 0;
  }

  absl::Status AwaitServing(uint64_t generation,
                            absl::Duration timeout) override {
    MutexLock l(&mu_);
    const bool ok = mu_.AwaitWithTimeout(
        [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return serving_generation_ != 0 && serving_generation_ >= generation;
        },
        timeout);
    if (!ok) return absl::DeadlineExceededError("not serving yet");
    return absl::OkStatus();
  }

 private:
  void Loop() {
    while (true) {
      {
        MutexLock l(&mu_);
        // Also every second: a change may predate the observer's
        // registration, and a failed bind is retried.
        mu_.AwaitWithTimeout(
            [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_ || dirty_; },
            absl::Seconds(1));
        if (stop_) return;
        dirty_ = false;
      }
      Reconcile();
    }
  }

  // Serves the current credentials, or nothing.
  void Reconcile() {
    absl::StatusOr<ClusterCredentials> creds = options_.identity->Current();
    uint64_t serving;
    {
      MutexLock l(&mu_);
      serving = serving_generation_;
    }
    if (creds.ok() && creds->generation == serving) return;
    StopServer();
    if (!creds.ok()) return;
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server_creds =
        ForwardingService::ServerCredentials(*creds);
    if (!server_creds.ok()) return;
    std::string address = options_.listen_address;
    int fixed_port = 0;
    {
      MutexLock l(&mu_);
      fixed_port = port_;
    }
    if (fixed_port != 0) {
      address = absl::StrCat(HostOf(address), ":", fixed_port);
    }
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort(address, *server_creds, &bound);
    builder.RegisterService(service_->service());
    builder.SetMaxReceiveMessageSize(
        static_cast<int>(options_.max_message_bytes));
    builder.SetMaxSendMessageSize(static_cast<int>(options_.max_message_bytes));
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr || bound == 0) {
      // The port may still be held (the server just stopped, another
      // process): the loop tries again within a second.
      return;
    }
    MutexLock l(&mu_);
    server_ = std::move(server);
    port_ = bound;
    serving_generation_ = creds->generation;
    mu_.SignalAll();
  }

  void StopServer() {
    std::unique_ptr<grpc::Server> server;
    {
      MutexLock l(&mu_);
      server = std::move(server_);
      serving_generation_ = 0;
    }
    if (server == nullptr) return;
    server->Shutdown(absl::ToChronoTime(absl::Now() + options_.drain));
    server->Wait();
  }

  const Options options_;
  const std::unique_ptr<ForwardingService> service_;
  std::thread thread_;

  Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t serving_generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardingServer>> ForwardingServer::Create(
    const Options& options) {
  if (options.listen_address.empty() || options.identity == nullptr) {
    return absl::InvalidArgumentError(
        "ForwardingServer needs a listen address and a ClusterIdentity");
  }
  ForwardingService::Options service_options;
  service_options.store = options.store;
  service_options.coordinator = options.coordinator;
  service_options.max_message_bytes = options.max_message_bytes;
  absl::StatusOr<std::unique_ptr<ForwardingService>> service =
      ForwardingService::Create(service_options);
  if (!service.ok()) return service.status();
  auto server = std::make_unique<ServerImpl>(options, *std::move(service));
  server->Start();
  return std::unique_ptr<ForwardingServer>(std::move(server));
}

}  // namespace strongbox
