#include "lib/store/kv_engine.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/store/kv_record_reader.h"
#include "lib/store/kv_record_writer.h"
#include "lib/store/kv_records.pb.h"
#include "lib/store/retry.h"
#include "lib/store/test_hooks.h"
#include "lib/store/wipe.h"
#include "lib/util/status_macros.h"
#include "lib/util/utf8.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace {

using store::KvDataRecord;
using store::KvMetadataRecord;
using store::KvVersionRecord;

constexpr absl::string_view kMetaPrefix = "kv/meta/";
constexpr absl::string_view kDataPrefix = "kv/data/";

std::string MetaPath(absl::string_view path) {
  return absl::StrCat(kMetaPrefix, path);
}

// MetaPath(path) for a read, built on the stack when it fits (a path is
// not secret; it saves an allocation on every read).
class MetaKey {
 public:
  explicit MetaKey(absl::string_view path) {
    const size_t size = kMetaPrefix.size() + path.size();
    if (size <= sizeof(inline_)) {
      std::memcpy(inline_, kMetaPrefix.data(), kMetaPrefix.size());
      std::memcpy(inline_ + kMetaPrefix.size(), path.data(), path.size());
      key_ = absl::string_view(inline_, size);
    } else {
      heap_ = MetaPath(path);
      key_ = heap_;
    }
  }
  MetaKey(const MetaKey&) = delete;
  MetaKey& operator=(const MetaKey&) = delete;

  absl::string_view key() const { return key_; }

 private:
  char inline_[256];
  std::string heap_;
  absl::string_view key_;
};

// The buffer a KV read opens a record in (Barrier::GetInPlace): one per
// thread, kept between reads, so a read allocates nothing for it. Its
// plaintext is wiped when the read ends; between reads it holds only a
// record's public header and tag and zeros. One grown past kKeptBytes (a
// large secret) is freed instead of kept. A read that cannot have it gets
// a buffer of its own: a second read on the same thread while the first
// holds it (nothing does that today), or a read during the thread's exit
// after the kept buffer was freed (a host's thread_local destructor may
// read a secret).
class ReadBuffer {
 public:
  ReadBuffer() {
    Kept* kept = kept_;
    if (kept == nullptr) {
      kept = new Kept;
      kept_ = kept;
      exit_.armed = true;  // first use: its destructor frees `kept`
    }
    if (kept != Freed() && !kept->in_use) {
      kept->in_use = true;
      value_ = &kept->value;
      kept_in_use_ = kept;
    } else {
      value_ = &own_;
    }
  }
  ~ReadBuffer() {
    value_->Wipe();
    if (kept_in_use_ != nullptr) {
      std::string& buffer = kept_in_use_->value.stored.value;
      if (buffer.capacity() > kKeptBytes) std::string().swap(buffer);
      kept_in_use_->in_use = false;
    }
  }
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  OpenedValue* get() { return value_; }

  // store_testing::ThreadKvReadBufferForTesting.
  static std::string KeptBytes() {
    const Kept* kept = kept_;
    return kept == nullptr || kept == Freed() ? std::string()
                                              : kept->value.stored.value;
  }

 private:
  static constexpr size_t kKeptBytes = 64 * 1024;
  struct Kept {
    OpenedValue value;  // wipes what it holds when deleted
    bool in_use = false;
  };
  // Frees the thread's buffer when the thread exits, and marks it freed
  // (kept_ is trivially destructible, so it can still be read after this
  // runs).
  struct AtExit {
    bool armed = false;
    ~AtExit() {
      if (!armed) return;
      delete kept_;
      kept_ = Freed();
    }
  };
  static Kept* Freed() {
    return reinterpret_cast<Kept*>(alignof(Kept));  // never a real Kept
  }
  static thread_local Kept* kept_;
  static thread_local AtExit exit_;

  OpenedValue own_;
  OpenedValue* value_;
  Kept* kept_in_use_ = nullptr;
};

thread_local ReadBuffer::Kept* ReadBuffer::kept_ = nullptr;
thread_local ReadBuffer::AtExit ReadBuffer::exit_;

}  // namespace

std::string store_testing::ThreadKvReadBufferForTesting() {
  return ReadBuffer::KeptBytes();
}

