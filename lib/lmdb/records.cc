#include "lib/lmdb/records.h"

#include "absl/strings/str_cat.h"

namespace strongbox {
namespace lmdb_internal {
namespace {

void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Reads fields front to back; any overrun marks the reader failed.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : rest_(bytes) {}

  uint8_t U8() {
    if (!Need(1)) return 0;
    uint8_t v = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return v;
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v = DecodeFixed32(rest_.data());
    rest_.remove_prefix(4);
    return v;
  }
  uint64_t U64() {
    if (!Need(8)) return 0;
    uint64_t v = DecodeFixed64(rest_.data());
    rest_.remove_prefix(8);
    return v;
  }
  std::string Bytes() {
    uint32_t n = U32();
    if (!Need(n)) return std::string();
    std::string v(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return v;
  }
  bool ok() const { return ok_ && rest_.empty(); }

 private:
  bool Need(size_t n) {
    if (rest_.size() < n) ok_ = false;
    return ok_;
  }

  absl::string_view rest_;
  bool ok_ = true;
};

}  // namespace

void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void EncodeEntryHeader(uint64_t version, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(version >> (8 * i));
}

std::string EncodeFormat() {
  std::string out(kFormatMagic);
  PutFixed32(&out, kFormatVersion);
  return out;
}

absl::Status CheckFormat(absl::string_view bytes) {
  if (bytes.size() != kFormatMagic.size() + 4 ||
      bytes.substr(0, kFormatMagic.size()) != kFormatMagic) {
    return absl::DataLossError(
        "the strongbox format record is corrupt (bad magic)");
  }
  uint32_t version = DecodeFixed32(bytes.data() + kFormatMagic.size());
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the store has format version ", version,
                     "; this build reads version ", kFormatVersion));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> DecodeRevision(absl::string_view bytes) {
  if (bytes.size() != 8) {
    return absl::DataLossError("the revision record is corrupt");
  }
  return DecodeFixed64(bytes.data());
}

std::string EncodeLease(const LeaseRecord& record) {
  std::string out;
  out.push_back(static_cast<char>(record.version));
  out.push_back(record.active ? 1 : 0);
  PutFixed64(&out, record.fence);
  PutFixed64(&out, static_cast<uint64_t>(absl::ToUnixNanos(record.expiry)));
  PutFixed64(&out, static_cast<uint64_t>(absl::ToInt64Nanoseconds(record.ttl)));
  PutFixed32(&out, record.pid);
  if (record.version >= kLeaseRecordV3) PutFixed64(&out, record.start_time);
  if (record.version >= kLeaseRecordV4) PutFixed64(&out, record.pid_ns);
  PutFixed32(&out, static_cast<uint32_t>(record.boot_id.size()));
  out.append(record.boot_id);
  PutFixed32(&out, static_cast<uint32_t>(record.holder.size()));
  out.append(record.holder);
  return out;
}

absl::StatusOr<LeaseRecord> DecodeLease(absl::string_view bytes) {
  Reader r(bytes);
  LeaseRecord record;
  const uint8_t version = r.U8();
  const uint8_t active = r.U8();
  record.active = active == 1;
  record.fence = r.U64();
  record.expiry = absl::FromUnixNanos(static_cast<int64_t>(r.U64()));
  record.ttl = absl::Nanoseconds(static_cast<int64_t>(r.U64()));
  record.pid = r.U32();
  if (version >= kLeaseRecordV3) record.start_time = r.U64();
  if (version >= kLeaseRecordV4) record.pid_ns = r.U64();
  record.boot_id = r.Bytes();
  record.holder = r.Bytes();
  if (!r.ok() || active > 1 || version < kLeaseRecordV1 ||
      version > kLeaseRecordV4) {
    return absl::DataLossError("the lease record is corrupt");
  }
  record.version = version;
  record.expiry_clock =
      version == kLeaseRecordV1 ? ExpiryClock::kWall : ExpiryClock::kBoot;
  return record;
}

}  // namespace lmdb_internal
}  // namespace strongbox
