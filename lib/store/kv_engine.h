// KvEngine: versioned secrets in the spirit of Vault's KV version 2.
//
// A secret is a map of string fields at a path. Every put creates a new
// version; old versions are kept up to max_versions (oldest pruned), can be
// soft-deleted and undeleted, or destroyed for good. Storage, through the
// barrier:
//   kv/meta/<path>            KvMetadataRecord (incl. the current data)
//   kv/data/<path>/<version>  KvDataRecord, one per kept version
// Every write is one atomic backend commit guarded by the metadata's
// version, so concurrent writers never lose an update (ABORTED is retried
// internally unless the caller asked for check-and-set).
//
// Thread-safe (stateless apart from its options).
#ifndef STRONGBOX_LIB_STORE_KV_ENGINE_H_
#define STRONGBOX_LIB_STORE_KV_ENGINE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "lib/store/engine.h"
#include "lib/util/mutex.h"
#include "strongbox/requests.pb.h"

namespace strongbox {

class KvEngineOps;

struct KvOptions {
  // Longest secret path, bytes. Default: 512.
  size_t max_path_bytes = 512;
  // Most fields in one secret. Default: 256.
  size_t max_fields = 256;
  // Largest secret (sum of field names and values), bytes. Default: 512 KiB.
  size_t max_secret_bytes = 512 << 10;
  // Versions kept when a secret's metadata does not say. Default: 10.
  uint32_t default_max_versions = 10;
  // Upper bound on a secret's max_versions. Default: 1000.
  uint32_t max_max_versions = 1000;
};

class KvEngine {
 public:
  explicit KvEngine(const KvOptions& options = {}) : options_(options) {}

  // Executes one kv_* request into `response`.
  absl::Status Execute(const store::Request& request, const EngineCall& call,
                       store::Response* response) const;

 private:
  // Writes to one path on this node run one at a time (a stripe per hash
  // of the path), so local writers never burn their retries against each
  // other; the version precondition still guards against any other writer.
  static constexpr size_t kWriteStripes = 64;
  Mutex& WriteStripe(absl::string_view path) const;
  friend class KvEngineOps;

  const KvOptions options_;
  mutable Mutex write_stripes_[kWriteStripes];
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_KV_ENGINE_H_