namespace {

std::string DataPath(absl::string_view path, uint64_t version) {
  return absl::StrCat(kDataPrefix, path, "/", version);
}

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

// The metadata as stored, with the backend version it was read at.
// Secret values pass through this engine only in Wiped records and
// WipedBatch values (lib/store/wipe.h), so none is freed unwiped (D5).
struct Meta {
  Wiped<KvMetadataRecord> record;
  std::optional<uint64_t> backend_version;  // nullopt: absent
  // Fields protobuf kept as unknown (a newer node's): the record is then
  // written by protobuf, which keeps them (kv_record_writer.h).
  bool unknown_fields = true;
};

// Reads the metadata of `path` into *meta (left empty if there is none).
// An out-parameter, not a StatusOr: moving a record costs a swap of every
// field, on the hot path of every read.
absl::Status ReadMeta(Barrier* barrier, absl::string_view path, Meta* meta) {
  absl::StatusOr<Entry> entry = barrier->Get(MetaPath(path));
  if (absl::IsNotFound(entry.status())) {
    meta->unknown_fields = false;
    return absl::OkStatus();
  }
  if (!entry.ok()) return entry.status();
  const bool parsed = meta->record->ParseFromString(entry->value);
  WipeBuffer(&entry->value);
  if (!parsed) {
    return absl::DataLossError(
        absl::StrCat("metadata of ", path, " does not parse"));
  }
  meta->backend_version = entry->version;
  meta->unknown_fields = kv_wire::HasUnknownFields(*meta->record);
  return absl::OkStatus();
}

// A Put of `head` (a metadata record without current data; nullptr for a
// data record, which has nothing else) followed by `fields` as its map
// field `field` (a message's fields may come in any order on the wire),
// sized exactly, with room for the seal (Barrier::CommitInPlace), into the
// WriteOp's own buffer (wiped with the batch). The head is written by hand
// (kv_record_writer.h) unless it holds unknown fields.
template <typename Fields>
void PutWithFields(WriteOp& op, std::string key, const KvMetadataRecord* head,
                   bool head_has_unknown_fields, uint32_t field,
                   const Fields& fields) {
  op.kind = WriteOp::Kind::kPut;
  op.key = std::move(key);
  const bool by_hand = head != nullptr && !head_has_unknown_fields &&
                       head->current_data().empty();
  // A head written by hand gets room for its longest form, and the value
  // is cut to what was written (the tail beyond never held anything).
  const size_t head_size = head == nullptr ? 0
                           : by_hand       ? kv_wire::MetadataHeadMaxSize(*head)
                                           : head->ByteSizeLong();
  const size_t size = head_size + kv_wire::FieldsSize(fields);
  op.value.reserve(size + Barrier::kSealOverhead);
  op.value.resize(size);
  char* const start = op.value.data();
  char* p = start;
  if (by_hand) {
    p = kv_wire::WriteMetadataHead(*head, p);
  } else if (head != nullptr) {
    head->SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p));
    p += head_size;
  }
  p = kv_wire::AppendFields(field, fields, p);
  op.value.resize(static_cast<size_t>(p - start));
}

// The metadata write of `path`, conditioned on the version it was read at.
void MetaCondition(const Meta& meta, WriteOp& op) {
  if (meta.backend_version.has_value()) {
    op.IfVersion(*meta.backend_version);
  } else {
    op.IfAbsent();
  }
}

WriteOp MetaWrite(absl::string_view path, const Meta& meta) {
  WriteOp op = PutMessage(MetaPath(path), *meta.record);
  MetaCondition(meta, op);
  return op;
}

// The same, with `current_data` as the record's current data, built at
// the end of `ops`.
template <typename Fields>
void AddMetaWrite(absl::string_view path, const Meta& meta,
                  const Fields& current_data, WipedBatch& ops) {
  WriteOp& op = ops.Emplace();
  PutWithFields(op, MetaPath(path), &*meta.record, meta.unknown_fields,
                KvMetadataRecord::kCurrentDataFieldNumber, current_data);
  MetaCondition(meta, op);
}

