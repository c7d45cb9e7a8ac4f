#include "lib/store/transit_key_record.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace transit {
namespace {

constexpr absl::string_view kPathPrefix = "transit/keys/";

// A put of the serialized record (key material: the caller wipes its value
// once the commit is done).
WriteOp PutRecord(const store::TransitKeyRecord& record) {
  WriteOp op;
  op.kind = WriteOp::Kind::kPut;
  op.key = KeyPath(record.name());
  record.SerializeToString(&op.value);
  return op;
}

// Adds version latest + 1 with `reserved` encryptions reserved under it
// (the writer's first block).
void AddVersion(store::TransitKeyRecord* record, absl::Time now,
                uint64_t reserved) {
  const uint32_t version = record->latest_version() + 1;
  store::TransitKeyVersionRecord* v = record->add_versions();
  v->set_version(version);
  SecretBytes key = SecretBytes::Random(kKeyBytes);
  v->set_key(key.data(), key.size());
  v->set_created_unix_micros(absl::ToUnixMicros(now));
  v->set_reserved_encryptions(reserved);
  record->set_latest_version(version);
}

// A put of `record` with a new latest version holding the writer's first
// block.
Mutation PutWithNewVersion(uint64_t record_version, absl::Time now,
                           const BlockPolicy& policy,
                           store::TransitKeyRecord* record) {
  AddVersion(record, now, policy.block);
  Mutation m;
  m.grant = Grant{record->latest_version(), 0, policy.block};
  m.write = PutRecord(*record);
  m.write->IfVersion(record_version);
  return m;
}

}  // namespace

std::string KeyPath(absl::string_view name) {
  return absl::StrCat(kPathPrefix, name);
}

RecordWiper::~RecordWiper() {
  for (store::TransitKeyVersionRecord& v : *record_->mutable_versions()) {
    WipeString(*v.mutable_key());
  }
}

absl::Status ParseRecord(absl::string_view name, absl::string_view bytes,
                         store::TransitKeyRecord* record) {
  if (!record->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("transit key record does not parse");
  }
  if (record->format() != kRecordFormat) {
    return absl::DataLossError(absl::StrCat(
        "transit key record has unknown format ", record->format()));
  }
  if (record->name() != name) {
    return absl::DataLossError("transit key record names another key");
  }
  const uint32_t latest = record->latest_version();
  if (latest == 0 || static_cast<uint64_t>(record->versions_size()) != latest) {
    return absl::DataLossError("transit key record has inconsistent versions");
  }
  for (int i = 0; i < record->versions_size(); ++i) {
    const auto& v = record->versions(i);
    if (v.version() != static_cast<uint32_t>(i) + 1 ||
        v.key().size() != kKeyBytes) {
      return absl::DataLossError("transit key record has a malformed version");
    }
  }
  const uint32_t min_dec = record->min_decryption_version();
  const uint32_t min_enc = record->min_encryption_version();
  if (min_dec < 1 || min_dec > latest || min_enc > latest ||
      (min_enc != 0 && min_enc < min_dec)) {
    return absl::DataLossError("transit key record has inconsistent minimums");
  }
  return absl::OkStatus();
}

void FillInfo(const store::TransitKeyRecord& record,
              store::TransitKeyInfo* info) {
  info->set_name(record.name());
  info->set_latest_version(record.latest_version());
  info->set_min_decryption_version(record.min_decryption_version());
  info->set_min_encryption_version(record.min_encryption_version());
  info->set_deletion_allowed(record.deletion_allowed());
  auto* created = info->mutable_version_created_unix_micros();
  for (const auto& v : record.versions()) {
    (*created)[v.version()] = v.created_unix_micros();
  }
}

Mutation CreateKey(const std::string& name, bool exists, absl::Time now,
                   const BlockPolicy& policy, store::TransitKeyRecord* record) {
  // As in Vault: creating an existing key changes nothing.
  if (exists) return Mutation{};
  record->set_format(kRecordFormat);
  record->set_name(name);
  AddVersion(record, now, policy.block);
  record->set_min_decryption_version(1);
  Mutation m;
  m.grant = Grant{1, 0, policy.block};
  m.write = PutRecord(*record);
  m.write->IfAbsent();
  return m;
}

