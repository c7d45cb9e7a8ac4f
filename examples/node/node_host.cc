#include "examples/node/node_host.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "examples/node/json.h"
#include "examples/node/key_file_wrapper.h"
#include "examples/node/test_seams.h"
#include "lib/util/base64.h"
#include "strongbox/requests.pb.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/status_macros.h"

namespace strongbox {
namespace node {
namespace {

constexpr int64_t kMinTtlMs = 40;
constexpr int64_t kMaxTtlMs = 600000;

// Overwrites a string that held a share or a secret value before it is
// freed (invariant D5): all of its buffer, up to its capacity.
void Wipe(std::string* s) {
  s->resize(s->capacity());
  WipeString(*s);
}

// Wipes a request or response that carried secrets when it goes out of
// scope, whichever way the command returns.
class WipeOnExit {
 public:
  explicit WipeOnExit(google::protobuf::Message* message) : message_(message) {}
  ~WipeOnExit() { WipeMessage(message_); }
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;

 private:
  google::protobuf::Message* const message_;
};

// A field name that ends in this takes its value in base64: K:b64=BASE64.
constexpr absl::string_view kBase64Suffix = ":b64";

absl::StatusOr<std::string> DecodeHex(absl::string_view hex) {
  if (hex.empty() || hex.size() % 2 != 0) {
    return absl::InvalidArgumentError(
        "share must be a non-empty even-length hex string");
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("share is not hex");
    }
  }
  return absl::HexStringToBytes(hex);
}

absl::StatusOr<int> ParseCount(absl::string_view word, const char* what) {
  int value;
  if (!absl::SimpleAtoi(word, &value) || value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a non-negative integer"));
  }
  return value;
}

std::string Ok() { return JsonObjectWriter().Bool("ok", true).Finish(); }

// `line` after its first `n` words and the blanks that follow them.
absl::string_view RestAfterWords(absl::string_view line, int n) {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  size_t i = 0;
  while (i < line.size() && blank(line[i])) ++i;
  for (int w = 0; w < n; ++w) {
    while (i < line.size() && !blank(line[i])) ++i;
    while (i < line.size() && blank(line[i])) ++i;
  }
  absl::string_view rest = line.substr(i);
  while (!rest.empty() && blank(rest.back())) rest.remove_suffix(1);
  return rest;
}

}  // namespace

// Logs every state change to stderr (stdout carries only the protocol).
class NodeHost::StateLogger : public HaObserver {
 public:
  explicit StateLogger(std::string node_id) : node_id_(std::move(node_id)) {}
  void OnStateChange(const StateChange& change) override {
    std::string line = absl::StrCat("strongbox_node[", node_id_,
                                    "]: ", HaStateName(change.from), " -> ",
                                    HaStateName(change.to));
    if (!change.reason.empty())
      absl::StrAppend(&line, " (", change.reason, ")");
    if (change.fence != kNoFence)
      absl::StrAppend(&line, " fence ", change.fence);
    line.push_back('\n');
    std::fputs(line.c_str(), stderr);
  }
  // A takeover of this node waits on a holder hung inside an LMDB write,
  // or that holder was killed.
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override {
    const std::string line = absl::StrCat(
        "strongbox_node[", node_id_, "]: takeover ",
        event.kind == BlockedTakeoverEvent::Kind::kHolderKilled
            ? "killed hung holder"
            : "waiting on holder",
        " pid ", event.pid, " (fence ", event.fence, "): ", event.reason, "\n");
    std::fputs(line.c_str(), stderr);
  }