KvVersionRecord* FindVersion(KvMetadataRecord& record, uint64_t version) {
  for (KvVersionRecord& v : *record.mutable_versions()) {
    if (v.version() == version) return &v;
  }
  return nullptr;
}

void FillVersionMetadata(const KvVersionFields& v,
                         store::KvVersionMetadata* out) {
  out->set_version(v.version);
  out->set_created_unix_micros(v.created_unix_micros);
  out->set_deletion_unix_micros(v.deletion_unix_micros);
  out->set_destroyed(v.destroyed);
}

void FillVersionMetadata(const KvVersionRecord& v,
                         store::KvVersionMetadata* out) {
  out->set_version(v.version());
  out->set_created_unix_micros(v.created_unix_micros());
  out->set_deletion_unix_micros(v.deletion_unix_micros());
  out->set_destroyed(v.destroyed());
}

}  // namespace

struct KvEngine::CachedMeta {
  KvMetadataRecord record;  // as stored, less current_data (never cached)
  uint64_t backend_version = 0;
  bool unknown_fields = true;  // as Meta::unknown_fields
  FenceToken fence = kNoFence;
  // False once a put has taken the record (the object is then only a
  // buffer to put the next one in).
  bool usable = true;
};

class KvEngineOps {
 public:
  KvEngineOps(const KvEngine& engine, const EngineCall& call,
              store::Response* response)
      : options_(engine.options_),
        engine_(engine),
        call_(call),
        response_(response) {}

  uint64_t index() const { return index_; }

