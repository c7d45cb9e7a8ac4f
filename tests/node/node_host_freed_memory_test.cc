// Invariant D5 in the example host: the lines a NodeHost is given (shares,
// secret values), the requests and responses it builds and the JSON answers
// it writes leave no copy of a secret in freed memory. Uses the freed-memory
// scanner (tests/store/freed_scanner.h), so it is a binary of its own and
// does not run under ASan or TSan.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "examples/node/json.h"
#include "examples/node/node_host.h"
#include "gtest/gtest.h"
#include "lib/util/base64.h"
#include "strongbox/secret_bytes.h"
#include "tests/store/freed_scanner.h"

namespace strongbox {
namespace node {
namespace {

using ::strongbox::testing_freed::AddMarker;
using ::strongbox::testing_freed::FreedScan;
using ::strongbox::testing_freed::kMarker;

// Printable (a line is text, and JSON escapes control characters).
constexpr absl::string_view kTextMarker = "Zq7-sbxFREED-mk4";

// What a client does with an answer that carried secrets.
void WipeAnswer(std::string* s) {
  s->resize(s->capacity());
  WipeString(*s);
}

std::string Status(NodeHost* host) {
  absl::StatusOr<JsonValue> v = ParseJson(host->HandleLine("status"));
  return v.ok() ? v->GetString("state") : "";
}

TEST(NodeHostFreedMemoryTest, CommandsLeaveNoSecretInFreedMemory) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  NodeConfig config;
  config.dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/freed-", getpid());
  config.node_id = "n1";
  config.advertise = "n1:8200";
  config.lease_ttl = absl::Milliseconds(1000);
  absl::StatusOr<std::unique_ptr<NodeHost>> opened = NodeHost::Open(config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  NodeHost* host = opened->get();

  std::string init = host->HandleLine("init 1 1");
  absl::StatusOr<JsonValue> parsed = ParseJson(init);
  ASSERT_TRUE(parsed.ok()) << init;
  std::string share_hex = parsed->Find("shares")->array[0].string;
  WipeAnswer(&init);
  // The share, as hex (what the line carries) and raw (what it decodes to).
  AddMarker(absl::string_view(share_hex).substr(0, 32));
  std::string share_raw = absl::HexStringToBytes(share_hex);
  AddMarker(absl::string_view(share_raw).substr(0, 16));

  FreedScan scan;
  {
    std::string line = absl::StrCat("unseal ", share_hex);
    std::string answer = host->HandleLine(&line);
    EXPECT_TRUE(absl::StrContains(answer, "\"sealed\":false")) << answer;
    WipeAnswer(&answer);
  }
  EXPECT_EQ(scan.Take(), 0) << "unseal";
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Status(host) != "active" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_EQ(Status(host), "active");
  scan.Take();

  // A text secret (long: on the heap; short: inline) and a binary one.
  AddMarker(kTextMarker.substr(0, 12));
  const std::string long_value =
      absl::StrCat("pw-", kTextMarker, "-padding-pad");
  const std::string binary = absl::StrCat(kMarker, "\xff\xfe");
  const std::string binary_b64 = Base64Encode(binary);
  AddMarker(binary_b64);
  {
    std::string line = absl::StrCat("put app/db long=", long_value,
                                    " short=", kTextMarker.substr(0, 12));
    std::string answer = host->HandleLine(&line);
    EXPECT_EQ(answer, R"({"ok":true,"version":1})");
    line = absl::StrCat("put app/bin raw:b64=", binary_b64);
    answer = host->HandleLine(&line);
    EXPECT_EQ(answer, R"({"ok":true,"version":1})");
  }
  EXPECT_EQ(scan.Take(), 0) << "put";
  {
    std::string line = "get app/db";
    std::string answer = host->HandleLine(&line);
    EXPECT_TRUE(absl::StrContains(answer, long_value)) << answer;
    WipeAnswer(&answer);
    line = "get app/bin";
    answer = host->HandleLine(&line);
    EXPECT_TRUE(absl::StrContains(answer, binary_b64)) << answer;
    WipeAnswer(&answer);
  }
  EXPECT_EQ(scan.Take(), 0) << "get";
  {
    // A secret pasted as a command.
    std::string line = absl::StrCat(long_value, " ", share_hex);
    std::string answer = host->HandleLine(&line);
    EXPECT_TRUE(absl::StrContains(answer, "INVALID_ARGUMENT")) << answer;
    WipeAnswer(&answer);
  }
  EXPECT_EQ(scan.Take(), 0) << "unknown command";
  WipeString(share_hex);
  WipeString(share_raw);
}

}  // namespace
}  // namespace node
}  // namespace strongbox