 private:
  const std::string node_id_;
};

std::string NodeUsage() {
  return absl::StrCat(
      "usage: strongbox_node (--dir=DIR | --etcd=URL[,URL...] "
      "[--etcd-prefix=P] [--etcd-ca=F --etcd-cert=F --etcd-key=F]) "
      "--node-id=ID --advertise=ADDR "
      "[--perf-standby] [--lease-ttl-ms=N] [--no-kill-hung-holder] "
      "[--audit-file=F] [--listen=HOST:PORT] [--wrapper-key-file=F]",
      Pkcs11Usage());
}

absl::StatusOr<NodeConfig> ParseNodeFlags(int argc, char** argv) {
  NodeConfig config;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    absl::string_view value;
    const auto take = [&](absl::string_view name) {
      if (!absl::StartsWith(arg, name)) return false;
      value = arg.substr(name.size());
      return true;
    };
    if (take("--dir=")) {
      config.dir = std::string(value);
    } else if (take("--etcd=")) {
      config.etcd_endpoints = absl::StrSplit(value, ',', absl::SkipEmpty());
      if (config.etcd_endpoints.empty()) {
        return absl::InvalidArgumentError("--etcd needs at least one URL");
      }
    } else if (take("--etcd-prefix=")) {
      config.etcd_prefix = std::string(value);
    } else if (take("--etcd-ca=")) {
      config.etcd_ca = std::string(value);
    } else if (take("--etcd-cert=")) {
      config.etcd_cert = std::string(value);
    } else if (take("--etcd-key=")) {
      config.etcd_key = std::string(value);
    } else if (take("--node-id=")) {
      config.node_id = std::string(value);
    } else if (take("--advertise=")) {
      config.advertise = std::string(value);
    } else if (take("--listen=")) {
      config.listen = std::string(value);
    } else if (arg == "--perf-standby") {
      config.perf_standby = true;
    } else if (take("--audit-file=")) {
      if (value.empty()) {
        return absl::InvalidArgumentError("--audit-file needs a file name");
      }
      config.audit_file = std::string(value);
    } else if (arg == "--no-kill-hung-holder") {
      config.kill_hung_holder = false;
    } else if (take("--lease-ttl-ms=")) {
      int64_t ms;
      if (!absl::SimpleAtoi(value, &ms) || ms < kMinTtlMs || ms > kMaxTtlMs) {
        return absl::InvalidArgumentError(
            absl::StrCat("--lease-ttl-ms must be an integer in [", kMinTtlMs,
                         ", ", kMaxTtlMs, "]"));
      }
      config.lease_ttl = absl::Milliseconds(ms);
    } else if (take("--wrapper-key-file=")) {
      if (value.empty()) {
        return absl::InvalidArgumentError(
            "--wrapper-key-file needs a file name");
      }
      config.wrapper_key_file = std::string(value);
    } else if (absl::StartsWith(arg, "--pkcs11-")) {
      STRONGBOX_RETURN_IF_ERROR(ParsePkcs11Flag(arg, &config.pkcs11).status());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument '", arg, "'"));
    }
  }
  STRONGBOX_RETURN_IF_ERROR(ValidatePkcs11Config(config.pkcs11));
  if (config.pkcs11.enabled() && !config.wrapper_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--wrapper-key-file and --pkcs11-* exclude each other");
  }
  if (config.dir.empty() == config.etcd_endpoints.empty()) {
    return absl::InvalidArgumentError(
        "exactly one of --dir and --etcd is required");
  }
  if (config.node_id.empty()) {
    return absl::InvalidArgumentError("--node-id is required");
  }
  if (config.advertise.empty()) config.advertise = config.listen;
  if (config.advertise.empty()) {
    return absl::InvalidArgumentError("--advertise is required");
  }
  return config;
}

absl::Duration HungHolderGrace(absl::Duration lease_ttl) {
  return std::max(lease_ttl, kMinHungHolderGrace);
}

NodeHost::NodeHost(const NodeConfig& config) : config_(config) {}

NodeHost::~NodeHost() {
  if (transport_ != nullptr) transport_->StopServing();
  store_.reset();
  transport_.reset();
  coordinator_.reset();
  key_wrapper_.reset();  // after the coordinator that uses it
  if (logger_ != nullptr) logger_.reset();
  backend_.reset();
}

