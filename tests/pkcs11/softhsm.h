// A SoftHSM2 token made at test time: a temporary SOFTHSM2_CONF directory
// with its own token directory, initialized by softhsm2-util. For the
// PKCS#11 tests (OpenSSL provider only; see lib/pkcs11/BUILD.bazel).
#ifndef STRONGBOX_TESTS_PKCS11_SOFTHSM_H_
#define STRONGBOX_TESTS_PKCS11_SOFTHSM_H_

#include <string>

#include "absl/status/status.h"

namespace strongbox::testing_softhsm {

inline constexpr char kModulePath[] = "/usr/lib/softhsm/libsofthsm2.so";
inline constexpr char kUserPin[] = "4321";

class SoftHsm {
 public:
  // Makes `dir` (under TEST_TMPDIR when relative) with softhsm2.conf, a
  // token directory and a PIN file holding kUserPin; sets SOFTHSM2_CONF in
  // this process's environment (children inherit it).
  explicit SoftHsm(const std::string& name);
  ~SoftHsm();

  // softhsm2-util --init-token --free --label `label`.
  absl::Status InitToken(const std::string& label);

  const std::string& dir() const { return dir_; }
  const std::string& conf() const { return conf_; }
  const std::string& pin_file() const { return pin_file_; }
  const std::string& token_dir() const { return token_dir_; }
  // Writes `pin` to a file of its own and returns the path.
  std::string WritePinFile(const std::string& name, const std::string& pin);

  // Moves the token directory away (the token's files are gone) and back.
  absl::Status HideTokens();
  absl::Status RestoreTokens();

 private:
  std::string dir_;
  std::string conf_;
  std::string token_dir_;
  std::string pin_file_;
};

}  // namespace strongbox::testing_softhsm

#endif  // STRONGBOX_TESTS_PKCS11_SOFTHSM_H_
