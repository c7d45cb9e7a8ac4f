// strongbox_node proper: no test seams (test_seams.h).
#include "examples/node/test_seams.h"

namespace strongbox {
namespace node {

std::unique_ptr<KeyWrapper> KeyWrapperWithTestSeams(
    std::unique_ptr<KeyWrapper> wrapper) {
  return wrapper;
}
std::unique_ptr<Backend> BackendWithTestSeams(
    std::unique_ptr<Backend> backend) {
  return backend;
}

}  // namespace node
}  // namespace strongbox
