#include "strongbox/backend.h"

#include <cstdint>
#include <cstring>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/util/status_macros.h"

namespace strongbox {

namespace {

constexpr absl::string_view kStaleFencePayload =
    "type.strongbox.dev/stale-fence";

}  // namespace

absl::Status StaleFenceError(FenceToken fence) {
  absl::Status status = absl::FailedPreconditionError(absl::StrCat(
      "fence ", fence, " is not the current lease grant; write refused"));
  status.SetPayload(kStaleFencePayload, absl::Cord(absl::StrCat(fence)));
  return status;
}

bool IsStaleFence(const absl::Status& status) {
  return absl::IsFailedPrecondition(status) &&
         status.GetPayload(kStaleFencePayload).has_value();
}

namespace {

// True only for valid paths, without allocating; the slow path below runs
// only to name what is wrong. Every read checks its path (often twice: the
// engine and the backend), so this sits on the hot path of every layer.
// One pass, no call: `segment` counts the bytes of the current segment and
// `dots` how many of them are '.', so a '/' that starts the key, ends it or
// follows another '/' (an empty segment) and a "." or ".." segment are
// seen at the '/' (or the end) that closes the segment. (The searches of
// the version before this took about 400 instructions per 20-byte key,
// mostly calls into absl's out-of-line find.)
bool IsValidKeyByBytes(absl::string_view key) {
  size_t segment = 0;
  size_t dots = 0;
  for (const char ch : key) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return false;
    if (c == '/') {
      if (segment == 0 || (segment == dots && segment <= 2)) return false;
      segment = 0;
      dots = 0;
    } else {
      ++segment;
      dots += c == '.' ? 1 : 0;
    }
  }
  return segment != 0 && !(segment == dots && segment <= 2);
}

#if ABSL_IS_LITTLE_ENDIAN
// The same rules eight bytes at a time (about a third of the byte loop's
// instructions on a 20-byte key). Each mask below has the 0x80 bit of a
// byte set exactly when that byte matches: no carry or borrow crosses
// from one byte into the next.
constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7full;

constexpr uint64_t EveryByte(uint8_t b) { return 0x0101010101010101ull * b; }

// Bytes that are zero.
inline uint64_t ZeroBytes(uint64_t x) {
  return ~(((x & kLow7) + kLow7) | x | kLow7);
}

// Bytes below 0x20 (control bytes, NUL included).
inline uint64_t ControlBytes(uint64_t x) {
  return ~(((x & kLow7) + EveryByte(0x60)) | x) & ~kLow7;
}

// Without a '.', a key is valid when it has no control byte or DEL, does
// not start or end with '/', and has no "//". A key with a '.' anywhere
// goes to the byte loop, which also checks its segments.
bool IsValidKeyFast(absl::string_view key, size_t max_key_bytes) {
  if (key.empty() || key.size() > max_key_bytes) return false;
  uint64_t bad = 0;
  uint64_t dots = 0;
  uint64_t carried_slash = 0;  // the previous word's last byte was '/'
  auto word = [&](uint64_t x) {
    const uint64_t slashes = ZeroBytes(x ^ EveryByte('/'));
    bad |= ControlBytes(x) | ZeroBytes(x ^ EveryByte(0x7f)) |
           (slashes & ((slashes << 8) | carried_slash));
    carried_slash = slashes >> 56;
    dots |= ZeroBytes(x ^ EveryByte('.'));
  };
  const char* const data = key.data();
  const size_t size = key.size();
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t x;
    std::memcpy(&x, data + i, 8);
    word(x);
  }
  if (i < size) {
    // The last 1..7 bytes in the low bytes of a word, padded with bytes
    // that match nothing. (A copy of a variable length would be a call.)
    const size_t rest = size - i;
    uint64_t x = 0;
    if (size >= 8) {
      std::memcpy(&x, data + size - 8, 8);
      x >>= 8 * (8 - rest);
    } else {
      for (size_t k = 0; k < rest; ++k) {
        x |= uint64_t{static_cast<uint8_t>(data[k])} << (8 * k);
      }
    }
    word(x | (EveryByte('a') << (8 * rest)));
  }
  if (bad != 0 || key.front() == '/' || key.back() == '/') return false;
  return dots == 0 || IsValidKeyByBytes(key);
}
#else
bool IsValidKeyFast(absl::string_view key, size_t max_key_bytes) {
  if (key.empty() || key.size() > max_key_bytes) return false;
  return IsValidKeyByBytes(key);
}
#endif

}  // namespace

namespace {

// What is wrong with a key IsValidKeyFast refused. Out of line: its frame
// (the split, the messages) stays off the fast path.
ABSL_ATTRIBUTE_NOINLINE absl::Status KeyError(absl::string_view key,
                                              const BackendLimits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("path is empty");
  if (key.size() > limits.max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path is ", key.size(), " bytes; the limit is ", limits.max_key_bytes));
  }
  for (char c : key) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError("path contains a NUL or control byte");
    }
  }
  if (key.front() == '/') {
    return absl::InvalidArgumentError("path starts with '/'");
  }
  if (key.back() == '/') {
    return absl::InvalidArgumentError("path ends with '/'");
  }
  for (absl::string_view segment : absl::StrSplit(key, '/')) {
    if (segment.empty()) {
      return absl::InvalidArgumentError("path has an empty segment ('//')");
    }
    if (segment == "." || segment == "..") {
      return absl::InvalidArgumentError("path has a '.' or '..' segment");
    }
  }
  return absl::InvalidArgumentError("path is malformed");
}

}  // namespace

