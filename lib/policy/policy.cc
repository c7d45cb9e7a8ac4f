#include "lib/policy/policy.h"

// No exceptions in strongbox: nlohmann/json is built with JSON_NOEXCEPTION
// (@system_libs//:nlohmann_json), so its throw sites become abort(), and the
// SAX parse below reaches none of them (its errors arrive through the
// handler's parse_error; the fuzzer checks it).
#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace strongbox::policy {
namespace {

// A char iterator that records how far the parser has read, so the handler
// can tell the line of the token it is handed: nlohmann's SAX events carry
// no position, but the lexer has read exactly through the token's end when
// the event fires.
class TrackingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator(const char* p, const char** high_water)
      : p_(p), high_water_(high_water) {}
  reference operator*() const { return *p_; }
  TrackingIterator& operator++() {
    ++p_;
    if (p_ > *high_water_) *high_water_ = p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++*this;
    return old;
  }
  friend bool operator!=(const TrackingIterator& a, const TrackingIterator& b) {
    return a.p_ != b.p_;
  }

 private:
  const char* p_;
  const char** high_water_;
};

// Quoted and escaped, at most 64 bytes of it: policy text is not secret,
// but an error message stays one short printable line.
std::string Quote(absl::string_view s) {
  std::string out = absl::StrCat("\"", absl::CHexEscape(s.substr(0, 64)));
  if (s.size() > 64) out += "...";
  out += "\"";
  return out;
}

using Json = nlohmann::json;

// The policy grammar as a state machine over SAX events. Any event the
// grammar does not expect stops the parse with a message.
class Handler {
 public:
  Handler(absl::string_view text, const char** high_water, Policy* out)
      : text_(text), high_water_(high_water), out_(out) {}

  const absl::Status& status() const { return status_; }

  bool null() { return Unexpected("null"); }
  bool boolean(bool) { return Unexpected("a boolean"); }
  bool number_integer(Json::number_integer_t) { return Unexpected("a number"); }
  bool number_unsigned(Json::number_unsigned_t) {
    return Unexpected("a number");
  }
  bool number_float(Json::number_float_t, const Json::string_t&) {
    return Unexpected("a number");
  }
  bool binary(Json::binary_t&) { return Unexpected("binary data"); }