absl::StatusOr<std::unique_ptr<NodeHost>> NodeHost::Open(
    const NodeConfig& config) {
  if (!config.etcd_endpoints.empty()) {
    absl::StatusOr<std::unique_ptr<Backend>> etcd = OpenNodeEtcdBackend(config);
    if (!etcd.ok()) return etcd.status();
    return OpenWithBackend(config, *std::move(etcd));
  }
  LmdbBackendOptions backend_options;
  backend_options.kill_hung_holder = config.kill_hung_holder;
  backend_options.hung_holder_grace = HungHolderGrace(config.lease_ttl);
  absl::StatusOr<std::unique_ptr<LmdbBackend>> backend =
      LmdbBackend::Open(config.dir, backend_options);
  if (!backend.ok()) return backend.status();
  return OpenWithBackend(config, BackendWithTestSeams(*std::move(backend)));
}

absl::StatusOr<std::unique_ptr<NodeHost>> NodeHost::OpenWithBackend(
    const NodeConfig& config, std::unique_ptr<Backend> backend) {
  if (backend == nullptr) {
    return absl::InvalidArgumentError("a backend is required");
  }
  std::unique_ptr<NodeHost> host(new NodeHost(config));
  host->backend_ = std::move(backend);
  host->logger_ = std::make_unique<StateLogger>(config.node_id);

  HaCoordinator::Options options;
  options.backend = host->backend_.get();
  options.node_id = config.node_id;
  options.advertise_address = config.advertise;
  options.standby_mode =
      config.perf_standby ? StandbyMode::kPerfStandby : StandbyMode::kStandby;
  options.lease_ttl = config.lease_ttl;
  options.renew_interval = config.lease_ttl / 4;
  options.leader_refresh =
      std::min(config.lease_ttl / 4, absl::Milliseconds(500));
  options.step_down_pause = config.lease_ttl / 2;
  if (config.pkcs11.enabled()) {
    // Auto-unseal (pkcs11_node.h): the node unseals itself at start.
    STRONGBOX_ASSIGN_OR_RETURN(host->key_wrapper_,
                               OpenNodeKeyWrapper(config.pkcs11));
  } else if (!config.wrapper_key_file.empty()) {
    STRONGBOX_ASSIGN_OR_RETURN(host->key_wrapper_,
                               OpenKeyFileWrapper(config.wrapper_key_file));
  }
  if (host->key_wrapper_ != nullptr) {
    host->key_wrapper_ = KeyWrapperWithTestSeams(std::move(host->key_wrapper_));
    options.key_wrapper = host->key_wrapper_.get();
  }
  STRONGBOX_ASSIGN_OR_RETURN(std::unique_ptr<HaCoordinator> coordinator,
                             HaCoordinator::Create(std::move(options)));
  host->coordinator_ = std::move(coordinator);
  host->coordinator_->AddObserver(host->logger_.get());

  STRONGBOX_RETURN_IF_ERROR(host->OpenTransport());
  SecretStore::Options store_options;
  store_options.coordinator = host->coordinator_.get();
  if (!config.audit_file.empty()) {
    FileAuditSinkOptions sink_options;
    sink_options.path = config.audit_file;
    STRONGBOX_ASSIGN_OR_RETURN(host->audit_sink_,
                               NewFileAuditSink(sink_options));
    store_options.audit_sinks.push_back({"file", host->audit_sink_.get()});
  }
  if (host->transport_ != nullptr) {
    store_options.forwarder = host->transport_->forwarder();
  }
  STRONGBOX_ASSIGN_OR_RETURN(std::unique_ptr<SecretStore> store,
                             SecretStore::Create(store_options));
  host->store_ = std::move(store);
  STRONGBOX_RETURN_IF_ERROR(host->ServeTransport());
  return host;
}

