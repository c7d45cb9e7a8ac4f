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
// Thread-safe. Its only state besides the options is a cache of the
// metadata (never the data) of secrets this node last wrote: see
// KvOptions::write_cache_entries.
#ifndef STRONGBOX_LIB_STORE_KV_ENGINE_H_
#define STRONGBOX_LIB_STORE_KV_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
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
  // Secrets whose metadata a put may take from what this node itself last
  // wrote (under the same fence) instead of reading it back: the record
  // without its data, so no secret is cached. Safe because the metadata
  // write is conditioned on the backend version the entry was written at:
  // any other write since (another node, an earlier or later leader) makes
  // that commit fail, and the put reads storage and tries again. 0: off.
  // Default: 4096.
  size_t write_cache_entries = 4096;
};

class KvEngine {
 public:
  explicit KvEngine(const KvOptions& options = {});
  ~KvEngine();

  // Executes one kv_* request into `response`.
  absl::Status Execute(const store::Request& request, const EngineCall& call,
                       store::Response* response) const;

  // A kv_put without request or response messages (SecretStore's KvPut):
  // `data` at `path`, with check-and-set `cas` if given. The same checks,
  // effects and codes as a kv_put through Execute; *version: the version
  // written, *index: the commit's index.
  absl::Status Put(absl::string_view path,
                   const std::map<std::string, std::string>& data,
                   std::optional<uint64_t> cas, const EngineCall& call,
                   uint64_t* version, uint64_t* index) const;

  // A kv_get without request or response messages (SecretStore's KvGet):
  // version `version` (0: the current one) of `path` into *secret, which
  // must be empty. The same checks and codes as a kv_get through Execute;
  // on failure *secret may hold part of the answer, which the caller wipes
  // (WipeMessage) and drops.
  absl::Status Get(absl::string_view path, uint64_t version,
                   const EngineCall& call, store::KvSecret* secret) const;

  // Forgets every cached metadata record. The store calls it whenever this
  // node stops being the active or is sealed.
  void ClearWriteCache() const;

 private:
  // Writes to one path on this node run one at a time (a stripe per hash
  // of the path), so local writers never burn their retries against each
  // other; the version precondition still guards against any other writer.
  static constexpr size_t kWriteStripes = 64;
  Mutex& WriteStripe(absl::string_view path) const;
  friend class KvEngineOps;

  // A metadata record this node committed, the backend version the commit
  // gave it, and the fence it carried.
  struct CachedMeta;
  // Moves out the cached entry of `path` (null if none); it is marked not
  // usable unless it was written under `fence`. Nothing stays cached for
  // `path` until CacheMeta puts an entry back.
  std::unique_ptr<CachedMeta> TakeCachedMeta(const std::string& path,
                                             FenceToken fence) const;
  void CacheMeta(const std::string& path,
                 std::unique_ptr<CachedMeta> entry) const;
  void DropCachedMeta(const std::string& path) const;

  const KvOptions options_;
  mutable Mutex write_stripes_[kWriteStripes];
  mutable Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::unique_ptr<CachedMeta>>
      write_cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_KV_ENGINE_H_
