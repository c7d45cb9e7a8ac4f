#include "examples/node/key_file_wrapper.h"

#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<KeyWrapper>> OpenKeyFileWrapper(
    const std::string& path) {
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return absl::FailedPreconditionError(
          absl::StrCat("--wrapper-key-file: cannot read ", path));
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
    // The stream's buffer held the keys too; it is freed unwiped, a
    // limitation of this example (the keys live in the file anyway).
  }
  std::unique_ptr<SoftwareKeyWrapper> wrapper;
  absl::Status status;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    bool hex = words.size() == 2 && words[1].size() == 64;
    for (size_t i = 0; hex && i < words[1].size(); ++i) {
      hex = absl::ascii_isxdigit(static_cast<unsigned char>(words[1][i]));
    }
    if (!hex) {
      status = absl::InvalidArgumentError("not `KEY_ID <64 hex digits>`");
      break;
    }
    std::string bytes = absl::HexStringToBytes(words[1]);
    SecretBytes key = SecretBytes::Copy(bytes);
    WipeString(bytes);
    if (wrapper == nullptr) {
      absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> made =
          SoftwareKeyWrapper::Create(words[0], key);
      if (!made.ok()) {
        status = made.status();
        break;
      }
      wrapper = *std::move(made);
    } else {
      status = wrapper->Rotate(words[0], key);
      if (!status.ok()) break;
    }
  }
  WipeString(text);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("--wrapper-key-file: line ", line_number,
                                     ": ", status.message()));
  }
  if (wrapper == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--wrapper-key-file: no key in ", path));
  }
  return std::unique_ptr<KeyWrapper>(std::move(wrapper));
}

}  // namespace node
}  // namespace strongbox
