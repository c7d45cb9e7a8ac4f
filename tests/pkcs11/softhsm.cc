#include "tests/pkcs11/softhsm.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace strongbox::testing_softhsm {
namespace {

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::trunc);
  out << contents;
}

}  // namespace

SoftHsm::SoftHsm(const std::string& name) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string base = tmp != nullptr ? tmp : "/tmp";
  std::string templ = absl::StrCat(base, "/softhsm-", name, "-XXXXXX");
  char* made = mkdtemp(templ.data());
  dir_ = made != nullptr ? made : templ;
  token_dir_ = absl::StrCat(dir_, "/tokens");
  mkdir(token_dir_.c_str(), 0700);
  conf_ = absl::StrCat(dir_, "/softhsm2.conf");
  WriteFile(conf_,
            absl::StrCat("directories.tokendir = ", token_dir_,
                         "\nobjectstore.backend = file\n"
                         "log.level = ERROR\nslots.removable = false\n"));
  pin_file_ = WritePinFile("pin", absl::StrCat(kUserPin, "\n"));
  setenv("SOFTHSM2_CONF", conf_.c_str(), 1);
}

SoftHsm::~SoftHsm() {
  std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "could not remove %s\n", dir_.c_str());
  }
}

std::string SoftHsm::WritePinFile(const std::string& name,
                                  const std::string& pin) {
  std::string path = absl::StrCat(dir_, "/", name);
  WriteFile(path, pin);
  chmod(path.c_str(), 0600);
  return path;
}

absl::Status SoftHsm::InitToken(const std::string& label) {
  std::string cmd = absl::StrCat(
      "SOFTHSM2_CONF='", conf_, "' softhsm2-util --init-token --free --label '",
      label, "' --pin ", kUserPin, " --so-pin 87654321 >/dev/null");
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("softhsm2-util failed: ", rc));
  }
  return absl::OkStatus();
}

absl::Status SoftHsm::HideTokens() {
  if (rename(token_dir_.c_str(), (token_dir_ + ".away").c_str()) != 0 ||
      mkdir(token_dir_.c_str(), 0700) != 0) {
    return absl::InternalError("could not move the token directory away");
  }
  return absl::OkStatus();
}

absl::Status SoftHsm::RestoreTokens() {
  if (rmdir(token_dir_.c_str()) != 0 ||
      rename((token_dir_ + ".away").c_str(), token_dir_.c_str()) != 0) {
    return absl::InternalError("could not restore the token directory");
  }
  return absl::OkStatus();
}

}  // namespace strongbox::testing_softhsm
