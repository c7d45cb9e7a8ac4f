// AuditEntry::ToJsonLine and AuditSink's default WriteBatch.
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

}  // namespace

std::string AuditEntry::ToJsonLine() const {
  std::string out = absl::StrCat(
      "{\"time\":",
      Quoted(
          absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone())),
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