absl::Status ValidateKey(absl::string_view key, const BackendLimits& limits) {
  if (ABSL_PREDICT_TRUE(IsValidKeyFast(key, limits.max_key_bytes))) {
    return absl::OkStatus();
  }
  return KeyError(key, limits);
}

absl::Status ValidatePrefix(absl::string_view prefix,
                            const BackendLimits& limits) {
  if (prefix.empty()) return absl::OkStatus();
  if (prefix.back() != '/') {
    return absl::InvalidArgumentError(
        "list prefix must be empty or end with '/'");
  }
  return ValidateKey(prefix.substr(0, prefix.size() - 1), limits);
}

WriteOp WriteOp::Put(absl::string_view key, absl::string_view value) {
  WriteOp op;
  op.kind = Kind::kPut;
  op.key = std::string(key);
  op.value = std::string(value);
  return op;
}

WriteOp WriteOp::Delete(absl::string_view key) {
  WriteOp op;
  op.kind = Kind::kDelete;
  op.key = std::string(key);
  return op;
}

WriteOp WriteOp::Check(absl::string_view key) {
  WriteOp op;
  op.kind = Kind::kCheck;
  op.key = std::string(key);
  return op;
}

WriteOp& WriteOp::IfVersion(uint64_t version) {
  expect = Expect::kVersion;
  expected_version = version;
  return *this;
}

WriteOp& WriteOp::IfAbsent() {
  expect = Expect::kAbsent;
  expected_version = 0;
  return *this;
}

absl::Status Backend::GetInto(absl::string_view key, Entry* entry) {
  absl::StatusOr<Entry> got = Get(key);
  if (!got.ok()) return got.status();
  entry->value.swap(got->value);
  entry->version = got->version;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Backend::Put(absl::string_view key,
                                      absl::string_view value,
                                      FenceToken fence) {
  WriteOp op = WriteOp::Put(key, value);
  return Commit(absl::MakeConstSpan(&op, 1), fence);
}

absl::StatusOr<uint64_t> Backend::Delete(absl::string_view key,
                                         FenceToken fence) {
  WriteOp op = WriteOp::Delete(key);
  return Commit(absl::MakeConstSpan(&op, 1), fence);
}

absl::StatusOr<Entry> BackendWrapper::Get(absl::string_view key) {
  return target_->Get(key);
}

absl::StatusOr<std::vector<std::string>> BackendWrapper::List(
    absl::string_view prefix) {
  return target_->List(prefix);
}

absl::StatusOr<uint64_t> BackendWrapper::Commit(absl::Span<const WriteOp> ops,
                                                FenceToken fence) {
  return target_->Commit(ops, fence);
}

absl::StatusOr<uint64_t> BackendWrapper::Revision() {
  return target_->Revision();
}

HaBackend* BackendWrapper::ha() {
  return target_->ha() == nullptr ? nullptr : this;
}

BackendLimits BackendWrapper::limits() const { return target_->limits(); }

// The wrapper always implements HaBackend, but ha() hides it when the
// target has none; a caller that reaches these anyway gets UNIMPLEMENTED
// (the capability does not exist), not a crash.
absl::StatusOr<HaBackend*> BackendWrapper::TargetHa() const {
  HaBackend* ha = target_->ha();
  if (ha == nullptr) return absl::UnimplementedError("backend has no HA lease");
  return ha;
}

absl::StatusOr<std::unique_ptr<LeadershipGrant>> BackendWrapper::Acquire(
    const AcquireOptions& options) {
  ASSIGN_OR_RETURN(auto* ha, TargetHa());
  return ha->Acquire(options);
}

absl::StatusOr<std::optional<LeaseHolder>> BackendWrapper::CurrentHolder() {
  ASSIGN_OR_RETURN(auto* ha, TargetHa());
  return ha->CurrentHolder();
}

absl::Status BackendWrapper::BreakLease(FenceToken fence) {
  ASSIGN_OR_RETURN(auto* ha, TargetHa());
  return ha->BreakLease(fence);
}

void BackendWrapper::AddBlockedTakeoverObserver(
    BlockedTakeoverObserver* observer) {
  if (HaBackend* ha = target_->ha()) ha->AddBlockedTakeoverObserver(observer);
}

void BackendWrapper::RemoveBlockedTakeoverObserver(
    BlockedTakeoverObserver* observer) {
  if (HaBackend* ha = target_->ha()) {
    ha->RemoveBlockedTakeoverObserver(observer);
  }
}

BlockedTakeoverStatus BackendWrapper::blocked_takeover_status() {
  HaBackend* ha = target_->ha();
  return ha != nullptr ? ha->blocked_takeover_status()
                       : BlockedTakeoverStatus();
}

absl::string_view BlockedTakeoverKindName(BlockedTakeoverEvent::Kind kind) {
  switch (kind) {
    case BlockedTakeoverEvent::Kind::kWaiting:
      return "waiting";
    case BlockedTakeoverEvent::Kind::kHolderKilled:
      return "holder_killed";
  }
  return "unknown";
}

}  // namespace strongbox
