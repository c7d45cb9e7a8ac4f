// Test seams of strongbox_node: decorators a test build of the node puts
// around its key wrapper and backend, so a test can stop a node at an
// exact point inside a seal operation and kill it there (tests/node).
// The node binary proper links test_seams_off.cc (no decoration); only the
// testonly strongbox_node_with_test_seams links test_seams_pause.cc.
//
// test_seams_pause.cc: with STRONGBOX_NODE_TEST_PAUSE_FILE=F set, the node
// reads F before each key wrapper Wrap and backend Commit; while F exists
// it holds one of
//   after-wrap N          stop after the Nth Wrap call seen while F exists
//                         returned (its result not yet used)
//   after-commit PATH     stop after a Commit writing PATH returned OK
//                         (applied, nothing after it run yet)
// On firing, the node renames F to F.fired (so one node fires, once) and
// its calling thread stops for good (the process keeps its lease, as a
// frozen process would); the test then kills it with SIGKILL.
#ifndef STRONGBOX_EXAMPLES_NODE_TEST_SEAMS_H_
#define STRONGBOX_EXAMPLES_NODE_TEST_SEAMS_H_

#include <memory>

#include "strongbox/backend.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {
namespace node {

std::unique_ptr<KeyWrapper> KeyWrapperWithTestSeams(
    std::unique_ptr<KeyWrapper> wrapper);
std::unique_ptr<Backend> BackendWithTestSeams(std::unique_ptr<Backend> backend);

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_TEST_SEAMS_H_
