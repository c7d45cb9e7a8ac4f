// A Forwarder for in-process clusters: hands the request bytes to the
// SecretStore registered under the leader's address (HandleSerialized), as
// a host's transport would; UNAVAILABLE for an unknown address. Register
// stores before calls start: `stores` is not guarded.
#ifndef STRONGBOX_TESTS_STORE_LOOPBACK_FORWARDER_H_
#define STRONGBOX_TESTS_STORE_LOOPBACK_FORWARDER_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "strongbox/secret_store.h"

namespace strongbox::testing_store {

class LoopbackForwarder : public Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    auto it = stores.find(std::string(leader));
    if (it == stores.end()) return absl::UnavailableError("no route to host");
    return it->second->HandleSerialized(request);
  }
  // Not owned.
  std::map<std::string, SecretStore*> stores;
};

}  // namespace strongbox::testing_store

#endif  // STRONGBOX_TESTS_STORE_LOOPBACK_FORWARDER_H_
