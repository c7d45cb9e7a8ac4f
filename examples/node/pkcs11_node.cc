#include "examples/node/pkcs11_node.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strongbox {
namespace node {

absl::StatusOr<bool> ParsePkcs11Flag(absl::string_view arg,
                                     NodePkcs11Config* config) {
  if (!absl::StartsWith(arg, "--pkcs11-")) return false;
  struct Flag {
    absl::string_view name;
    std::string* value;
  };
  const Flag flags[] = {{"--pkcs11-module=", &config->module},
                        {"--pkcs11-token=", &config->token},
                        {"--pkcs11-pin-file=", &config->pin_file},
                        {"--pkcs11-key=", &config->key}};
  for (const Flag& flag : flags) {
    if (absl::StartsWith(arg, flag.name)) {
      absl::string_view value = arg.substr(flag.name.size());
      if (value.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            flag.name.substr(0, flag.name.size() - 1), " needs a value"));
      }
      *flag.value = std::string(value);
      return true;
    }
  }
  if (absl::StartsWith(arg, "--pkcs11-old-key=")) {
    absl::string_view value = arg.substr(sizeof("--pkcs11-old-key=") - 1);
    if (value.empty()) {
      return absl::InvalidArgumentError("--pkcs11-old-key needs a value");
    }
    config->old_keys.emplace_back(value);
    return true;
  }
  if (arg == "--pkcs11-generate-key") {
    config->generate_key = true;
    return true;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown argument '", arg, "'"));
}

absl::Status ValidatePkcs11Config(const NodePkcs11Config& config) {
  const bool any = !config.module.empty() || !config.token.empty() ||
                   !config.pin_file.empty() || !config.key.empty() ||
                   config.generate_key || !config.old_keys.empty();
  if (any && (config.module.empty() || config.token.empty() ||
              config.pin_file.empty() || config.key.empty())) {
    return absl::InvalidArgumentError(
        "auto-unseal needs all of --pkcs11-module, --pkcs11-token, "
        "--pkcs11-pin-file and --pkcs11-key");
  }
  return absl::OkStatus();
}

std::string Pkcs11Usage() {
  return " [--pkcs11-module=PATH --pkcs11-token=LABEL --pkcs11-pin-file=F "
         "--pkcs11-key=LABEL [--pkcs11-generate-key] "
         "[--pkcs11-old-key=LABEL...]]";
}

}  // namespace node
}  // namespace strongbox
