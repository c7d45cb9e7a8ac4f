// OpenNodeKeyWrapper() for the default (BoringSSL) build: PKCS#11 modules
// link OpenSSL 3, which cannot share a process with BoringSSL, so this
// build has no PKCS#11 and says how to get it.
#include "examples/node/pkcs11_node.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<KeyWrapper>> OpenNodeKeyWrapper(
    const NodePkcs11Config& config) {
  return absl::FailedPreconditionError(
      "this strongbox_node was built without PKCS#11 support; build it with "
      "--config=openssl to use --pkcs11-module");
}

}  // namespace node
}  // namespace strongbox
