#include "lib/store/kv_record_reader.h"

#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "lib/util/utf8.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {

// Walks one message's wire form with protobuf's rules (parse_context.h):
// a tag is a varint of at most 5 bytes (field number 0 refused), a varint
// at most 10, a length at most 5 (under 2 GiB); groups nest, a sub-message
// or group costs one of 100 levels; an end-group tag that closes nothing
// refuses the whole parse. Each method returns false on anything protobuf
// refuses.
class KvRecordParser {
 public:
  static constexpr int kRecursionLimit = 100;  // protobuf's default

  KvRecordParser(absl::string_view wire, int depth)
      : p_(reinterpret_cast<const uint8_t*>(wire.data())),
        end_(p_ + wire.size()),
        depth_(depth) {}

  bool done() const { return p_ == end_; }

  // The next field's tag: false at a malformed tag, or an end-group tag
  // (which only a group's own loop may read: SkipGroup).
  bool Tag(uint32_t* tag) {
    uint64_t v;
    if (!ReadVarint(5, &v)) return false;
    *tag = static_cast<uint32_t>(v);
    return (*tag >> 3) != 0 && (*tag & 7) != 4;
  }

  bool Varint(uint64_t* v) { return ReadVarint(10, v); }

  // Passes over a varint of at most 10 bytes without decoding it (the
  // same inputs as Varint accepts).
  bool SkipVarint() {
    const uint8_t* const p = p_;
    const size_t available = static_cast<size_t>(end_ - p);
#if ABSL_IS_LITTLE_ENDIAN
    uint64_t word;
    if (available >= 8) {
      if (const uint64_t stops = Stops(p, &word);
          ABSL_PREDICT_TRUE(stops != 0)) {
        p_ = p + static_cast<size_t>(absl::countr_zero(stops)) / 8 + 1;
        return true;
      }
    }
#endif
    const size_t limit = available < 10 ? available : 10;
    for (size_t i = 0; i < limit; ++i) {
      if (p[i] < 0x80) {
        p_ = p + i + 1;
        return true;
      }
    }
    return false;
  }

  bool LengthDelimited(absl::string_view* out) {
    uint64_t size;
    if (!ReadVarint(5, &size)) return false;
    // (protobuf refuses a size of 2 GiB or more; so does this, as no
    // input is that long.)
    if (size > static_cast<uint64_t>(end_ - p_)) return false;
    *out = absl::string_view(reinterpret_cast<const char*>(p_), size);
    p_ += size;
    return true;
  }

  // Skips the value of a field protobuf would keep as unknown.
  bool Skip(uint32_t tag) {
    switch (tag & 7) {
      case 0: {
        uint64_t ignored;
        return Varint(&ignored);
      }
      case 1:
        return Advance(8);
      case 2: {
        absl::string_view ignored;
        return LengthDelimited(&ignored);
      }
      case 3:
        return SkipGroup(tag);
      case 5:
        return Advance(4);
      default:  // 4 (read by Tag only inside SkipGroup), 6, 7
        return false;
    }
  }

  // A parser for a length-delimited sub-message one level down.
  bool Nested(absl::string_view wire, KvRecordParser* nested) const {
    if (depth_ <= 0) return false;
    *nested = KvRecordParser(wire, depth_ - 1);
    return true;
  }

  // One map<string, bytes> entry: {1: name (UTF-8), 2: value}, either
  // repeated (last wins) or missing (empty), any other field skipped.
  bool MapEntry(absl::string_view wire, absl::string_view* name,
                absl::string_view* value) const {
    KvRecordParser entry(absl::string_view(), 0);
    if (!Nested(wire, &entry)) return false;
    *name = absl::string_view();
    *value = absl::string_view();
    while (!entry.done()) {
      uint32_t tag;
      if (!entry.Tag(&tag)) return false;
      if (tag == ((1 << 3) | 2)) {
        if (!entry.LengthDelimited(name) || !IsValidUtf8(*name)) return false;
      } else if (tag == ((2 << 3) | 2)) {
        if (!entry.LengthDelimited(value)) return false;
      } else if (!entry.Skip(tag)) {
        return false;
      }
    }
    return true;
  }

  // Adds a map<string, bytes> field's entry (`wire`) to *fields.
  bool AddEntry(absl::string_view wire, KvFieldsView* fields) const {
    absl::string_view name, value;
    if (!MapEntry(wire, &name, &value)) return false;
    fields->entries_.emplace_back(name, value);
    return true;
  }

 private:
  // Most varints here (tags, lengths, small numbers) are one byte; a
  // value's length is often two (128 bytes to 16 KiB). Every max_bytes is
  // at least 5.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ReadVarint(int max_bytes, uint64_t* v) {
    const uint8_t* const p = p_;
    const size_t available = static_cast<size_t>(end_ - p);
    if (ABSL_PREDICT_TRUE(available != 0 && p[0] < 0x80)) {
      *v = p[0];
      p_ = p + 1;
      return true;
    }
    if (available >= 2 && p[1] < 0x80) {
      *v = (p[0] & 0x7fu) | (uint64_t{p[1]} << 7);
      p_ = p + 2;
      return true;
    }
    return ReadLongVarint(max_bytes, v);
  }

#if ABSL_IS_LITTLE_ENDIAN
  // The eight bytes at p (*word, little-endian) and, of each, the high bit
  // where it is clear: the lowest such byte ends a varint.
  static uint64_t Stops(const uint8_t* p, uint64_t* word) {
    std::memcpy(word, p, 8);
    return ~*word & 0x8080808080808080ull;
  }
