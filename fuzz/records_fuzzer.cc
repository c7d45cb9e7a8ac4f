// libFuzzer target: parsing of the barrier's stored records (seal config,
// sealed record envelope, keyring) and opening a sealed record. Every input
// must give a value or DATA_LOSS; never a crash or another code. The KV
// read path's wire reader (lib/store/kv_record_reader.h) must accept
// exactly what protobuf accepts as a KV metadata or data record, and read
// the same fields; the put path's writer (kv_record_writer.h) must write
// any such record (less its current data) as protobuf does.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "lib/seal/records.h"
#include "lib/store/kv_record_reader.h"
#include "lib/store/kv_record_writer.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/secret_bytes.h"

namespace {

void Check(const absl::Status& status) {
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss) {
    std::abort();
  }
}

bool SameFields(const strongbox::KvFieldsView& view,
                const strongbox::KvFieldMap& map) {
  strongbox::KvFieldMap copied;
  view.CopyTo(&copied);
  if (copied.size() != map.size()) return false;
  for (const auto& [name, value] : map) {
    auto it = copied.find(name);
    if (it == copied.end() || it->second != value) return false;
  }
  return true;
}

void CheckKvReader(const std::string& bytes) {
  // protobuf logs each field name it refuses as invalid UTF-8.
  static google::protobuf::LogSilencer* const silence =
      new google::protobuf::LogSilencer;
  (void)silence;
  strongbox::store::KvMetadataRecord record;
  strongbox::KvMetadataReader reader;
  const bool parsed = record.ParseFromString(bytes);
  if (reader.Parse(bytes) != parsed) std::abort();
  if (parsed) {
    if (reader.current_version() != record.current_version() ||
        reader.versions().size() !=
            static_cast<size_t>(record.versions_size()) ||
        !SameFields(reader.current_data(), record.current_data())) {
      std::abort();
    }
    record.mutable_current_data()->clear();
    if (!strongbox::kv_wire::HasUnknownFields(record)) {
      const size_t size = strongbox::kv_wire::MetadataHeadSize(record);
      std::string head(strongbox::kv_wire::MetadataHeadMaxSize(record), '\0');
      if (head.size() < size) std::abort();
      char* end = strongbox::kv_wire::WriteMetadataHead(record, head.data());
      if (end != head.data() + size) std::abort();
      head.resize(size);
      if (head != record.SerializeAsString()) std::abort();
    }
    for (int i = 0; i < record.versions_size(); ++i) {
      const auto& want = record.versions(i);
      const auto& got = reader.versions()[i];
      if (got.version != want.version() ||
          got.created_unix_micros != want.created_unix_micros() ||
          got.deletion_unix_micros != want.deletion_unix_micros() ||
          got.destroyed != want.destroyed()) {
        std::abort();
      }
    }
  }
  strongbox::store::KvDataRecord data;
  strongbox::KvFieldsView view;
  const bool data_parsed = data.ParseFromString(bytes);
  if (strongbox::ReadKvDataRecord(bytes, &view) != data_parsed) std::abort();
  if (data_parsed && !SameFields(view, data.data())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strongbox::seal;  // NOLINT
  static const strongbox::SecretBytes* const key =
      new strongbox::SecretBytes(strongbox::SecretBytes::Random(kKeyBytes));
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  CheckKvReader(bytes);

  auto config = ParseSealConfig(bytes);
  Check(config.status());
  if (config.ok() &&
      !ValidateSealParameters(config->shares, config->threshold).ok()) {
    std::abort();
  }

  auto keyring = ParseKeyring(bytes);
  Check(keyring.status());
  if (keyring.ok()) {
    // What parses must serialize and parse back to the same terms.
    strongbox::SecretBytes again = SerializeKeyring(*keyring);
    auto reparsed = ParseKeyring(again.view());
    if (!reparsed.ok() || reparsed->terms.size() != keyring->terms.size() ||
        reparsed->active_term != keyring->active_term) {
      std::abort();
    }
  }

  auto parts = ParseSealedRecord(bytes);
  Check(parts.status());
  if (parts.ok()) {
    auto opened = OpenRecord(*key, "core/keyring", *parts);
    Check(opened.status());
    if (opened.ok()) std::abort();  // forging a GCM tag: not by fuzzing
  }
  return 0;
}
