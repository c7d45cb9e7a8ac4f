// Feeds arbitrary bytes to an active node's SecretStore: as a serialized
// request (what a host hands over from its transport) and as a Transit
// ciphertext. Every call must answer — a parseable Response, a Status —
// and never crash, hang or leak (D6).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"

namespace {

struct Node {
  Node() {
    backend = strongbox::NewInMemoryBackend();
    strongbox::HaCoordinator::Options o;
    o.backend = backend.get();
    o.node_id = "fuzz";
    o.advertise_address = "fuzz:1";
    o.background_thread = false;
    o.lease_ttl = absl::Hours(24);
    o.renew_interval = absl::Hours(1);
    coordinator = *strongbox::HaCoordinator::Create(o);
    std::vector<std::string> shares = *coordinator->Initialize(1, 1);
    if (!coordinator->Unseal(shares[0]).ok()) std::abort();
    coordinator->Poll();
    if (coordinator->state() != strongbox::HaState::kActive) std::abort();
    strongbox::SecretStore::Options so;
    so.coordinator = coordinator.get();
    so.max_index_wait = absl::ZeroDuration();
    store = *strongbox::SecretStore::Create(so);
    if (!store->TransitCreateKey("k").ok()) std::abort();
    if (!store->KvPut("app/db", {{"user", "u"}}).ok()) std::abort();
  }
  std::unique_ptr<strongbox::Backend> backend;
  std::unique_ptr<strongbox::HaCoordinator> coordinator;
  std::unique_ptr<strongbox::SecretStore> store;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Node* node = new Node();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  strongbox::store::Response response;
  if (!response.ParseFromString(node->store->HandleSerialized(bytes))) {
    std::abort();  // every answer is a Response
  }
  (void)node->store->TransitDecrypt("k", bytes);
  (void)node->store->TransitDecrypt("k", "strongbox:v1:" + bytes);
  return 0;
}