  absl::Status ValidatePath(absl::string_view path) const {
    if (path.size() > options_.max_path_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secret path is ", path.size(),
          " bytes; the limit (max_path_bytes) is ", options_.max_path_bytes));
    }
    if (!IsValidUtf8(path)) {
      return absl::InvalidArgumentError("secret path is not valid UTF-8");
    }
    BackendLimits limits;
    absl::Status valid = ValidateKey(path, limits);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("secret path: ", valid.message()));
    }
    return absl::OkStatus();
  }

  uint32_t MaxVersions(const KvMetadataRecord& record) const {
    return record.max_versions() == 0 ? options_.default_max_versions
                                      : record.max_versions();
  }

  // Drops the oldest versions beyond max_versions (data and metadata).
  void Prune(absl::string_view path, KvMetadataRecord& record,
             WipedBatch& ops) const {
    const uint32_t keep = MaxVersions(record);
    auto* versions = record.mutable_versions();
    while (static_cast<uint32_t>(versions->size()) > keep) {
      const KvVersionRecord& oldest = versions->Get(0);
      if (!oldest.destroyed()) {
        ops.Add(WriteOp::Delete(DataPath(path, oldest.version())));
      }
      versions->erase(versions->begin());
    }
  }

  // Commits `ops` (with the metadata write) under the call's fence; a
  // conflict is retried by RetryOnConflict.
  // The values are sealed where they are (Barrier::CommitInPlace): `ops`
  // is spent.
  absl::Status Commit(WipedBatch& ops) {
    absl::StatusOr<uint64_t> index =
        call_.barrier->CommitInPlace(ops.mutable_ops(), call_.write_fence);
    if (!index.ok()) return VersionedCommitStatus(index.status());
    ops.MarkSealed();
    index_ = *index;
    if (response_ != nullptr) response_->set_index(*index);
    return absl::OkStatus();
  }

  // One read-modify-write of the secret at `path`: under the path's write
  // stripe, reads its metadata and hands it to `apply`, which decides and
  // commits; a conflict is retried (RetryOnConflict, lib/store/retry.h).
  template <typename Apply>
  absl::Status ModifyMeta(const std::string& path, Apply apply) {
    MutexLock stripe(&engine_.WriteStripe(path));
    // Only puts use the cache; any other change of the metadata makes the
    // cached record out of date (its commit would be refused anyway).
    engine_.DropCachedMeta(path);
    return RetryOnConflict([&]() -> absl::Status {
      Meta meta;
      RETURN_IF_ERROR(ReadMeta(call_.barrier, path, &meta));
      return apply(meta);
    });
  }

  absl::Status Put(const store::KvPutRequest& req) {
    // Either field: a node before proto3 `optional` sends only the flag.
    const bool has_cas = req.has_cas() || req.legacy_has_cas();
    uint64_t version = 0;
    RETURN_IF_ERROR(Put(
        req.path(), req.data(),
        has_cas ? std::optional<uint64_t>(req.cas()) : std::nullopt, &version));
    response_->mutable_kv_write()->set_version(version);
    return absl::OkStatus();
  }

  // A put of `data` (a map of field names to values) at `path`, with
  // check-and-set `cas` if given; *version: the version written (the index
  // is index_).
  template <typename Fields>
  absl::Status Put(absl::string_view path, const Fields& data,
                   std::optional<uint64_t> cas, uint64_t* version) {
    absl::Status valid = ValidatePath(path);
    if (!valid.ok()) return valid;
    if (data.size() > options_.max_fields) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secret has ", data.size(), " fields; the limit (max_fields) is ",
          options_.max_fields));
    }
    size_t bytes = 0;
    for (const auto& [k, v] : data) {
      if (!IsValidUtf8(k)) {
        return absl::InvalidArgumentError("a field name is not valid UTF-8");
      }
      bytes += k.size() + v.size();
    }
    if (bytes > options_.max_secret_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "secret is ", bytes, " bytes; the limit (max_secret_bytes) is ",
          options_.max_secret_bytes));
    }
    const std::string key(path);
    MutexLock stripe(&engine_.WriteStripe(path));
    // The metadata this node last wrote for the path, if it still holds the
    // fence it wrote it under (KvOptions::write_cache_entries): tried once
    // per request; a retry reads storage.
    std::unique_ptr<KvEngine::CachedMeta> cached =
        engine_.TakeCachedMeta(key, call_.write_fence);
    return RetryOnConflict([&]() -> absl::Status {
      Meta meta;
      const bool from_cache = cached != nullptr && cached->usable;
      if (from_cache) {
        cached->usable = false;
        meta.record->Swap(&cached->record);
        meta.backend_version = cached->backend_version;
        meta.unknown_fields = cached->unknown_fields;
      } else {
        RETURN_IF_ERROR(ReadMeta(call_.barrier, path, &meta));
      }
      RETURN_IF_ERROR(PutOnce(path, data, cas, meta, from_cache, version));
      if (options_.write_cache_entries > 0) {
        if (cached == nullptr)
          cached = std::make_unique<KvEngine::CachedMeta>();
        // What was just stored, less the data (cleared by PutOnce), at the
        // version the commit gave every key it wrote.
        cached->record.Swap(meta.record.get());
        cached->backend_version = index_;
        cached->unknown_fields = meta.unknown_fields;
        cached->fence = call_.write_fence;
        cached->usable = true;
        engine_.CacheMeta(key, std::move(cached));
      }
      return absl::OkStatus();
    });
  }

  // One attempt of Put on `meta`. A decision taken on metadata from the
  // cache that would fail the request is not trusted: it comes back as a
  // conflict, so the retry decides again on what storage holds.
  template <typename Fields>
  absl::Status PutOnce(absl::string_view path, const Fields& data,
                       std::optional<uint64_t> cas, Meta& meta, bool from_cache,
                       uint64_t* written) {
    KvMetadataRecord& record = *meta.record;
    const bool cas_refused = record.cas_required() && !cas.has_value();
    const bool cas_mismatch =
        cas.has_value() && *cas != record.current_version();
    if (from_cache && (cas_refused || cas_mismatch)) {
      return ConflictError("check-and-set is checked again against storage");
    }
    if (cas_refused) {
      return absl::InvalidArgumentError(
          absl::StrCat("check-and-set is required for ", path, "; pass cas"));
    }
    if (cas_mismatch) {
      return absl::AbortedError(absl::StrCat(
          "check-and-set mismatch for ", path, ": current version is ",
          record.current_version(), ", cas was ", *cas));
    }
    const uint64_t version = record.current_version() + 1;
    const int64_t now = Micros(call_.Now());
    if (!meta.backend_version.has_value()) record.set_created_unix_micros(now);
    record.set_updated_unix_micros(now);
    record.set_current_version(version);
    KvVersionRecord* v = record.add_versions();
    v->set_version(version);
    v->set_created_unix_micros(now);
    // The new data goes on the wire from the caller's map (PutWithFields):
    // the record carries none of its own.
    ClearFields(record.mutable_current_data());
    WipedBatch ops;
    WriteOp& data_op = ops.Emplace();
    PutWithFields(data_op, DataPath(path, version), nullptr, false,
                  KvDataRecord::kDataFieldNumber, data);
    data_op.IfAbsent();
    Prune(path, record, ops);
    AddMetaWrite(path, meta, data, ops);
    RETURN_IF_ERROR(Commit(ops));
    *written = version;
    return absl::OkStatus();
  }

  // Version `version` (0: the current one) of `path` into *secret (empty;
  // its data is set last, after every check).
  absl::Status Get(absl::string_view path, uint64_t version,
                   store::KvSecret* secret) {
    RETURN_IF_ERROR(ValidatePath(path));
    // The metadata is read from its wire form (KvMetadataReader), not
    // parsed into a record: the current data goes from the opened buffer
    // straight into the caller's map, copied once.
    ReadBuffer buffer;
    OpenedValue& opened = *buffer.get();
    absl::Status got = call_.barrier->GetInPlace(MetaKey(path).key(), &opened);
    if (absl::IsNotFound(got)) {
      return absl::NotFoundError(absl::StrCat("no secret at ", path));
    }
    if (!got.ok()) return got;
    KvMetadataReader meta;
    if (!meta.Parse(opened.plaintext())) {
      return absl::DataLossError(
          absl::StrCat("metadata of ", path, " does not parse"));
    }
    const uint64_t wanted = version == 0 ? meta.current_version() : version;
    if (wanted == 0) {
      return absl::NotFoundError(absl::StrCat("no secret at ", path));
    }
    const KvVersionFields* v = meta.FindVersion(wanted);
    if (v == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("version ", wanted, " of ", path,
                       " does not exist (never written or pruned)"));
    }
    if (v->destroyed) {
      return absl::NotFoundError(
          absl::StrCat("version ", wanted, " of ", path, " is destroyed"));
    }
    if (v->deletion_unix_micros != 0) {
      return absl::NotFoundError(
          absl::StrCat("version ", wanted, " of ", path, " is deleted"));
    }
    FillVersionMetadata(*v, secret->mutable_metadata());
    if (wanted == meta.current_version()) {
      meta.current_data().CopyTo(secret->mutable_data());
      return absl::OkStatus();
    }
    // An older version: its own data record, in a buffer of its own (the
    // metadata's views stay valid until here, and it is the rarer read).
    OpenedValue data;  // wiped by its destructor
    got = call_.barrier->GetInPlace(DataPath(path, wanted), &data);
    if (!got.ok()) {
      if (absl::IsNotFound(got)) {
        return absl::DataLossError(
            absl::StrCat("version ", wanted, " of ", path,
                         " is in the metadata but its data is missing"));
      }
      return got;
    }
    KvFieldsView fields;
    if (!ReadKvDataRecord(data.plaintext(), &fields)) {
      return absl::DataLossError(
          absl::StrCat("version ", wanted, " of ", path, " does not parse"));
    }
    fields.CopyTo(secret->mutable_data());
    return absl::OkStatus();
  }

  enum class VersionOp { kDelete, kUndelete, kDestroy };

  absl::Status Versions(const store::KvVersionsRequest& req, VersionOp op) {
    RETURN_IF_ERROR(ValidatePath(req.path()));
    return ModifyMeta(req.path(), [&](Meta& meta) -> absl::Status {
      KvMetadataRecord& record = *meta.record;
      if (!meta.backend_version.has_value()) {
        return absl::NotFoundError(absl::StrCat("no secret at ", req.path()));
      }
      std::vector<uint64_t> versions(req.versions().begin(),
                                     req.versions().end());
      if (versions.empty()) {
        if (op != VersionOp::kDelete) {
          return absl::InvalidArgumentError(
              "name the versions to undelete or destroy");
        }
        versions.push_back(record.current_version());
      }
      WipedBatch ops;
      const int64_t now = Micros(call_.Now());
      for (uint64_t n : versions) {
        KvVersionRecord* v = FindVersion(record, n);
        if (v == nullptr) continue;  // Pruned or never written: nothing to do.
        switch (op) {
          case VersionOp::kDelete:
            if (!v->destroyed() && v->deletion_unix_micros() == 0) {
              v->set_deletion_unix_micros(now);
            }
            break;
          case VersionOp::kUndelete:
            if (!v->destroyed()) v->set_deletion_unix_micros(0);
            break;
          case VersionOp::kDestroy:
            if (!v->destroyed()) {
              v->set_destroyed(true);
              ops.Add(WriteOp::Delete(DataPath(req.path(), n)));
              if (n == record.current_version()) {
                ClearFields(record.mutable_current_data());
              }
            }
            break;
        }
      }
      record.set_updated_unix_micros(now);
      ops.Add(MetaWrite(req.path(), meta));
      return Commit(ops);
    });
  }

  absl::Status MetadataGet(const store::KvPathRequest& req) {
    RETURN_IF_ERROR(ValidatePath(req.path()));
    Meta meta;
    RETURN_IF_ERROR(ReadMeta(call_.barrier, req.path(), &meta));
    if (!meta.backend_version.has_value()) {
      return absl::NotFoundError(absl::StrCat("no secret at ", req.path()));
    }
    const KvMetadataRecord& record = *meta.record;
    store::KvMetadata* out = response_->mutable_kv_metadata();
    out->set_path(req.path());
    out->set_created_unix_micros(record.created_unix_micros());
    out->set_updated_unix_micros(record.updated_unix_micros());
    out->set_current_version(record.current_version());
    out->set_oldest_version(
        record.versions().empty() ? 0 : record.versions(0).version());
    out->set_max_versions(MaxVersions(record));
    out->set_cas_required(record.cas_required());
    for (const KvVersionRecord& v : record.versions()) {
      FillVersionMetadata(v, out->add_versions());
    }
    return absl::OkStatus();
  }

  absl::Status MetadataPut(const store::KvMetadataPutRequest& req) {
    RETURN_IF_ERROR(ValidatePath(req.path()));
    if (req.max_versions() > options_.max_max_versions) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_versions ", req.max_versions(),
                       " is above the limit (max_max_versions) of ",
                       options_.max_max_versions));
    }
    return ModifyMeta(req.path(), [&](Meta& meta) -> absl::Status {
      KvMetadataRecord& record = *meta.record;
      const int64_t now = Micros(call_.Now());
      if (!meta.backend_version.has_value())
        record.set_created_unix_micros(now);
      record.set_updated_unix_micros(now);
      record.set_max_versions(req.max_versions());
      record.set_cas_required(req.cas_required());
      WipedBatch ops;
      Prune(req.path(), record, ops);
      ops.Add(MetaWrite(req.path(), meta));
      return Commit(ops);
    });
  }

  absl::Status DeleteAll(const store::KvPathRequest& req) {
    RETURN_IF_ERROR(ValidatePath(req.path()));
    return ModifyMeta(req.path(), [&](Meta& meta) -> absl::Status {
      if (!meta.backend_version.has_value()) return absl::OkStatus();
      WipedBatch ops;
      for (const KvVersionRecord& v : meta.record->versions()) {
        if (!v.destroyed()) {
          ops.Add(WriteOp::Delete(DataPath(req.path(), v.version())));
        }
      }
      WriteOp meta_op = WriteOp::Delete(MetaPath(req.path()));
      meta_op.IfVersion(*meta.backend_version);
      ops.Add(std::move(meta_op));
      return Commit(ops);
    });
  }

  absl::Status List(const store::KvListRequest& req) {
    const std::string& prefix = req.prefix();
    if (!prefix.empty()) {
      if (prefix.back() != '/') {
        return absl::InvalidArgumentError(
            "list prefix must be empty or end with '/'");
      }
      RETURN_IF_ERROR(ValidatePath(prefix.substr(0, prefix.size() - 1)));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> keys,
                     call_.barrier->List(absl::StrCat(kMetaPrefix, prefix)));
    store::KvListResult* out = response_->mutable_kv_list();
    for (std::string& key : keys) out->add_keys(std::move(key));
    return absl::OkStatus();
  }

 private:
  const KvOptions& options_;
  const KvEngine& engine_;
  const EngineCall& call_;
  // Null on the direct path (KvEngine::Get and Put answer without one).
  store::Response* const response_;
  // The index of the last commit (Commit).
  uint64_t index_ = 0;
};

