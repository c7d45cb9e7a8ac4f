// strongbox_node's software key wrapper (--wrapper-key-file=F): auto-unseal
// with key encryption keys read from a file at start, for hosts that keep
// that file somewhere of their own (readable only at start, a secrets
// manager's mount) and for tests that need auto-unseal without an HSM.
//
// File format: one key per line, `KEY_ID HEX`, HEX being 64 hex digits
// (an AES-256 key); blank lines and lines starting with '#' are skipped.
// The LAST key is the current one (Wrap); every earlier one still unwraps,
// so a wrapper key rotation is: append a line, restart the nodes, then
// `rotate-wrapper-key` with the recovery shares, then drop the old line.
// seal_type "software".
#ifndef STRONGBOX_EXAMPLES_NODE_KEY_FILE_WRAPPER_H_
#define STRONGBOX_EXAMPLES_NODE_KEY_FILE_WRAPPER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {
namespace node {

// FAILED_PRECONDITION if the file cannot be read; INVALID_ARGUMENT naming
// the line (never its bytes) for a malformed one, a duplicate id or no key.
absl::StatusOr<std::unique_ptr<KeyWrapper>> OpenKeyFileWrapper(
    const std::string& path);

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_KEY_FILE_WRAPPER_H_
