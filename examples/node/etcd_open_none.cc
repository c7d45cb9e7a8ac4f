// OpenNodeEtcdBackend() for the default (BoringSSL) build: gRPC links
// OpenSSL 3, which cannot share a process with BoringSSL, so this build has
// no etcd backend and says how to get one.
#include "examples/node/node_host.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<Backend>> OpenNodeEtcdBackend(
    const NodeConfig& config) {
  return absl::FailedPreconditionError(
      "this strongbox_node was built without etcd support; build it with "
      "--config=openssl to use --etcd");
}

}  // namespace node
}  // namespace strongbox
