// A tiny JSON writer and reader for the strongbox_node line protocol: the
// node writes one flat object per line in a fixed key order; the tests and
// the ha_demo driver read those lines back.
//
// JsonObjectWriter emits keys in the order they are added (the protocol
// fixes the order), escapes every string, and never emits invalid JSON: bytes
// that are not valid UTF-8 become U+FFFD. ParseJson accepts RFC 8259 JSON
// (objects keep their key order) with a nesting limit; it is meant for
// trusted, small inputs such as a node's answers.
//
// Thread-compatible: distinct objects may be used from distinct threads.
#ifndef STRONGBOX_EXAMPLES_NODE_JSON_H_
#define STRONGBOX_EXAMPLES_NODE_JSON_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox {
namespace node {

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing past U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// `text` as a quoted JSON string.
std::string JsonQuote(absl::string_view text);

// Builds one JSON object, keys in insertion order. Its buffer may hold
// secrets (shares, values): it grows without leaving unwiped copies behind
// and is wiped when the writer is destroyed; the caller wipes what Finish()
// returns.
class JsonObjectWriter {
 public:
  JsonObjectWriter() = default;
  ~JsonObjectWriter();
  JsonObjectWriter(const JsonObjectWriter&) = delete;
  JsonObjectWriter& operator=(const JsonObjectWriter&) = delete;

  JsonObjectWriter& Bool(absl::string_view key, bool value);
  JsonObjectWriter& Int(absl::string_view key, int64_t value);
  JsonObjectWriter& String(absl::string_view key, absl::string_view value);
  JsonObjectWriter& StringArray(absl::string_view key,
                                const std::vector<std::string>& values);
  // An object whose values are all strings, in the given order.
  JsonObjectWriter& StringObject(
      absl::string_view key,
      const std::vector<std::pair<std::string, std::string>>& fields);

  // The object, e.g. {"ok":true}. The writer is empty afterwards.
  std::string Finish();

 private:
  void Key(absl::string_view key);
  // Makes room for `more` bytes, wiping the buffer it replaces.
  void Reserve(size_t more);
  void Append(absl::string_view text);
  void Quote(absl::string_view text);
  std::string out_;
};

// A parsed JSON value.
struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;  // kString; the literal text for kNumber
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // in order

  bool is_null() const { return type == Type::kNull; }
  bool is_bool() const { return type == Type::kBool; }
  bool is_number() const { return type == Type::kNumber; }
  bool is_string() const { return type == Type::kString; }
  bool is_array() const { return type == Type::kArray; }
  bool is_object() const { return type == Type::kObject; }

  // The member `key` of an object, or nullptr (also for non-objects).
  const JsonValue* Find(absl::string_view key) const;
  // Convenience for flat answers: the member as a string / bool, or the
  // fallback when absent or of another type.
  std::string GetString(absl::string_view key,
                        absl::string_view fallback = "") const;
  bool GetBool(absl::string_view key, bool fallback = false) const;
  int64_t GetInt(absl::string_view key, int64_t fallback = 0) const;
  // Keys of an object in order.
  std::vector<std::string> Keys() const;
};

// Parses one complete JSON text (surrounding whitespace allowed).
// INVALID_ARGUMENT with the byte offset on malformed input.
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_JSON_H_