#endif

  // (Works on locals: a store through p_ might alias the bytes read, so a
  // loop on the member reloads and stores it every byte.)
  ABSL_ATTRIBUTE_NOINLINE bool ReadLongVarint(int max_bytes, uint64_t* v) {
    const uint8_t* const p = p_;
    const size_t available = static_cast<size_t>(end_ - p);
#if ABSL_IS_LITTLE_ENDIAN
    // Up to eight bytes (a timestamp is eight) at once: the first byte
    // without a continuation bit ends the varint, and the 7-bit groups
    // before it are packed together in three steps.
    if (available >= 8) {
      uint64_t word;
      if (const uint64_t stops = Stops(p, &word); stops != 0) {
        const size_t size =
            static_cast<size_t>(absl::countr_zero(stops)) / 8 + 1;
        if (size > static_cast<size_t>(max_bytes)) return false;
        uint64_t x = word & (stops ^ (stops - 1)) & 0x7f7f7f7f7f7f7f7full;
        x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
        x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
        x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
        p_ = p + size;
        *v = x;
        return true;
      }
    }
#endif
    const size_t limit = available < static_cast<size_t>(max_bytes)
                             ? available
                             : static_cast<size_t>(max_bytes);
    uint64_t result = 0;
    for (size_t i = 0; i < limit; ++i) {
      const uint64_t byte = p[i];
      result |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) {
        p_ = p + i + 1;
        *v = result;
        return true;
      }
    }
    return false;
  }

  bool Advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }

  // Skips a group's fields up to the end-group tag of the same number.
  bool SkipGroup(uint32_t start_tag) {
    if (depth_ <= 0) return false;
    --depth_;
    while (true) {
      uint64_t v;
      if (!ReadVarint(5, &v)) return false;
      const uint32_t tag = static_cast<uint32_t>(v);
      if ((tag & 7) == 4) {
        if (tag != start_tag + 1) return false;
        ++depth_;
        return true;
      }
      if ((tag >> 3) == 0 || !Skip(tag)) return false;
    }
  }

  const uint8_t* p_;
  const uint8_t* end_;
  int depth_;
};

void KvFieldsView::CopyTo(KvFieldMap* fields) const {
  for (const auto& [name, value] : entries_) {
    // The value is built in its node (one allocation and copy, no empty
    // string assigned to after).
    auto [it, inserted] = fields->try_emplace(
        std::string_view(name.data(), name.size()), value.data(), value.size());
    if (!inserted) {
      // A name seen twice: the earlier value is wiped before its buffer
      // may be freed by the assignment.
      WipeString(it->second);
      it->second.assign(value.data(), value.size());
    }
  }
}

bool KvMetadataReader::Parse(absl::string_view wire) {
  KvRecordParser in(wire, KvRecordParser::kRecursionLimit);
  while (!in.done()) {
    uint32_t tag;
    if (!in.Tag(&tag)) return false;
    uint64_t v;
    switch (tag) {
      case (1 << 3) | 0:  // created_unix_micros
      case (2 << 3) | 0:  // updated_unix_micros
      case (4 << 3) | 0:  // max_versions
      case (5 << 3) | 0:  // cas_required
        // Not what a read returns: checked, not decoded.
        if (!in.SkipVarint()) return false;
        break;
      case (3 << 3) | 0:
        if (!in.Varint(&current_version_)) return false;
        break;
      case (6 << 3) | 2: {
        absl::string_view wire_version;
        KvRecordParser version(absl::string_view(), 0);
        if (!in.LengthDelimited(&wire_version) ||
            !in.Nested(wire_version, &version)) {
          return false;
        }
        KvVersionFields& fields = versions_.emplace_back();
        while (!version.done()) {
          uint32_t field;
          if (!version.Tag(&field)) return false;
          switch (field) {
            case (1 << 3) | 0:
              if (!version.Varint(&fields.version)) return false;
              break;
            case (2 << 3) | 0:
              if (!version.Varint(&v)) return false;
              fields.created_unix_micros = static_cast<int64_t>(v);
              break;
            case (3 << 3) | 0:
              if (!version.Varint(&v)) return false;
              fields.deletion_unix_micros = static_cast<int64_t>(v);
              break;
            case (4 << 3) | 0:
              if (!version.Varint(&v)) return false;
              fields.destroyed = v != 0;
              break;
            default:
              if (!version.Skip(field)) return false;
          }
        }
        break;
      }
      case (7 << 3) | 2: {
        absl::string_view entry;
        if (!in.LengthDelimited(&entry) ||
            !in.AddEntry(entry, &current_data_)) {
          return false;
        }
        break;
      }
      default:
        if (!in.Skip(tag)) return false;
    }
  }
  return true;
}

const KvVersionFields* KvMetadataReader::FindVersion(uint64_t version) const {
  for (const KvVersionFields& v : versions_) {
    if (v.version == version) return &v;
  }
  return nullptr;
}

bool ReadKvDataRecord(absl::string_view wire, KvFieldsView* data) {
  KvRecordParser in(wire, KvRecordParser::kRecursionLimit);
  while (!in.done()) {
    uint32_t tag;
    if (!in.Tag(&tag)) return false;
    if (tag == ((1 << 3) | 2)) {
      absl::string_view entry;
      if (!in.LengthDelimited(&entry) || !in.AddEntry(entry, data)) {
        return false;
      }
    } else if (!in.Skip(tag)) {
      return false;
    }
  }
  return true;
}

}  // namespace strongbox