KvEngine::KvEngine(const KvOptions& options) : options_(options) {}

KvEngine::~KvEngine() = default;

std::unique_ptr<KvEngine::CachedMeta> KvEngine::TakeCachedMeta(
    const std::string& path, FenceToken fence) const {
  if (options_.write_cache_entries == 0) return nullptr;
  std::unique_ptr<CachedMeta> entry;
  {
    MutexLock lock(&cache_mu_);
    auto it = write_cache_.find(path);
    if (it == write_cache_.end() || it->second == nullptr) return nullptr;
    // The slot stays (empty) for CacheMeta to refill: no erase and
    // re-insert of the key on every put.
    entry = std::move(it->second);
  }
  // Written under another grant: whatever happened since is unknown.
  if (entry->fence != fence) entry->usable = false;
  return entry;
}

void KvEngine::CacheMeta(const std::string& path,
                         std::unique_ptr<CachedMeta> entry) const {
  std::unique_ptr<CachedMeta> replaced;
  MutexLock lock(&cache_mu_);
  auto it = write_cache_.find(path);
  if (it == write_cache_.end()) {
    // Bounded without bookkeeping: a full cache starts over (an entry only
    // saves one read).
    if (write_cache_.size() >= options_.write_cache_entries) {
      write_cache_.clear();
    }
    it = write_cache_.emplace(path, nullptr).first;
  }
  replaced = std::move(it->second);
  it->second = std::move(entry);
}

