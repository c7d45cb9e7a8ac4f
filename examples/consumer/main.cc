// A host program built in its own Bazel workspace against
// @strongbox//:strongbox, using only strongbox's public headers: it stores
// and reads back a value in the in-memory backend and lists it.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_join.h"
#include "strongbox/backend.h"
#include "strongbox/in_memory_backend.h"

int main() {
  std::unique_ptr<strongbox::Backend> backend =
      strongbox::NewInMemoryBackend();

  absl::StatusOr<uint64_t> revision =
      backend->Put("hosts/consumer/greeting", "hello from a consumer");
  if (!revision.ok()) {
    std::fprintf(stderr, "put: %s\n", revision.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<strongbox::Entry> entry =
      backend->Get("hosts/consumer/greeting");
  if (!entry.ok()) {
    std::fprintf(stderr, "get: %s\n", entry.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::vector<std::string>> children =
      backend->List("hosts/consumer/");
  if (!children.ok()) {
    std::fprintf(stderr, "list: %s\n", children.status().ToString().c_str());
    return 1;
  }
  std::printf("stored \"%s\" at revision %llu; hosts/consumer/ = [%s]; HA "
              "lease %s\n",
              entry->value.c_str(),
              static_cast<unsigned long long>(entry->version),
              absl::StrJoin(*children, ", ").c_str(),
              backend->ha() != nullptr ? "available" : "not available");
  return entry->value == "hello from a consumer" ? 0 : 1;
}
