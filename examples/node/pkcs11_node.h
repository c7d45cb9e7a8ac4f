// strongbox_node's auto-unseal through a PKCS#11 token (issue 14): the
// --pkcs11-* flags and the key wrapper they open. Self-contained, so the
// node's other options and commands stay where they are.
//
//   --pkcs11-module=PATH --pkcs11-token=LABEL --pkcs11-pin-file=F
//   --pkcs11-key=LABEL [--pkcs11-generate-key] [--pkcs11-old-key=LABEL...]
//
// --pkcs11-old-key (repeatable): an earlier key whose blobs still unwrap,
// for a wrapper key rotation: restart the nodes with the new --pkcs11-key
// and the old one here, run `rotate-wrapper-key` with the recovery shares
// on the active, then drop the old label.
//
// With them the node's coordinator gets a Pkcs11KeyWrapper
// (strongbox/pkcs11_key_wrapper.h): `init SHARES THRESHOLD` answers
// recovery shares ({"ok":true,"recovery_shares":[...]}) and the node
// unseals itself at start and after init; `status` carries "seal_type"
// and, while sealed, "seal_error". Only the OpenSSL build has PKCS#11
// (pkcs11_open_p11.cc); the default build refuses the flags at start with
// a message saying so (pkcs11_open_none.cc).
#ifndef STRONGBOX_EXAMPLES_NODE_PKCS11_NODE_H_
#define STRONGBOX_EXAMPLES_NODE_PKCS11_NODE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {
namespace node {

struct NodePkcs11Config {
  std::string module;                 // --pkcs11-module
  std::string token;                  // --pkcs11-token
  std::string pin_file;               // --pkcs11-pin-file
  std::string key;                    // --pkcs11-key
  bool generate_key = false;          // --pkcs11-generate-key
  std::vector<std::string> old_keys;  // --pkcs11-old-key, repeatable
  bool enabled() const { return !module.empty(); }
};

// If `arg` is a --pkcs11-* flag, records it and answers true; false for
// any other argument; INVALID_ARGUMENT for a malformed --pkcs11-* flag.
absl::StatusOr<bool> ParsePkcs11Flag(absl::string_view arg,
                                     NodePkcs11Config* config);
// After parsing: all four of module, token, pin file and key, or none.
absl::Status ValidatePkcs11Config(const NodePkcs11Config& config);
// " [--pkcs11-module=PATH ...]" for the usage line.
std::string Pkcs11Usage();

// The node's key wrapper (pkcs11_open_*.cc, one per crypto provider).
// Touches no token: errors show up in `status` and `init`.
absl::StatusOr<std::unique_ptr<KeyWrapper>> OpenNodeKeyWrapper(
    const NodePkcs11Config& config);

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_PKCS11_NODE_H_
