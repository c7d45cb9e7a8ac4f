// The strongbox_node line protocol on its own, on an in-memory backend:
// any bytes as command lines to an unsealed, active NodeHost, and as JSON
// to the example's parser. Every line gets one answer that is valid UTF-8
// and a JSON object with "ok"; the line is wiped; nothing crashes, hangs or
// leaks. JsonQuote of valid UTF-8 parses back to the same string.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "examples/node/json.h"
#include "examples/node/node_host.h"
#include "strongbox/in_memory_backend.h"

namespace {

using strongbox::node::JsonValue;
using strongbox::node::NodeHost;

struct Node {
  Node() {
    strongbox::node::NodeConfig config;
    config.node_id = "fuzz";
    config.advertise = "fuzz:1";
    config.lease_ttl = absl::Milliseconds(40);
    host = *NodeHost::OpenWithBackend(config, strongbox::NewInMemoryBackend());
    absl::StatusOr<JsonValue> init =
        strongbox::node::ParseJson(host->HandleLine("init 1 1"));
    if (!init.ok() || init->Find("shares") == nullptr) std::abort();
    share = init->Find("shares")->array.at(0).string;
    EnsureActive();
  }
  // Brings the node back after a fuzzed `seal` or `step-down` (bounded).
  void EnsureActive() {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (host->coordinator()->state() != strongbox::HaState::kActive &&
           absl::Now() < deadline) {
      if (host->coordinator()->state() == strongbox::HaState::kSealed) {
        (void)host->HandleLine("unseal " + share);
      }
      host->coordinator()->Poll();
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  std::unique_ptr<NodeHost> host;
  std::string share;
};

void CheckAnswer(const std::string& answer) {
  if (!strongbox::node::IsValidUtf8(answer)) std::abort();
  absl::StatusOr<JsonValue> v = strongbox::node::ParseJson(answer);
  if (!v.ok() || !v->is_object()) std::abort();
  const JsonValue* ok = v->Find("ok");
  if (ok == nullptr || !ok->is_bool()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Node* node = new Node();
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);

  // The JSON reader and writer.
  (void)strongbox::node::ParseJson(bytes);
  const std::string quoted = strongbox::node::JsonQuote(bytes);
  absl::StatusOr<JsonValue> parsed = strongbox::node::ParseJson(quoted);
  if (!parsed.ok() || !parsed->is_string()) std::abort();
  if (strongbox::node::IsValidUtf8(bytes) && parsed->string != bytes) {
    std::abort();
  }

  // Command lines.
  if (node->host->coordinator()->state() != strongbox::HaState::kActive) {
    node->EnsureActive();
  }
  for (absl::string_view line : absl::StrSplit(bytes, '\n')) {
    std::string owned(line);
    CheckAnswer(node->host->HandleLine(&owned));
    if (!owned.empty()) std::abort();  // the line was wiped
  }
  return 0;
}
