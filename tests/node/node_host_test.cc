// NodeHost in one process: the command table, every kind of malformed line,
// flag parsing, and two nodes on one directory (the LMDB backend keeps a
// separate lease per backend, so they behave as two processes would).
#include "examples/node/node_host.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "examples/node/json.h"
#include "gtest/gtest.h"
#include "strongbox/requests.pb.h"

namespace strongbox {
namespace node {
namespace {

std::string NewDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-", getpid(),
                      "-", counter.fetch_add(1));
}

NodeConfig Config(const std::string& dir, const std::string& id,
                  bool perf = false) {
  NodeConfig c;
  c.dir = dir;
  c.node_id = id;
  c.advertise = id + ":8200";
  c.perf_standby = perf;
  c.lease_ttl = absl::Milliseconds(1000);
  return c;
}

JsonValue Parse(const std::string& line) {
  absl::StatusOr<JsonValue> v = ParseJson(line);
  EXPECT_TRUE(v.ok()) << line << ": " << v.status();
  return v.ok() ? *v : JsonValue();
}

// Polls `status` until the state is `state` (bounded).
bool AwaitState(NodeHost* host, const std::string& state) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (Parse(host->HandleLine("status")).GetString("state") == state) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  return false;
}

// Initializes with 3/2 and unseals every host.
std::vector<std::string> InitAndUnseal(std::vector<NodeHost*> hosts) {
  JsonValue init = Parse(hosts[0]->HandleLine("init 3 2"));
  EXPECT_TRUE(init.GetBool("ok")) << hosts[0]->HandleLine("status");
  std::vector<std::string> shares;
  for (const JsonValue& s : init.Find("shares")->array) {
    shares.push_back(s.string);
  }
  for (NodeHost* host : hosts) {
    EXPECT_EQ(host->HandleLine("unseal " + shares[0]),
              R"({"ok":true,"sealed":true,"progress":1,"threshold":2})");
    EXPECT_EQ(host->HandleLine("unseal " + shares[2]),
              R"({"ok":true,"sealed":false,"progress":0,"threshold":2})");
  }
  return shares;
}

TEST(NodeFlagsTest, KillHungHolderIsOnUnlessTurnedOff) {
  std::vector<std::string> args = {"node", "--dir=/d", "--node-id=n1",
                                   "--advertise=a:1"};
  auto parse = [](std::vector<std::string> v) {
    std::vector<char*> argv;
    for (std::string& s : v) argv.push_back(s.data());
    return ParseNodeFlags(argv.size(), argv.data());
  };
  absl::StatusOr<NodeConfig> c = parse(args);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->kill_hung_holder);
  args.push_back("--no-kill-hung-holder");
  c = parse(args);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->kill_hung_holder);
}

