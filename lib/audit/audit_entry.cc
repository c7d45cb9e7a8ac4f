// AuditEntry::ToJsonLine and AuditSink's default WriteBatch.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "strongbox/audit_sink.h"

namespace strongbox {
namespace {

// A JSON string literal; bytes that are not UTF-8 become U+FFFD (the host's
// caller id is the only field not checked elsewhere).
std::string Quoted(absl::string_view s) {
  // Fast path: printable ASCII without '"' or '\\' is its own JSON text.
  bool plain = true;
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) return absl::StrCat("\"", s, "\"");
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Writes `v` as exactly `width` decimal digits ending at `end`; returns
// the new end (the first digit).
char* Digits(uint64_t v, int width, char* end) {
  for (int i = 0; i < width; ++i) {
    *--end = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  return end;
}

// `t` as a JSON string "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds),
// what absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ") writes, without its cost
// (a time zone lookup and a format parse per entry). Years outside
// 1000..9999 (FormatTime does not pad years to four digits) and infinite
// times go through absl::FormatTime.
std::string QuotedTime(absl::Time t) {
  constexpr int64_t kMicrosPerDay = int64_t{86400} * 1000000;
  constexpr int64_t kMin = int64_t{-354285} * kMicrosPerDay;  // 1000-01-01
  constexpr int64_t kMax = int64_t{2932896} * kMicrosPerDay;  // 10000-01-01
  const int64_t us = absl::ToUnixMicros(t);
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast() || us < kMin ||
      us >= kMax) {
    return Quoted(
        absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()));
  }
  int64_t days = us / kMicrosPerDay;
  int64_t rem = us % kMicrosPerDay;
  if (rem < 0) {
    rem += kMicrosPerDay;
    --days;
  }
  // Howard Hinnant's civil_from_days.
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const int64_t secs = rem / 1000000;
  char buf[29];  // "YYYY-MM-DDTHH:MM:SS.ffffffZ" quoted
  char* end = buf + sizeof(buf);
  *--end = '"';
  *--end = 'Z';
  end = Digits(static_cast<uint64_t>(rem % 1000000), 6, end);
  *--end = '.';
  end = Digits(static_cast<uint64_t>(secs % 60), 2, end);
  *--end = ':';
  end = Digits(static_cast<uint64_t>(secs / 60 % 60), 2, end);
  *--end = ':';
  end = Digits(static_cast<uint64_t>(secs / 3600), 2, end);
  *--end = 'T';
  end = Digits(static_cast<uint64_t>(day), 2, end);
  *--end = '-';
  end = Digits(static_cast<uint64_t>(month), 2, end);
  *--end = '-';
  end = Digits(static_cast<uint64_t>(year), 4, end);
  *--end = '"';
  return std::string(end, buf + sizeof(buf));
}

}  // namespace

std::string AuditEntry::ToJsonLine() const {
  std::string out = absl::StrCat(
      "{\"time\":", QuotedTime(time),
      ",\"type\":", kind == Kind::kRequest ? "\"request\"" : "\"response\"",
      ",\"id\":", id, ",\"caller\":", Quoted(caller), ",\"policies\":[");
  for (size_t i = 0; i < policies.size(); ++i) {
    if (i > 0) out += ',';
    out += Quoted(policies[i]);
  }
  absl::StrAppend(&out, "],\"root\":", root ? "true" : "false",
                  ",\"operation\":", Quoted(operation),
                  ",\"path\":", Quoted(path), ",\"fields\":{");
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, Quoted(fields[i].first), ":",
                    Quoted(fields[i].second));
  }
  out += '}';
  if (forwarded) out += ",\"forwarded\":true";
  if (!forwarded_to.empty()) {
    absl::StrAppend(&out, ",\"forwarded_to\":", Quoted(forwarded_to));
  }
  if (kind == Kind::kResponse) {
    absl::StrAppend(&out, ",\"code\":", Quoted(absl::StatusCodeToString(code)),
                    ",\"error\":", Quoted(error), ",\"index\":", index,
                    ",\"elapsed_us\":", absl::ToInt64Microseconds(elapsed));
  }
  out += '}';
  return out;
}

absl::Status AuditSink::WriteBatch(
    absl::Span<const AuditEntry* const> entries) {
  for (const AuditEntry* e : entries) {
    if (absl::Status s = Write(*e); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace strongbox
