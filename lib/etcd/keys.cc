#include "lib/etcd/keys.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace strongbox {
namespace etcd {

KeyLayout::KeyLayout(std::string prefix)
    : prefix_(std::move(prefix)),
      format_(absl::StrCat(prefix_, "format")),
      revision_(absl::StrCat(prefix_, "revision")),
      lock_(absl::StrCat(prefix_, "lock")),
      data_(absl::StrCat(prefix_, "data/")) {}

std::string KeyLayout::DataKey(absl::string_view path) const {
  return absl::StrCat(data_, path);
}

std::string PrefixRangeEnd(absl::string_view key) {
  std::string end(key);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) {
    end.pop_back();
  }
  if (end.empty()) return std::string(1, '\0');
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

}  // namespace etcd
}  // namespace strongbox