// cas-put PATH CAS K=V [K=V...]: a check-and-set write (CAS 0: only if
// absent), answering the index too. get-min PATH MIN_INDEX: a read that
// first waits for this node to reach MIN_INDEX (SecretStore's min_index).
// For clients that read their writes on another node (the transport tests).
std::string NodeHost::CasPutOrGetMin(
    const std::vector<absl::string_view>& words) {
  const bool put = words[0] == "cas-put";
  if (put ? words.size() < 4 : words.size() != 3) {
    return Failure(
        absl::InvalidArgumentError(put ? "usage: cas-put PATH CAS K=V [K=V...]"
                                       : "usage: get-min PATH MIN_INDEX"));
  }
  uint64_t number;
  if (!absl::SimpleAtoi(words[2], &number)) {
    return Failure(absl::InvalidArgumentError(
        put ? "CAS must be a non-negative integer"
            : "MIN_INDEX must be a non-negative integer"));
  }
  return put ? Put(words, 3, number) : Get(words[1], number);
}

absl::Status NodeHost::OpenTransport() {
  if (config_.listen.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<NodeTransport>> transport =
      OpenNodeTransport(config_, coordinator_.get());
  if (!transport.ok()) return transport.status();
  transport_ = *std::move(transport);
  return absl::OkStatus();
}

absl::Status NodeHost::ServeTransport() {
  if (transport_ == nullptr) return absl::OkStatus();
  return transport_->Serve(store_.get());
}

std::string NodeHost::Failure(const absl::Status& status,
                              absl::string_view leader_hint) {
  JsonObjectWriter out;
  out.Bool("ok", false)
      .String("code", absl::StatusCodeToString(status.code()))
      .String("error", status.message());
  std::string leader(leader_hint);
  if (leader.empty()) {
    if (std::optional<RouteHint> hint = GetRouteHint(status)) {
      leader = hint->leader_address;
    }
  }
  if (coordinator_ != nullptr) {
    if (leader.empty()) {
      absl::StatusOr<LeaderInfo> info = coordinator_->Leader();
      if (info.ok() && !info->is_self) leader = info->address;
    }
    // "leader" tells a client where to go instead; the active node (one
    // that may still serve writes) never sends it elsewhere.
    if (coordinator_->Route(OperationKind::kWrite).action ==
        RouteDecision::Action::kServeLocally) {
      leader.clear();
    }
  }
  if (leader == config_.advertise) leader.clear();
  if (!leader.empty()) out.String("leader", leader);
  return out.Finish();
}

std::string NodeHost::HandleLine(std::string* line) {
  std::string answer = HandleLine(absl::string_view(*line));
  Wipe(line);
  return answer;
}

std::string NodeHost::HandleLine(absl::string_view line) {
  absl::ConsumeSuffix(&line, "\r");
  if (line.size() > kMaxLineBytes) {
    return Failure(absl::InvalidArgumentError(
        absl::StrCat("line longer than ", kMaxLineBytes, " bytes")));
  }
  if (!IsValidUtf8(line) || line.find('\0') != absl::string_view::npos) {
    return Failure(absl::InvalidArgumentError("line is not valid UTF-8 text"));
  }
  std::vector<absl::string_view> words =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.empty()) return Failure(absl::InvalidArgumentError("empty line"));
  const absl::string_view command = words[0];
  const auto arity = [&](size_t n, const char* usage) -> absl::Status {
    if (words.size() == n + 1) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("usage: ", usage));
  };
  absl::Status bad;
  if (command == "as") return As(line);
  if (absl::StartsWith(command, "policy-")) {
    return PolicyCommand(command, RestAfterWords(line, 1));
  }
  if (as_.has_value() && command != "put" && command != "get") {
    return Failure(absl::InvalidArgumentError(
        "as: only put, get and policy-* commands run as a caller"));
  }
  if (command == "init") {
    if (!(bad = arity(2, "init SHARES THRESHOLD")).ok()) return Failure(bad);
    return Init(words[1], words[2]);
  }
  if (command == "unseal") {
    if (!(bad = arity(1, "unseal HEX_SHARE")).ok()) return Failure(bad);
    return Unseal(words[1]);
  }
  if (command == "auto-unseal") {
    if (!(bad = arity(0, "auto-unseal")).ok()) return Failure(bad);
    absl::StatusOr<SealStatus> s = coordinator_->AutoUnseal();
    if (!s.ok()) return Failure(s.status());
    return JsonObjectWriter()
        .Bool("ok", true)
        .Bool("sealed", s->sealed)
        .Finish();
  }
  if (command == "migrate-to-auto" || command == "migrate-to-shamir" ||
      command == "rotate-wrapper-key" || command == "rekey" ||
      command == "rekey-complete" || command == "rekey-cancel") {
    return SealCommand(words);
  }
  if (command == "status") {
    if (!(bad = arity(0, "status")).ok()) return Failure(bad);
    return Status();
  }
  if (command == "put") {
    if (words.size() < 3) {
      return Failure(
          absl::InvalidArgumentError("usage: put PATH K=V [K=V...]"));
    }
    return Put(words);
  }
  if (command == "get") {
    if (!(bad = arity(1, "get PATH")).ok()) return Failure(bad);
    return Get(words[1]);
  }
  if (command == "cas-put" || command == "get-min") {
    return CasPutOrGetMin(words);
  }
  if (command == "step-down") {
    if (!(bad = arity(0, "step-down")).ok()) return Failure(bad);
    absl::Status s = coordinator_->StepDown();
    return s.ok() ? Ok() : Failure(s);
  }
  if (command == "seal") {
    if (!(bad = arity(0, "seal")).ok()) return Failure(bad);
    absl::Status s = coordinator_->Seal();
    return s.ok() ? Ok() : Failure(s);
  }
  // Never echo the input: an unknown command may be a share or a secret
  // pasted on its own.
  return Failure(absl::InvalidArgumentError(
      "unknown command; commands: init, unseal, auto-unseal, status, put, get, "
      "cas-put, get-min, step-down, seal, migrate-to-auto, migrate-to-shamir, "
      "rotate-wrapper-key, rekey, rekey-complete, rekey-cancel, policy-put, "
      "policy-get, policy-delete, policy-list, as, quit"));
}

