// TransitEngine: encryption as a service — named AES-256-GCM keys with
// versions, stored through the barrier under "transit/keys/<name>".
//
// Encrypt, decrypt and rewrap change no storage, so performance standbys
// serve them from a key cache; see EngineCall::active_fence for when the
// cache is trusted and when it is re-validated against storage (a standby
// never encrypts with a version below the minimum, nor fails to decrypt a
// version newer than its cache).
//
// Thread-safe. Key bytes never leave the engine: not in responses, logs or
// error messages.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
#define STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_

#include <memory>

#include "absl/status/status.h"
#include "lib/store/engine.h"
#include "lib/store/requests.pb.h"

namespace strongbox {

struct TransitOptions {
  // Longest key name, bytes ([A-Za-z0-9_.-] only). Default: 128.
  size_t max_name_bytes = 128;
  // Most items in one batch. Default: 1000.
  size_t max_batch_items = 1000;
  // Largest plaintext per item. Default: 1 MiB.
  size_t max_plaintext_bytes = 1 << 20;
};

class TransitEngine {
 public:
  explicit TransitEngine(const TransitOptions& options = {});
  ~TransitEngine();
  TransitEngine(const TransitEngine&) = delete;
  TransitEngine& operator=(const TransitEngine&) = delete;

  // Executes one transit_* request into `response` (its result field and,
  // for writes, its index). Returns the request's status; per-item batch
  // failures are reported in the items and do not fail the call.
  absl::Status Execute(const store::Request& request, const EngineCall& call,
                       store::Response* response);

  // Drops every cached key (the node sealed or lost leadership).
  void ClearCache();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
