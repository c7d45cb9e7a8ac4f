// A host program built in its own Bazel workspace against
// @strongbox//:strongbox, using only strongbox's public headers: one node on
// the in-memory backend — initialize, unseal, become active — then a KV
// secret written and read back through SecretStore.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"

int main() {
  std::unique_ptr<strongbox::Backend> backend = strongbox::NewInMemoryBackend();

  strongbox::HaCoordinator::Options options;
  options.backend = backend.get();
  options.node_id = "consumer";
  options.advertise_address = "127.0.0.1:8200";
  absl::StatusOr<std::unique_ptr<strongbox::HaCoordinator>> node =
      strongbox::HaCoordinator::Create(options);
  if (!node.ok()) {
    std::fprintf(stderr, "create: %s\n", node.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::vector<std::string>> shares = (*node)->Initialize(1, 1);
  if (!shares.ok() || !(*node)->Unseal((*shares)[0]).ok()) {
    std::fprintf(stderr, "initialize/unseal failed\n");
    return 1;
  }
  strongbox::SecretStore::Options store_options;
  store_options.coordinator = node->get();
  absl::StatusOr<std::unique_ptr<strongbox::SecretStore>> store =
      strongbox::SecretStore::Create(store_options);
  if (!store.ok()) return 1;

  // The node's loop wins the lease within milliseconds; retry until then.
  absl::StatusOr<strongbox::KvWriteResult> put;
  for (int i = 0; i < 500; ++i) {
    put = (*store)->KvPut("hosts/consumer/greeting",
                          {{"text", "hello from a consumer"}});
    if (put.ok() || !absl::IsUnavailable(put.status())) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!put.ok()) {
    std::fprintf(stderr, "put: %s\n", put.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<strongbox::store::KvSecret> secret =
      (*store)->KvGet("hosts/consumer/greeting");
  if (!secret.ok()) {
    std::fprintf(stderr, "get: %s\n", secret.status().ToString().c_str());
    return 1;
  }
  const std::string text = secret->data().at("text");
  std::printf("node %s is %s; stored \"%s\" as version %llu\n",
              options.node_id.c_str(),
              std::string(strongbox::HaStateName((*node)->state())).c_str(),
              text.c_str(), static_cast<unsigned long long>(put->version));
  return text == "hello from a consumer" ? 0 : 1;
}
