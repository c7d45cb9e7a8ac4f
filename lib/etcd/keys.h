// Where EtcdBackend keeps things under its prefix (see
// include/strongbox/etcd_backend.h, "Layout"), and etcd's range arithmetic.
// Stateless; thread-safe.
#ifndef STRONGBOX_LIB_ETCD_KEYS_H_
#define STRONGBOX_LIB_ETCD_KEYS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace strongbox {
namespace etcd {

inline constexpr absl::string_view kFormatValue = "strongbox-etcd-1";

class KeyLayout {
 public:
  explicit KeyLayout(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  const std::string& format_key() const { return format_; }
  const std::string& revision_key() const { return revision_; }
  const std::string& lock_key() const { return lock_; }
  // "<prefix>data/" + path.
  std::string DataKey(absl::string_view path) const;
  const std::string& data_root() const { return data_; }

 private:
  std::string prefix_, format_, revision_, lock_, data_;
};

// The range_end that makes [key, range_end) every key starting with `key`:
// the key with trailing 0xff bytes dropped and its last byte incremented;
// "\0" (everything) if the key is all 0xff or empty.
std::string PrefixRangeEnd(absl::string_view key);

}  // namespace etcd
}  // namespace strongbox

#endif  // STRONGBOX_LIB_ETCD_KEYS_H_
