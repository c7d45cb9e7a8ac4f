// Feeds arbitrary bytes to the forwarding service's handler
// (lib/grpc_transport/handler.h) as the body of a gRPC Forward call: what a
// peer that passed the TLS handshake can send. gRPC parses the body as a
// ForwardRequest (a body that does not parse never reaches the handler:
// gRPC answers INTERNAL itself), then the handler checks the node's state
// and the size limit, runs SecretStore::HandleSerialized() on the active
// node and fills the ForwardResponse gRPC encodes. gRPC's own framing and
// TLS are not ours and are not fuzzed here.
//
// Checked on every input (D6): an answer, never a crash; a sealed node
// answers FAILED_PRECONDITION with an empty response; above the limit
// RESOURCE_EXHAUSTED with an empty response; otherwise OK with a response
// that parses as a store Response; the request's bytes are wiped on every
// path.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "lib/grpc_transport/forwarding.pb.h"
#include "lib/grpc_transport/handler.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"

namespace {

// Small, so inputs above it are common.
constexpr size_t kLimit = 1024;

std::unique_ptr<strongbox::HaCoordinator> NewCoordinator(
    strongbox::Backend* backend, const char* id) {
  strongbox::HaCoordinator::Options o;
  o.backend = backend;
  o.node_id = id;
  o.advertise_address = std::string(id) + ":1";
  o.background_thread = false;
  o.lease_ttl = absl::Hours(24);
  o.renew_interval = absl::Hours(1);
  return *strongbox::HaCoordinator::Create(o);
}

std::unique_ptr<strongbox::SecretStore> NewStore(
    strongbox::HaCoordinator* coordinator) {
  strongbox::SecretStore::Options so;
  so.coordinator = coordinator;
  so.max_index_wait = absl::ZeroDuration();
  return *strongbox::SecretStore::Create(so);
}

// An active node, and a sealed one on the same backend.
struct Nodes {
  Nodes() {
    backend = strongbox::NewInMemoryBackend();
    active = NewCoordinator(backend.get(), "active");
    std::vector<std::string> shares = *active->Initialize(1, 1);
    if (!active->Unseal(shares[0]).ok()) std::abort();
    active->Poll();
    if (active->state() != strongbox::HaState::kActive) std::abort();
    active_store = NewStore(active.get());
    if (!active_store->TransitCreateKey("k").ok()) std::abort();
    if (!active_store->KvPut("app/db", {{"user", "u"}}).ok()) std::abort();
    sealed = NewCoordinator(backend.get(), "sealed");
    sealed->Poll();
    if (sealed->state() != strongbox::HaState::kSealed) std::abort();
    sealed_store = NewStore(sealed.get());
  }
  std::unique_ptr<strongbox::Backend> backend;
  std::unique_ptr<strongbox::HaCoordinator> active;
  std::unique_ptr<strongbox::SecretStore> active_store;
  std::unique_ptr<strongbox::HaCoordinator> sealed;
  std::unique_ptr<strongbox::SecretStore> sealed_store;
};

bool Wiped(const strongbox::transport::ForwardRequest& request) {
  for (char c : request.request()) {
    if (c != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Nodes* nodes = new Nodes();
  strongbox::transport::ForwardRequest parsed;
  if (!parsed.ParseFromArray(data, static_cast<int>(size))) return 0;

  // The sealed node runs nothing.
  strongbox::transport::ForwardRequest request = parsed;
  strongbox::transport::ForwardResponse response;
  absl::Status status = strongbox::grpc_transport::HandleForward(
      *nodes->sealed_store, *nodes->sealed, kLimit, &request, &response);
  if (status.code() != absl::StatusCode::kFailedPrecondition) std::abort();
  if (!response.response().empty() || !Wiped(request)) std::abort();

  // The active node answers every request within the limit.
  request = parsed;
  response.Clear();
  status = strongbox::grpc_transport::HandleForward(
      *nodes->active_store, *nodes->active, kLimit, &request, &response);
  if (!Wiped(request)) std::abort();
  if (parsed.request().size() > kLimit) {
    if (status.code() != absl::StatusCode::kResourceExhausted) std::abort();
    if (!response.response().empty()) std::abort();
    return 0;
  }
  if (!status.ok()) std::abort();
  // What gRPC sends back, and what the forwarding node reads from it.
  strongbox::transport::ForwardResponse received;
  if (!received.ParseFromString(response.SerializeAsString())) std::abort();
  strongbox::store::Response answer;
  if (!answer.ParseFromString(received.response())) std::abort();
  return 0;
}