absl::StatusOr<Mutation> RotateKey(uint64_t record_version, absl::Time now,
                                   const BlockPolicy& policy,
                                   store::TransitKeyRecord* record) {
  if (record->latest_version() == UINT32_MAX) {
    return absl::FailedPreconditionError(
        "transit key has reached the maximum number of versions");
  }
  return PutWithNewVersion(record_version, now, policy, record);
}

absl::StatusOr<Mutation> ConfigureKey(uint64_t record_version,
                                      const store::TransitConfigRequest& config,
                                      store::TransitKeyRecord* record) {
  const uint32_t latest = record->latest_version();
  const uint32_t min_dec = config.min_decryption_version() != 0
                               ? config.min_decryption_version()
                               : record->min_decryption_version();
  const uint32_t min_enc = config.min_encryption_version() != 0
                               ? config.min_encryption_version()
                               : record->min_encryption_version();
  if (min_dec > latest) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_decryption_version ", min_dec,
                     " is above the key's latest version ", latest));
  }
  if (min_enc > latest) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_encryption_version ", min_enc,
                     " is above the key's latest version ", latest));
  }
  if (min_enc != 0 && min_enc < min_dec) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_encryption_version ", min_enc,
                     " is below min_decryption_version ", min_dec));
  }
  // Either field: a node before proto3 `optional` sends only the flag.
  const bool deletion_allowed =
      config.has_deletion_allowed() || config.legacy_set_deletion_allowed()
          ? config.deletion_allowed()
          : record->deletion_allowed();
  if (min_dec == record->min_decryption_version() &&
      min_enc == record->min_encryption_version() &&
      deletion_allowed == record->deletion_allowed()) {
    return Mutation{};
  }
  record->set_min_decryption_version(min_dec);
  record->set_min_encryption_version(min_enc);
  record->set_deletion_allowed(deletion_allowed);
  Mutation m;
  m.write = PutRecord(*record);
  m.write->IfVersion(record_version);
  return m;
}

absl::StatusOr<Mutation> DeleteKey(uint64_t record_version,
                                   const store::TransitKeyRecord& record) {
  if (!record.deletion_allowed()) {
    return absl::FailedPreconditionError(
        "deletion is not allowed for this key");
  }
  Mutation m;
  m.write = WriteOp::Delete(KeyPath(record.name()));
  m.write->IfVersion(record_version);
  return m;
}

absl::StatusOr<Mutation> ReserveEncryptions(uint64_t record_version,
                                            absl::Time now,
                                            const BlockPolicy& policy,
                                            store::TransitKeyRecord* record) {
  store::TransitKeyVersionRecord* latest =
      record->mutable_versions(record->versions_size() - 1);
  // Absent: stored before counting existed; count it used up.
  const uint64_t mark = latest->has_reserved_encryptions()
                            ? latest->reserved_encryptions()
                            : policy.max_encryptions;
  if (mark < policy.max_encryptions) {
    Mutation m;
    m.grant =
        Grant{record->latest_version(), mark,
              mark + std::min(policy.block, policy.max_encryptions - mark)};
    latest->set_reserved_encryptions(m.grant.end);
    m.write = PutRecord(*record);
    m.write->IfVersion(record_version);
    return m;
  }
  if (!policy.rotate_at_limit) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transit key \"", record->name(), "\" version ",
        record->latest_version(),
        latest->has_reserved_encryptions()
            ? absl::StrCat(" reached its limit of ", policy.max_encryptions,
                           " encryptions")
            : std::string(" has no stored encryption count (written "
                          "before counting)"),
        "; rotate the key"));
  }
  if (record->latest_version() == UINT32_MAX) {
    return absl::FailedPreconditionError(absl::StrCat(
        "transit key \"", record->name(),
        "\" reached its encryption limit and the maximum number of "
        "versions; it cannot rotate"));
  }
  // Rotate: the new version, with its first block, is stored before
  // anything is sealed under it.
  return PutWithNewVersion(record_version, now, policy, record);
}

}  // namespace transit
}  // namespace strongbox
