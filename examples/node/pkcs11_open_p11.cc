// OpenNodeKeyWrapper() for the OpenSSL build: a Pkcs11KeyWrapper.
#include "examples/node/pkcs11_node.h"
#include "strongbox/pkcs11_key_wrapper.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<KeyWrapper>> OpenNodeKeyWrapper(
    const NodePkcs11Config& config) {
  Pkcs11Options options;
  options.module_path = config.module;
  options.token_label = config.token;
  options.pin_file = config.pin_file;
  options.key_label = config.key;
  options.generate_key = config.generate_key;
  options.old_key_labels = config.old_keys;
  absl::StatusOr<std::unique_ptr<Pkcs11KeyWrapper>> wrapper =
      Pkcs11KeyWrapper::Create(options);
  if (!wrapper.ok()) return wrapper.status();
  return std::unique_ptr<KeyWrapper>(*std::move(wrapper));
}

}  // namespace node
}  // namespace strongbox
