// OpenNodeTransport() for the default (BoringSSL) build: gRPC links
// OpenSSL 3, which cannot share a process with BoringSSL, so this build has
// no transport and says how to get one.
#include "examples/node/node_host.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<NodeTransport>> OpenNodeTransport(
    const NodeConfig& config, HaCoordinator* coordinator) {
  return absl::FailedPreconditionError(
      "this strongbox_node was built without the gRPC transport; build it "
      "with --config=openssl to use --listen");
}

}  // namespace node
}  // namespace strongbox