TEST(NodeFlagsTest, ParsesAndRejects) {
  std::vector<std::string> good = {"node",           "--dir=/d",
                                   "--node-id=n1",   "--advertise=a:1",
                                   "--perf-standby", "--lease-ttl-ms=750"};
  std::vector<char*> argv;
  for (std::string& s : good) argv.push_back(s.data());
  absl::StatusOr<NodeConfig> c = ParseNodeFlags(argv.size(), argv.data());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dir, "/d");
  EXPECT_EQ(c->node_id, "n1");
  EXPECT_EQ(c->advertise, "a:1");
  EXPECT_TRUE(c->perf_standby);
  EXPECT_EQ(c->lease_ttl, absl::Milliseconds(750));

  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"node"},
           {"node", "--dir=/d", "--node-id=n"},
           {"node", "--dir=/d", "--advertise=a"},
           {"node", "--node-id=n", "--advertise=a"},
           {"node", "--dir=/d", "--node-id=n", "--advertise=a", "--bogus"},
           {"node", "--dir=/d", "--node-id=n", "--advertise=a", "extra"},
           {"node", "--dir=/d", "--node-id=n", "--advertise=a",
            "--lease-ttl-ms=abc"},
           {"node", "--dir=/d", "--node-id=n", "--advertise=a",
            "--lease-ttl-ms=0"},
           {"node", "--dir=/d", "--node-id=n", "--advertise=a",
            "--lease-ttl-ms=99999999999"},
       }) {
    std::vector<char*> v;
    for (std::string& s : bad) v.push_back(s.data());
    EXPECT_EQ(ParseNodeFlags(v.size(), v.data()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad.back();
  }
}

TEST(NodeFlagsTest, EtcdFlagsParseAndExcludeDir) {
  auto parse = [](std::vector<std::string> v) {
    std::vector<char*> argv;
    for (std::string& s : v) argv.push_back(s.data());
    return ParseNodeFlags(argv.size(), argv.data());
  };
  absl::StatusOr<NodeConfig> c =
      parse({"node", "--etcd=http://a:1,http://b:2", "--etcd-prefix=p/",
             "--etcd-ca=ca.pem", "--etcd-cert=c.pem", "--etcd-key=k.pem",
             "--node-id=n", "--advertise=a"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->etcd_endpoints,
            (std::vector<std::string>{"http://a:1", "http://b:2"}));
  EXPECT_EQ(c->etcd_prefix, "p/");
  EXPECT_EQ(c->etcd_ca, "ca.pem");
  EXPECT_EQ(c->etcd_cert, "c.pem");
  EXPECT_EQ(c->etcd_key, "k.pem");
  EXPECT_TRUE(c->dir.empty());
  c = parse({"node", "--etcd=http://a:1", "--node-id=n", "--advertise=a"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->etcd_prefix, "strongbox/");
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"node", "--etcd=", "--node-id=n", "--advertise=a"},
           {"node", "--etcd=http://a:1", "--dir=/d", "--node-id=n",
            "--advertise=a"},
       }) {
    EXPECT_EQ(parse(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad[1];
  }
}

TEST(NodeHostTest, EtcdNeedsTheOpenSslBuild) {
  NodeConfig config;
  config.etcd_endpoints = {"http://127.0.0.1:1"};
  config.node_id = "n";
  config.advertise = "a:1";
  absl::Status s = NodeHost::Open(config).status();
#if STRONGBOX_NODE_HAS_ETCD
  // Nothing listens on port 1: the dial timeout ends it.
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
#else
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("--config=openssl"), absl::string_view::npos) << s;
#endif
}

TEST(NodeHostTest, MalformedLinesAreRefusedAndChangeNothing) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("bad"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  NodeHost& h = **host;
  const std::string uninitialized =
      R"({"ok":true,"initialized":false,"sealed":true,"state":"uninitialized"})";
  EXPECT_EQ(h.HandleLine("status"), uninitialized);
  const std::vector<std::string> bad_lines = {
      "",
      "   ",
      "frobnicate",
      "STATUS",
      "status now",
      "init",
      "init 5",
      "init 5 3 1",
      "init five 3",
      "init 5 -3",
      "init 99999999999999999999 3",
      "unseal",
      "unseal zz",
      "unseal abc",
      "unseal 0x12",
      "unseal ab cd",
      "put",
      "put a",
      "put a b",
      "put a =v",
      "put a k=v k=w",
      "get",
      "get a b",
      "step-down now",
      "seal x",
      std::string("st\0tus", 6),
      "\xff\xfe\xfd",
      "put a k=\xc3",
      std::string(kMaxLineBytes + 1, 'a'),
      "unseal " + std::string(kMaxLineBytes, 'a'),
  };
  for (const std::string& line : bad_lines) {
    JsonValue v = Parse(h.HandleLine(line));
    EXPECT_FALSE(v.GetBool("ok", true)) << line.substr(0, 40);
    EXPECT_EQ(v.GetString("code"), "INVALID_ARGUMENT") << line.substr(0, 40);
    EXPECT_FALSE(v.GetString("error").empty());
    EXPECT_EQ(v.Keys(), (std::vector<std::string>{"ok", "code", "error"}));
  }
  // A binary line answers with valid JSON that does not echo raw bytes.
  EXPECT_TRUE(IsValidUtf8(h.HandleLine("\x80\x81 status")));
  EXPECT_EQ(h.HandleLine("status"), uninitialized);
  // Out-of-range share counts are the library's to refuse.
  JsonValue v = Parse(h.HandleLine("init 300 3"));
  EXPECT_EQ(v.GetString("code"), "INVALID_ARGUMENT");
  v = Parse(h.HandleLine("init 2 3"));
  EXPECT_EQ(v.GetString("code"), "INVALID_ARGUMENT");
  EXPECT_EQ(h.HandleLine("status"), uninitialized);
  // Operations in the wrong state.
  v = Parse(h.HandleLine("unseal abcd"));
  EXPECT_EQ(v.GetString("code"), "FAILED_PRECONDITION");
  v = Parse(h.HandleLine("put a k=v"));
  EXPECT_EQ(v.GetString("code"), "FAILED_PRECONDITION");
  EXPECT_EQ(h.HandleLine("step-down"), R"({"ok":true})");
  EXPECT_EQ(h.HandleLine("seal"), R"({"ok":true})");
  // A trailing CR (a client on CRLF) is ignored.
  EXPECT_EQ(h.HandleLine("status\r"), uninitialized);
}

TEST(NodeHostTest, OneNodeInitUnsealPutGet) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("one"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  NodeHost& h = **host;
  std::vector<std::string> shares = InitAndUnseal({&h});
  EXPECT_EQ(shares.size(), 3u);
  EXPECT_EQ(Parse(h.HandleLine("init 3 2")).GetString("code"),
            "FAILED_PRECONDITION");
  ASSERT_TRUE(AwaitState(&h, "active"));
  JsonValue status = Parse(h.HandleLine("status"));
  EXPECT_EQ(status.Keys(),
            (std::vector<std::string>{"ok", "initialized", "sealed", "state",
                                      "leader", "fence"}));
  EXPECT_EQ(status.GetString("leader"), "n1:8200");
  EXPECT_GT(status.GetInt("fence"), 0);
  EXPECT_TRUE(status.Find("fence")->is_string());

  EXPECT_EQ(h.HandleLine("put app/db user=app pw=s3cr\"t"),
            R"({"ok":true,"version":1})");
  EXPECT_EQ(h.HandleLine("put app/db pw=two empty="),
            R"({"ok":true,"version":2})");
  EXPECT_EQ(h.HandleLine("get app/db"),
            R"({"ok":true,"version":2,"data":{"empty":"","pw":"two"}})");
  JsonValue missing = Parse(h.HandleLine("get app/none"));
  EXPECT_EQ(missing.GetString("code"), "NOT_FOUND");
  EXPECT_EQ(missing.Find("leader"), nullptr);  // the active sends nobody away
  EXPECT_EQ(Parse(h.HandleLine("put /bad//path k=v")).GetString("code"),
            "INVALID_ARGUMENT");

  EXPECT_EQ(h.HandleLine("seal"), R"({"ok":true})");
  EXPECT_EQ(h.HandleLine("status"),
            R"({"ok":true,"initialized":true,"sealed":true,"state":"sealed"})");
  EXPECT_EQ(Parse(h.HandleLine("get app/db")).GetString("code"),
            "FAILED_PRECONDITION");
  EXPECT_EQ(Parse(h.HandleLine("unseal " + shares[1])).GetInt("progress"), 1);
  EXPECT_FALSE(
      Parse(h.HandleLine("unseal " + shares[0])).GetBool("sealed", true));
  ASSERT_TRUE(AwaitState(&h, "active"));
  EXPECT_EQ(h.HandleLine("get app/db"),
            R"({"ok":true,"version":2,"data":{"empty":"","pw":"two"}})");
}

TEST(NodeHostTest, StandbysRouteToTheActive) {
  const std::string dir = NewDir("two");
  absl::StatusOr<std::unique_ptr<NodeHost>> a =
      NodeHost::Open(Config(dir, "a"));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<std::string> shares = InitAndUnseal({a->get()});
  ASSERT_TRUE(AwaitState(a->get(), "active"));
  // Opened after the active exists: both become standbys.
  absl::StatusOr<std::unique_ptr<NodeHost>> plain =
      NodeHost::Open(Config(dir, "plain"));
  absl::StatusOr<std::unique_ptr<NodeHost>> perf =
      NodeHost::Open(Config(dir, "perf", /*perf=*/true));
  ASSERT_TRUE(plain.ok() && perf.ok());
  EXPECT_EQ((*plain)->HandleLine("status"),
            R"({"ok":true,"initialized":true,"sealed":true,"state":"sealed"})");
  for (NodeHost* h : {plain->get(), perf->get()}) {
    h->HandleLine("unseal " + shares[0]);
    EXPECT_FALSE(Parse(h->HandleLine("unseal " + shares[1])).GetBool("sealed"));
  }
  ASSERT_TRUE(AwaitState(plain->get(), "standby"));
  ASSERT_TRUE(AwaitState(perf->get(), "perf_standby"));
  // A standby learns the leader's address within its leader refresh.
  for (NodeHost* h : {plain->get(), perf->get()}) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (Parse(h->HandleLine("status")).Find("leader") == nullptr &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  EXPECT_EQ((*a)->HandleLine("put k v=1"), R"({"ok":true,"version":1})");

  // A read: served by the perf standby, redirected by the plain one.
  EXPECT_EQ((*perf)->HandleLine("get k"),
            R"({"ok":true,"version":1,"data":{"v":"1"}})");
  JsonValue redirected = Parse((*plain)->HandleLine("get k"));
  EXPECT_EQ(redirected.Keys(),
            (std::vector<std::string>{"ok", "code", "error", "leader"}));
  EXPECT_EQ(redirected.GetString("code"), "UNAVAILABLE");
  EXPECT_EQ(redirected.GetString("leader"), "a:8200");
  // A write on either standby: refused, with the leader's address.
  for (NodeHost* h : {plain->get(), perf->get()}) {
    JsonValue v = Parse(h->HandleLine("put k v=2"));
    EXPECT_EQ(v.GetString("code"), "UNAVAILABLE");
    EXPECT_EQ(v.GetString("leader"), "a:8200");
    // Even a malformed line on a standby says where the active is.
    EXPECT_EQ(Parse(h->HandleLine("nonsense")).GetString("leader"), "a:8200");
    JsonValue status = Parse(h->HandleLine("status"));
    EXPECT_EQ(status.GetString("leader"), "a:8200");
  }
  EXPECT_EQ((*a)->HandleLine("get k"),
            R"({"ok":true,"version":1,"data":{"v":"1"}})");

  // Step-down hands over to a standby; the old active becomes a standby.
  EXPECT_EQ((*a)->HandleLine("step-down"), R"({"ok":true})");
  const absl::Time until = absl::Now() + absl::Seconds(10);
  NodeHost* next = nullptr;
  while (next == nullptr && absl::Now() < until) {
    for (NodeHost* h : {plain->get(), perf->get()}) {
      if (Parse(h->HandleLine("status")).GetString("state") == "active") {
        next = h;
      }
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_NE(next, nullptr) << "no takeover after step-down";
  EXPECT_EQ(Parse((*a)->HandleLine("status")).GetString("state"), "standby");
  EXPECT_EQ(next->HandleLine("put k v=3"), R"({"ok":true,"version":2})");
}

TEST(NodeHostTest, UnknownCommandsAreNeverEchoed) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("echo"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  // A share pasted without `unseal`, a secret, a long line: the answer
  // names the problem only.
  for (const std::string& line :
       {std::string("0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
        std::string("hunter2 pw=s3cret"), std::string(200, 'q'),
        std::string("frobnicate")}) {
    const std::string answer = (*host)->HandleLine(line);
    const std::string first = line.substr(0, line.find(' '));
    EXPECT_FALSE(absl::StrContains(answer, first)) << answer;
    JsonValue v = Parse(answer);
    EXPECT_EQ(v.GetString("code"), "INVALID_ARGUMENT");
    EXPECT_TRUE(absl::StrContains(v.GetString("error"), "unknown command"));
  }
}

TEST(NodeHostTest, BinaryValuesRoundTripInBase64) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("b64"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  NodeHost& h = **host;
  InitAndUnseal({&h});
  ASSERT_TRUE(AwaitState(&h, "active"));
  // Written through the library API: bytes that are not UTF-8.
  const std::string raw("\xff\x00\x01\x80", 4);
  ASSERT_TRUE(
      h.store()->KvPut("bin", {{"raw", raw}, {"txt", "h\xc3\xa9"}}).ok());
  EXPECT_EQ(h.HandleLine("get bin"),
            "{\"ok\":true,\"version\":1,\"data\":{\"txt\":\"h\xc3\xa9\"},"
            "\"data_b64\":{\"raw\":\"/wABgA==\"}}");
  // Text only: no data_b64 member.
  EXPECT_EQ(h.HandleLine("put text k=v"), R"({"ok":true,"version":1})");
  EXPECT_EQ(h.HandleLine("get text"),
            R"({"ok":true,"version":1,"data":{"k":"v"}})");

  // put takes K:b64=BASE64; a name ending in ":b64" adds the suffix twice.
  EXPECT_EQ(h.HandleLine("put bin2 raw:b64=/wABgA== x:b64:b64=/g== t=plain"),
            R"({"ok":true,"version":1})");
  absl::StatusOr<store::KvSecret> got = h.store()->KvGet("bin2");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data().at("raw"), raw);
  EXPECT_EQ(got->data().at("x:b64"), "\xfe");
  EXPECT_EQ(got->data().at("t"), "plain");
  // What get answers, put takes back unchanged.
  JsonValue v = Parse(h.HandleLine("get bin2"));
  EXPECT_EQ(v.Find("data_b64")->GetString("raw"), "/wABgA==");
  EXPECT_EQ(v.Find("data_b64")->GetString("x:b64"), "/g==");
  EXPECT_EQ(v.Find("data")->GetString("t"), "plain");

  // Malformed base64 is refused without echoing the value; an empty name
  // and a name given twice (once in each form) too.
  for (const std::string& line :
       {std::string("put bad k:b64=QUJD="), std::string("put bad k:b64=QQ"),
        std::string("put bad k:b64=Q!==")}) {
    const std::string answer = h.HandleLine(line);
    EXPECT_EQ(Parse(answer).GetString("code"), "INVALID_ARGUMENT") << line;
    EXPECT_FALSE(absl::StrContains(answer, line.substr(line.find('=') + 1)))
        << answer;
  }
  EXPECT_EQ(Parse(h.HandleLine("put bad :b64=AA==")).GetString("code"),
            "INVALID_ARGUMENT");
  EXPECT_EQ(Parse(h.HandleLine("put bad k=a k:b64=AA==")).GetString("code"),
            "INVALID_ARGUMENT");
  EXPECT_EQ(Parse(h.HandleLine("get bad")).GetString("code"), "NOT_FOUND");
}

TEST(NodeHostTest, HandleLineWipesTheLineItWasGiven) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("wipe"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  std::string line = "unseal 0a1b2c3d";
  line.reserve(256);
  const char* buffer = line.data();
  const size_t size = line.size();
  (*host)->HandleLine(&line);
  EXPECT_TRUE(line.empty());
  ASSERT_EQ(line.data(), buffer);  // the same buffer, now overwritten
  EXPECT_EQ(std::string(buffer, size), std::string(size, '\0'));
}

// --listen (issue 13): the advertise address defaults to it; only the
// OpenSSL build has the gRPC transport.
TEST(NodeHostTest, ListenFlagAndItsBuild) {
  auto parse = [](std::vector<std::string> v) {
    std::vector<char*> argv;
    for (std::string& s : v) argv.push_back(s.data());
    return ParseNodeFlags(argv.size(), argv.data());
  };
  absl::StatusOr<NodeConfig> c =
      parse({"node", "--dir=/d", "--node-id=n", "--listen=127.0.0.1:7001"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listen, "127.0.0.1:7001");
  EXPECT_EQ(c->advertise, "127.0.0.1:7001");
  c = parse({"node", "--dir=/d", "--node-id=n", "--listen=0.0.0.0:7001",
             "--advertise=10.0.0.1:7001"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->advertise, "10.0.0.1:7001");
  c = parse({"node", "--dir=/d", "--node-id=n"});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);

  NodeConfig config = Config(NewDir("listen"), "n1");
  config.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(config);
#if STRONGBOX_NODE_HAS_ETCD
  EXPECT_TRUE(host.ok()) << host.status();
#else
  EXPECT_EQ(host.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(host.status().message().find("--config=openssl"),
            absl::string_view::npos)
      << host.status();
#endif
}

TEST(NodeHostTest, CasPutAndGetMin) {
  absl::StatusOr<std::unique_ptr<NodeHost>> host =
      NodeHost::Open(Config(NewDir("cas"), "n1"));
  ASSERT_TRUE(host.ok()) << host.status();
  NodeHost& h = **host;
  InitAndUnseal({&h});
  ASSERT_TRUE(AwaitState(&h, "active"));
  JsonValue put = Parse(h.HandleLine("cas-put app/a 0 v=1"));
  ASSERT_TRUE(put.GetBool("ok")) << h.HandleLine("status");
  EXPECT_EQ(put.GetInt("version"), 1);
  const int64_t index = put.GetInt("index");
  EXPECT_GT(index, 0);
  EXPECT_EQ(Parse(h.HandleLine("cas-put app/a 0 v=2")).GetString("code"),
            "ABORTED");
  EXPECT_TRUE(Parse(h.HandleLine("cas-put app/a 1 v=2")).GetBool("ok"));
  JsonValue got = Parse(h.HandleLine(absl::StrCat("get-min app/a ", index)));
  ASSERT_TRUE(got.GetBool("ok"));
  EXPECT_EQ(got.Find("data")->GetString("v"), "2");
  for (const char* bad : {"cas-put app/a", "cas-put app/a x v=1",
                          "get-min app/a", "get-min app/a -1"}) {
    EXPECT_EQ(Parse(h.HandleLine(bad)).GetString("code"), "INVALID_ARGUMENT")
        << bad;
  }
}

}  // namespace
}  // namespace node
}  // namespace strongbox

namespace strongbox {
namespace node {
namespace {

std::string WriteKeyFile(const std::string& name, const std::string& text) {
  const std::string path = NewDir(name);
  std::ofstream(path) << text;
  return path;
}

constexpr char kKek1[] =
    "kek-1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
constexpr char kKek2[] =
    "kek-2 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f\n";

std::vector<std::string> Strings(const JsonValue& v, const std::string& key) {
  std::vector<std::string> out;
  const JsonValue* array = v.Find(key);
  if (array == nullptr) return out;
  for (const JsonValue& s : array->array) out.push_back(s.string);
  return out;
}

// No share (hex) in an answer that refused it.
void ExpectRefused(const std::string& answer, const std::string& code,
                   const std::vector<std::string>& shares) {
  EXPECT_EQ(Parse(answer).GetString("code"), code) << answer;
  for (const std::string& s : shares) {
    EXPECT_FALSE(absl::StrContains(answer, s)) << answer;
  }
}

TEST(NodeFlagsTest, WrapperKeyFileExcludesPkcs11) {
  std::vector<std::string> args = {"node",
                                   "--dir=/d",
                                   "--node-id=n1",
                                   "--advertise=a:1",
                                   "--wrapper-key-file=/k",
                                   "--pkcs11-module=/m",
                                   "--pkcs11-token=t",
                                   "--pkcs11-pin-file=/p",
                                   "--pkcs11-key=k"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(ParseNodeFlags(argv.size(), argv.data()).status().code(),
            absl::StatusCode::kInvalidArgument);
  argv.resize(5);
  absl::StatusOr<NodeConfig> c = ParseNodeFlags(argv.size(), argv.data());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->wrapper_key_file, "/k");
}

TEST(NodeHostTest, BadWrapperKeyFileIsRefusedAtOpen) {
  NodeConfig c = Config(NewDir("badkey"), "n1");
  c.wrapper_key_file = WriteKeyFile("badkey", "kek-1 00ff\n");
  absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(c);
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(absl::StrContains(host.status().message(), "00ff"));
  c.wrapper_key_file = NewDir("missing");
  EXPECT_EQ(NodeHost::Open(c).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// The seal commands (issue 14) on one node: Shamir -> auto with the unseal
// shares, rekey of the recovery key, wrapper key rotation and auto ->
// Shamir, each authorized by a threshold of the shares of the moment.
TEST(NodeHostTest, SealMigrationRotationAndRekeyCommands) {
  const std::string dir = NewDir("migrate");
  std::vector<std::string> shares;
  {
    absl::StatusOr<std::unique_ptr<NodeHost>> host =
        NodeHost::Open(Config(dir, "n1"));
    ASSERT_TRUE(host.ok()) << host.status();
    shares = InitAndUnseal({host->get()});
    ASSERT_TRUE(AwaitState(host->get(), "active"));
    EXPECT_EQ((*host)->HandleLine("put app/x a=1"),
              R"({"ok":true,"version":1})");
    // No wrapper: migrating to auto is refused.
    ExpectRefused(
        (*host)->HandleLine("migrate-to-auto " + shares[0] + " " + shares[1]),
        "FAILED_PRECONDITION", shares);
  }
  NodeConfig with_key = Config(dir, "n1");
  with_key.wrapper_key_file = WriteKeyFile("key1", kKek1);
  {
    absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(with_key);
    ASSERT_TRUE(host.ok()) << host.status();
    NodeHost& h = **host;
    JsonValue status = Parse(h.HandleLine("status"));
    EXPECT_EQ(status.GetString("seal_type"), "shamir");
    EXPECT_TRUE(status.GetBool("sealed"));
    h.HandleLine("unseal " + shares[0]);
    h.HandleLine("unseal " + shares[1]);
    ASSERT_TRUE(AwaitState(&h, "active"));
    for (const char* bad :
         {"migrate-to-auto", "migrate-to-auto zz", "rekey 2", "rekey x 2 00",
          "rekey-cancel now", "rotate-wrapper-key", "rekey-complete"}) {
      EXPECT_EQ(Parse(h.HandleLine(bad)).GetString("code"), "INVALID_ARGUMENT")
          << bad;
    }
    ExpectRefused(h.HandleLine("migrate-to-auto " + shares[2]),
                  "INVALID_ARGUMENT", shares);
    EXPECT_EQ(h.HandleLine("migrate-to-auto " + shares[0] + " " + shares[2]),
              R"({"ok":true})");
    EXPECT_EQ(Parse(h.HandleLine("status")).GetString("seal_type"), "software");

    // Rekey of the recovery key: the unseal shares are recovery shares now.
    ExpectRefused(h.HandleLine("rekey 3 2 " + shares[1]), "INVALID_ARGUMENT",
                  shares);
    JsonValue rekey =
        Parse(h.HandleLine("rekey 3 2 " + shares[1] + " " + shares[2]));
    std::vector<std::string> fresh = Strings(rekey, "recovery_shares");
    ASSERT_EQ(fresh.size(), 3u) << h.HandleLine("status");
    status = Parse(h.HandleLine("status"));
    EXPECT_TRUE(status.GetBool("rekey_pending"));
    EXPECT_EQ(status.GetInt("rekey_shares"), 3);
    EXPECT_EQ(h.HandleLine("rekey-complete " + fresh[0] + " " + fresh[2]),
              R"({"ok":true})");
    EXPECT_EQ(Parse(h.HandleLine("status")).Find("rekey_pending"), nullptr);
    ExpectRefused(
        h.HandleLine("migrate-to-shamir " + shares[0] + " " + shares[1]),
        "INVALID_ARGUMENT", shares);
    shares = fresh;
    EXPECT_EQ(h.HandleLine("rotate-wrapper-key " + shares[0] + " " + shares[1]),
              R"({"ok":true,"rewrapped":false})");
    // A cancelled rekey leaves the shares as they are.
    ASSERT_EQ(
        Strings(Parse(h.HandleLine("rekey 2 2 " + shares[0] + " " + shares[1])),
                "recovery_shares")
            .size(),
        2u);
    EXPECT_EQ(h.HandleLine("rekey-cancel"), R"({"ok":true})");
  }
  // A new wrapper key (the old one kept): the nodes restart with both, the
  // rotation needs the recovery shares.
  with_key.wrapper_key_file = WriteKeyFile("key12", std::string(kKek1) + kKek2);
  {
    absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(with_key);
    ASSERT_TRUE(host.ok()) << host.status();
    NodeHost& h = **host;
    ASSERT_TRUE(AwaitState(&h, "active"));  // unsealed itself
    ExpectRefused(h.HandleLine("rotate-wrapper-key " + shares[0]),
                  "INVALID_ARGUMENT", shares);
    EXPECT_EQ(h.HandleLine("rotate-wrapper-key " + shares[0] + " " + shares[1]),
              R"({"ok":true,"rewrapped":true})");
  }
  with_key.wrapper_key_file = WriteKeyFile("key2", kKek2);  // old key gone
  {
    absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(with_key);
    ASSERT_TRUE(host.ok()) << host.status();
    NodeHost& h = **host;
    ASSERT_TRUE(AwaitState(&h, "active"));
    EXPECT_EQ(h.HandleLine("get app/x"),
              R"({"ok":true,"version":1,"data":{"a":"1"}})");
    EXPECT_EQ(h.HandleLine("migrate-to-shamir " + shares[1] + " " + shares[2]),
              R"({"ok":true})");
    EXPECT_EQ(Parse(h.HandleLine("status")).GetString("seal_type"), "shamir");
  }
  // Shamir again: the (rekeyed) shares unseal.
  absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(with_key);
  ASSERT_TRUE(host.ok()) << host.status();
  NodeHost& h = **host;
  h.HandleLine("unseal " + shares[0]);
  EXPECT_FALSE(
      Parse(h.HandleLine("unseal " + shares[2])).GetBool("sealed", true));
  ASSERT_TRUE(AwaitState(&h, "active"));
  EXPECT_EQ(h.HandleLine("get app/x"),
            R"({"ok":true,"version":1,"data":{"a":"1"}})");
}

}  // namespace
}  // namespace node
}  // namespace strongbox