  bool string(Json::string_t& value) {
    if (state_ != State::kCapabilities) return Unexpected("a string");
    Capability c;
    if (!CapabilityFromName(value, &c)) {
      return Fail(absl::StrCat(
          "unknown capability ", Quote(value),
          " (expected create, read, update, patch, delete, list, sudo or "
          "deny)"));
    }
    out_->rules.back().capabilities.Add(c);
    return true;
  }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::kStart:
        state_ = State::kRoot;
        return true;
      case State::kPathValue:
        state_ = State::kPaths;
        return true;
      case State::kRuleValue:
        state_ = State::kRule;
        seen_capabilities_ = false;
        return true;
      default:
        return Unexpected("an object");
    }
  }

  bool key(Json::string_t& k) {
    switch (state_) {
      case State::kRoot:
        if (k != "path") {
          return Fail(absl::StrCat("unknown key ", Quote(k),
                                   " (a policy has only \"path\")"));
        }
        if (seen_path_) return Fail("\"path\" given twice");
        seen_path_ = true;
        state_ = State::kPathValue;
        return true;
      case State::kPaths: {
        if (out_->rules.size() >= kMaxRulesPerPolicy) {
          return Fail(absl::StrCat("more than ", kMaxRulesPerPolicy, " rules"));
        }
        absl::StatusOr<PathPattern> pattern = PathPattern::Parse(k);
        if (!pattern.ok()) {
          return Fail(absl::StrCat(pattern.status().message(), ": ", Quote(k)));
        }
        if (!patterns_.insert(pattern->text()).second) {
          return Fail(absl::StrCat("path pattern ", Quote(k), " given twice"));
        }
        out_->rules.push_back(PolicyRule{*std::move(pattern), {}, Line()});
        state_ = State::kRuleValue;
        return true;
      }
      case State::kRule:
        if (k != "capabilities") {
          return Fail(absl::StrCat(
              "unknown key ", Quote(k),
              " (a rule has only \"capabilities\"; parameter constraints are "
              "not supported)"));
        }
        if (seen_capabilities_) return Fail("\"capabilities\" given twice");
        seen_capabilities_ = true;
        state_ = State::kCapabilitiesValue;
        return true;
      default:
        return Unexpected("a key");
    }
  }

  bool end_object() {
    switch (state_) {
      case State::kRoot:
        if (!seen_path_) return Fail("no \"path\" in the policy");
        state_ = State::kDone;
        return true;
      case State::kPaths:
        state_ = State::kRoot;
        return true;
      case State::kRule:
        if (!seen_capabilities_) return Fail("rule without \"capabilities\"");
        state_ = State::kPaths;
        return true;
      default:
        return Unexpected("the end of an object");
    }
  }

  bool start_array(std::size_t) {
    if (state_ != State::kCapabilitiesValue) return Unexpected("an array");
    state_ = State::kCapabilities;
    return true;
  }

  bool end_array() {
    if (state_ != State::kCapabilities) return Unexpected("end of an array");
    state_ = State::kRule;
    return true;
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at
    // line L, column C: <reason>". Keep the reason; name the line our way.
    absl::string_view what = ex.what();
    size_t colon = what.find(": ");
    absl::string_view reason =
        colon == absl::string_view::npos ? what : what.substr(colon + 2);
    if (status_.ok()) Fail(absl::StrCat("invalid JSON: ", reason));
    return false;
  }

 private:
  enum class State {
    kStart,              // expect the root object
    kRoot,               // inside the root: "path" or end
    kPathValue,          // expect the object of patterns
    kPaths,              // a pattern or end
    kRuleValue,          // expect a rule object
    kRule,               // "capabilities" or end
    kCapabilitiesValue,  // expect the array
    kCapabilities,       // capability names or end
    kDone,
  };

  absl::string_view Expected() const {
    switch (state_) {
      case State::kStart:
        return "a policy object {\"path\": {...}}";
      case State::kRoot:
        return "\"path\" or the end of the policy";
      case State::kPathValue:
        return "an object of path patterns";
      case State::kPaths:
        return "a path pattern or '}'";
      case State::kRuleValue:
        return "a rule object {\"capabilities\": [...]}";
      case State::kRule:
        return "\"capabilities\" or '}'";
      case State::kCapabilitiesValue:
        return "a list of capabilities";
      case State::kCapabilities:
        return "a capability name or ']'";
      case State::kDone:
        return "the end of the text";
    }
    return "?";
  }

  bool Unexpected(absl::string_view found) {
    return Fail(absl::StrCat("expected ", Expected(), ", found ", found));
  }

  int Line() const {
    const size_t read = static_cast<size_t>(*high_water_ - text_.data());
    return 1 + static_cast<int>(
                   std::count(text_.begin(), text_.begin() + read, '\n'));
  }

  bool Fail(absl::string_view message) {
    status_ = absl::InvalidArgumentError(absl::StrCat(
        "policy ", Quote(out_->name), " line ", Line(), ": ", message));
    return false;
  }

  const absl::string_view text_;
  const char** const high_water_;
  Policy* const out_;
  State state_ = State::kStart;
  bool seen_path_ = false;
  bool seen_capabilities_ = false;
  absl::flat_hash_set<std::string> patterns_;
  absl::Status status_;
};

}  // namespace

bool CapabilityFromName(absl::string_view name, Capability* out) {
  for (Capability c : kAllCapabilities) {
    if (CapabilityName(c) == name) {
      *out = c;
      return true;
    }
  }
  return false;
}

absl::Status ValidatePolicyName(absl::string_view name) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError("policy name must be 1 to 128 bytes");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-' && c != '.') {
      return absl::InvalidArgumentError(
          "policy name may hold only letters, digits, '_', '-' and '.'");
    }
  }
  if (name == "root") {
    return absl::InvalidArgumentError("policy name \"root\" is reserved");
  }
  return absl::OkStatus();
}

absl::StatusOr<Policy> ParsePolicy(absl::string_view name,
                                   absl::string_view json) {
  if (absl::Status s = ValidatePolicyName(name); !s.ok()) return s;
  if (json.size() > kMaxPolicyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy ", Quote(name), " is over ", kMaxPolicyBytes, " bytes"));
  }
  Policy policy;
  policy.name = std::string(name);
  const char* high_water = json.data();
  Handler handler(json, &high_water, &policy);
  const bool ok =
      Json::sax_parse(TrackingIterator(json.data(), &high_water),
                      TrackingIterator(json.data() + json.size(), &high_water),
                      &handler, Json::input_format_t::json, /*strict=*/true,
                      /*ignore_comments=*/false);
  if (!handler.status().ok()) return handler.status();
  if (!ok) {  // not expected: every failure goes through the handler
    return absl::InvalidArgumentError(
        absl::StrCat("policy ", Quote(name), ": invalid JSON"));
  }
  return policy;
}

}  // namespace strongbox::policy