void KvEngine::DropCachedMeta(const std::string& path) const {
  if (options_.write_cache_entries == 0) return;
  MutexLock lock(&cache_mu_);
  write_cache_.erase(path);
}

absl::Status KvEngine::Put(absl::string_view path,
                           const std::map<std::string, std::string>& data,
                           std::optional<uint64_t> cas, const EngineCall& call,
                           uint64_t* version, uint64_t* index) const {
  KvEngineOps ops(*this, call, nullptr);
  RETURN_IF_ERROR(ops.Put(path, data, cas, version));
  *index = ops.index();
  return absl::OkStatus();
}

absl::Status KvEngine::Get(absl::string_view path, uint64_t version,
                           const EngineCall& call,
                           store::KvSecret* secret) const {
  return KvEngineOps(*this, call, nullptr).Get(path, version, secret);
}

void KvEngine::ClearWriteCache() const {
  absl::flat_hash_map<std::string, std::unique_ptr<CachedMeta>> dropped;
  MutexLock lock(&cache_mu_);
  dropped.swap(write_cache_);
}

Mutex& KvEngine::WriteStripe(absl::string_view path) const {
  return write_stripes_[absl::Hash<absl::string_view>()(path) % kWriteStripes];
}

absl::Status KvEngine::Execute(const store::Request& request,
                               const EngineCall& call,
                               store::Response* response) const {
  KvEngineOps ops(*this, call, response);
  switch (request.op_case()) {
    case store::Request::kKvPut:
      return ops.Put(request.kv_put());
    case store::Request::kKvGet:
      return ops.Get(request.kv_get().path(), request.kv_get().version(),
                     response->mutable_kv_secret());
    case store::Request::kKvDelete:
      return ops.Versions(request.kv_delete(), KvEngineOps::VersionOp::kDelete);
    case store::Request::kKvUndelete:
      return ops.Versions(request.kv_undelete(),
                          KvEngineOps::VersionOp::kUndelete);
    case store::Request::kKvDestroy:
      return ops.Versions(request.kv_destroy(),
                          KvEngineOps::VersionOp::kDestroy);
    case store::Request::kKvMetadataGet:
      return ops.MetadataGet(request.kv_metadata_get());
    case store::Request::kKvMetadataPut:
      return ops.MetadataPut(request.kv_metadata_put());
    case store::Request::kKvDeleteAll:
      return ops.DeleteAll(request.kv_delete_all());
    case store::Request::kKvList:
      return ops.List(request.kv_list());
    default:
      return absl::InvalidArgumentError("not a KV request");
  }
}

}  // namespace strongbox