// ---- Policies and callers (issue 15).

std::string NodeHost::As(absl::string_view line) {
  std::vector<absl::string_view> words =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (words.size() < 4) {
    return Failure(absl::InvalidArgumentError(
        "usage: as CALLER POLICY[,POLICY...] COMMAND..."));
  }
  if (as_.has_value() || words[3] == "as") {
    return Failure(absl::InvalidArgumentError("as: one caller per command"));
  }
  std::vector<std::string> policies =
      absl::StrSplit(words[2], ',', absl::SkipEmpty());
  as_ = CallContext::As(std::string(words[1]), std::move(policies));
  std::string answer = HandleLine(RestAfterWords(line, 3));
  as_.reset();
  return answer;
}

std::string NodeHost::PolicyCommand(absl::string_view command,
                                    absl::string_view rest) {
  std::vector<absl::string_view> args =
      absl::StrSplit(rest, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  store::Request request;
  if (command == "policy-put") {
    if (args.size() < 2) {
      return Failure(absl::InvalidArgumentError(
          "usage: policy-put NAME <policy JSON on one line>"));
    }
    request.mutable_policy_put()->set_name(std::string(args[0]));
    request.mutable_policy_put()->set_document(
        std::string(RestAfterWords(rest, 1)));
  } else if (command == "policy-get" || command == "policy-delete") {
    if (args.size() != 1) {
      return Failure(absl::InvalidArgumentError(
          absl::StrCat("usage: ", command, " NAME")));
    }
    (command == "policy-get" ? request.mutable_policy_get()
                             : request.mutable_policy_delete())
        ->set_name(std::string(args[0]));
  } else if (command == "policy-list") {
    if (!args.empty()) {
      return Failure(absl::InvalidArgumentError("usage: policy-list"));
    }
    request.mutable_policy_list();
  } else {
    return Failure(absl::InvalidArgumentError(
        "unknown command; policy commands: policy-put, policy-get, "
        "policy-delete, policy-list"));
  }
  store::Response response = store_->Handle(request, caller());
  absl::Status status = ResponseStatus(response);
  if (!status.ok()) return Failure(status, response.leader_address());
  JsonObjectWriter out;
  out.Bool("ok", true);
  if (response.has_policy()) {
    out.String("name", response.policy().name())
        .String("policy", response.policy().document());
  } else if (response.has_policy_list()) {
    std::vector<std::string> names(response.policy_list().names().begin(),
                                   response.policy_list().names().end());
    out.StringArray("policies", names);
  } else {
    out.String("index", absl::StrCat(response.index()));
  }
  return out.Finish();
}

std::string NodeHost::Init(absl::string_view shares_word,
                           absl::string_view threshold_word) {
  absl::StatusOr<int> shares = ParseCount(shares_word, "SHARES");
  if (!shares.ok()) return Failure(shares.status());
  absl::StatusOr<int> threshold = ParseCount(threshold_word, "THRESHOLD");
  if (!threshold.ok()) return Failure(threshold.status());
  absl::StatusOr<std::vector<std::string>> result =
      coordinator_->Initialize(*shares, *threshold);
  if (!result.ok()) return Failure(result.status());
  std::vector<std::string> hex;
  hex.reserve(result->size());
  for (std::string& share : *result) {
    hex.push_back(absl::BytesToHexString(share));
    Wipe(&share);
  }
  // With a key wrapper they are recovery shares (the node unseals itself).
  std::string answer =
      JsonObjectWriter()
          .Bool("ok", true)
          .StringArray(key_wrapper_ != nullptr ? "recovery_shares" : "shares",
                       hex)
          .Finish();
  for (std::string& h : hex) Wipe(&h);
  return answer;
}

std::string NodeHost::Unseal(absl::string_view hex) {
  absl::StatusOr<std::string> share = DecodeHex(hex);
  if (!share.ok()) return Failure(share.status());
  absl::StatusOr<SealStatus> result = coordinator_->Unseal(*share);
  Wipe(&*share);
  if (!result.ok()) return Failure(result.status());
  return JsonObjectWriter()
      .Bool("ok", true)
      .Bool("sealed", result->sealed)
      .Int("progress", result->progress)
      .Int("threshold", result->threshold)
      .Finish();
}

// Seal migration, wrapper key rotation and rekey (issue 14): the shares
// arrive in hex, are decoded into strings wiped on every way out, and are
// never echoed.
std::string NodeHost::SealCommand(const std::vector<absl::string_view>& words) {
  const absl::string_view command = words[0];
  size_t first_share = 1;
  int new_shares = 0, new_threshold = 0;
  const char* usage = nullptr;
  if (command == "migrate-to-auto") {
    usage = "migrate-to-auto SHARE...";
  } else if (command == "migrate-to-shamir") {
    usage = "migrate-to-shamir RECOVERY_SHARE...";
  } else if (command == "rotate-wrapper-key") {
    usage = "rotate-wrapper-key RECOVERY_SHARE...";
  } else if (command == "rekey") {
    usage = "rekey NEW_SHARES NEW_THRESHOLD SHARE...";
    first_share = 3;
  } else if (command == "rekey-complete") {
    usage = "rekey-complete NEW_SHARE...";
  } else {
    if (words.size() != 1) {
      return Failure(absl::InvalidArgumentError("usage: rekey-cancel"));
    }
    absl::Status s = coordinator_->CancelRekey();
    return s.ok() ? Ok() : Failure(s);
  }
  if (words.size() <= first_share) {
    return Failure(absl::InvalidArgumentError(absl::StrCat("usage: ", usage)));
  }
  if (command == "rekey") {
    absl::StatusOr<int> n = ParseCount(words[1], "NEW_SHARES");
    if (!n.ok()) return Failure(n.status());
    absl::StatusOr<int> t = ParseCount(words[2], "NEW_THRESHOLD");
    if (!t.ok()) return Failure(t.status());
    new_shares = *n;
    new_threshold = *t;
  }
  struct WipedShares {
    std::vector<std::string> v;
    ~WipedShares() {
      for (std::string& s : v) Wipe(&s);
    }
  } shares;
  shares.v.reserve(words.size() - first_share);
  for (size_t i = first_share; i < words.size(); ++i) {
    absl::StatusOr<std::string> share = DecodeHex(words[i]);
    if (!share.ok()) return Failure(share.status());
    shares.v.push_back(*std::move(share));
  }
  if (command == "migrate-to-auto") {
    absl::Status s = coordinator_->MigrateSealToAuto(shares.v);
    return s.ok() ? Ok() : Failure(s);
  }
  if (command == "migrate-to-shamir") {
    absl::Status s = coordinator_->MigrateSealToShamir(shares.v);
    return s.ok() ? Ok() : Failure(s);
  }
  if (command == "rotate-wrapper-key") {
    absl::StatusOr<bool> rewrapped = coordinator_->RotateWrapperKey(shares.v);
    if (!rewrapped.ok()) return Failure(rewrapped.status());
    return JsonObjectWriter()
        .Bool("ok", true)
        .Bool("rewrapped", *rewrapped)
        .Finish();
  }
  if (command == "rekey-complete") {
    absl::Status s = coordinator_->CompleteRekey(shares.v);
    return s.ok() ? Ok() : Failure(s);
  }
  absl::StatusOr<std::vector<std::string>> result =
      coordinator_->Rekey(shares.v, new_shares, new_threshold);
  if (!result.ok()) return Failure(result.status());
  WipedShares hex;
  hex.v.reserve(result->size());
  for (std::string& share : *result) {
    hex.v.push_back(absl::BytesToHexString(share));
    Wipe(&share);
  }
  // Recovery shares when the stored seal is auto.
  const bool recovery = coordinator_->Status().seal_type != "shamir";
  return JsonObjectWriter()
      .Bool("ok", true)
      .StringArray(recovery ? "recovery_shares" : "shares", hex.v)
      .Finish();
}

std::string NodeHost::Status() {
  HaStatus s = coordinator_->Status();
  JsonObjectWriter out;
  out.Bool("ok", true)
      .Bool("initialized", s.initialized)
      .Bool("sealed", s.sealed)
      .String("state", HaStateName(s.state));
  if (!s.leader_address.empty()) {
    out.String("leader", s.leader_address)
        .String("fence", absl::StrCat(s.fence));
  }
  // A takeover that waits on a holder hung inside an LMDB write (it holds
  // LMDB's writer lock): said, not silently waited out. The coordinator
  // carries the backend's report (HaStatus), whatever the backend.
  if (s.takeover_waiting.has_value()) {
    out.StringObject("takeover_waiting",
                     {{"pid", absl::StrCat(s.takeover_waiting->pid)},
                      {"fence", absl::StrCat(s.takeover_waiting->fence)},
                      {"holder", s.takeover_waiting->holder},
                      {"reason", s.takeover_waiting->reason}});
  }
  if (s.holders_killed > 0) {
    out.Int("hung_holders_killed", static_cast<int64_t>(s.holders_killed));
  }
  // Auto-unseal (pkcs11_node.h): the seal's kind, and why a sealed node
  // is not unsealing itself (the key wrapper's last error).
  // Present with --pkcs11-* or an auto-sealed store only, so the answers
  // of plain Shamir nodes keep their shape.
  if (key_wrapper_ != nullptr || s.seal_type != "shamir") {
    out.String("seal_type", s.seal_type);
  }
  if (s.sealed && !s.seal_error.empty()) out.String("seal_error", s.seal_error);
  if (s.rekey_pending) {
    out.Bool("rekey_pending", true)
        .Int("rekey_shares", s.rekey_shares)
        .Int("rekey_threshold", s.rekey_threshold);
  }
  return out.Finish();
}

std::string NodeHost::Put(const std::vector<absl::string_view>& words,
                          size_t first_field, std::optional<uint64_t> cas) {
  store::Request request;
  WipeOnExit wipe_request(&request);
  store::KvPutRequest* put = request.mutable_kv_put();
  put->set_path(std::string(words[1]));
  if (cas.has_value()) put->set_cas(*cas);
  std::set<absl::string_view> seen;
  for (size_t i = first_field; i < words.size(); ++i) {
    const size_t eq = words[i].find('=');
    absl::string_view key = words[i].substr(0, eq);
    const bool b64 = absl::ConsumeSuffix(&key, kBase64Suffix);
    if (eq == absl::string_view::npos || key.empty()) {
      return Failure(absl::InvalidArgumentError(
          absl::StrCat("field ", i - 1, " is not K=V with a non-empty K")));
    }
    if (!seen.insert(key).second) {
      return Failure(absl::InvalidArgumentError(
          absl::StrCat("field '", key, "' is given twice")));
    }
    std::string& value = (*put->mutable_data())[std::string(key)];
    const absl::string_view text = words[i].substr(eq + 1);
    if (!b64) {
      value.assign(text.data(), text.size());
    } else if (!Base64Decode(text, &value)) {
      // Never echo the value.
      return Failure(absl::InvalidArgumentError(
          absl::StrCat("field '", key, "': the value after ", kBase64Suffix,
                       "= is not canonical base64")));
    }
  }
  store::Response response = store_->Handle(request, caller());
  WipeOnExit wipe_response(&response);
  absl::Status status = ResponseStatus(response);
  if (!status.ok()) return Failure(status, response.leader_address());
  JsonObjectWriter out;
  out.Bool("ok", true)
      .Int("version", static_cast<int64_t>(response.kv_write().version()));
  // cas-put: the index, for get-min on another node.
  if (cas.has_value()) {
    out.Int("index", static_cast<int64_t>(response.index()));
  }
  return out.Finish();
}

std::string NodeHost::Get(absl::string_view path, uint64_t min_index) {
  store::Request request;
  request.mutable_kv_get()->set_path(std::string(path));
  if (min_index > 0) request.set_min_index(min_index);
  store::Response response = store_->Handle(request, caller());
  WipeOnExit wipe_response(&response);
  absl::Status status = ResponseStatus(response);
  if (!status.ok()) return Failure(status, response.leader_address());
  const store::KvSecret& secret = response.kv_secret();
  // Text values as they are; any other bytes in base64 under "data_b64",
  // so every value comes back exactly as stored.
  std::vector<std::pair<std::string, std::string>> text, binary;
  text.reserve(secret.data().size());
  binary.reserve(secret.data().size());
  for (const auto& [name, value] : secret.data()) {
    if (IsValidUtf8(value)) {
      text.emplace_back(name, value);
    } else {
      binary.emplace_back(name, Base64Encode(value));
    }
  }
  std::sort(text.begin(), text.end());
  std::sort(binary.begin(), binary.end());
  JsonObjectWriter out;
  out.Bool("ok", true)
      .Int("version", static_cast<int64_t>(secret.metadata().version()))
      .StringObject("data", text);
  if (!binary.empty()) out.StringObject("data_b64", binary);
  for (auto& [name, value] : text) Wipe(&value);
  for (auto& [name, value] : binary) Wipe(&value);
  return out.Finish();
}

}  // namespace node
}  // namespace strongbox
