// EtcdBackend (include/strongbox/etcd_backend.h). The file has three parts:
// the backend's KV calls (one etcd Range or Txn each), the lock watcher (one
// Watch stream on the lock key per backend, kept open while anyone waits or
// holds a grant), and the grant (a lease kept alive over a KeepAlive
// stream).
#include "strongbox/etcd_backend.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/backend/batch.h"
#include "lib/etcd/client.h"
#include "lib/etcd/keys.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {
namespace {

namespace pb = etcdserverpb;
using etcd::Client;
using etcd::Endpoint;
using etcd::KeyLayout;

absl::StatusOr<std::string> PemFromOption(const std::string& pem,
                                          const std::string& file,
                                          absl::string_view what) {
  if (!pem.empty() || file.empty()) return pem;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd ", what, " file ", file, " cannot be read"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status ValidateOptions(const EtcdBackendOptions& o) {
  if (o.prefix.empty() || o.prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd prefix \"", o.prefix, "\" must be non-empty and end with '/'"));
  }
  for (char c : o.prefix) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          "etcd prefix must not contain control bytes");
    }
  }
  if (o.dial_timeout <= absl::ZeroDuration() ||
      o.request_timeout <= absl::ZeroDuration() ||
      o.watch_check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "etcd dial_timeout, request_timeout and watch_check_interval must be "
        "positive");
  }
  if (o.limits.max_value_bytes == 0 || o.limits.max_key_bytes == 0) {
    return absl::InvalidArgumentError("etcd limits must be positive");
  }
  return absl::OkStatus();
}

pb::Compare* AddCompare(pb::TxnRequest* txn, const std::string& key,
                        pb::Compare::CompareTarget target,
                        pb::Compare::CompareResult result) {
  pb::Compare* c = txn->add_compare();
  c->set_key(key);
  c->set_target(target);
  c->set_result(result);
  return c;
}

void AddRange(google::protobuf::RepeatedPtrField<pb::RequestOp>* ops,
              const std::string& key, bool keys_only) {
  pb::RangeRequest* r = ops->Add()->mutable_request_range();
  r->set_key(key);
  r->set_keys_only(keys_only);
}

// The kv a Range op of a Txn response found, if any.
const mvccpb::KeyValue* RangeResult(const pb::TxnResponse& response, int i) {
  if (i >= response.responses_size()) return nullptr;
  const pb::RangeResponse& r = response.responses(i).response_range();
  return r.kvs_size() > 0 ? &r.kvs(0) : nullptr;
}

class EtcdBackendImpl;

// What a grant and the lock watcher share.
struct GrantState {
  GrantState(FenceToken f, int64_t lease, std::string h, absl::Duration t)
      : fence(f), lease_id(lease), holder(std::move(h)), ttl(t) {}

  const FenceToken fence;
  const int64_t lease_id;
  const std::string holder;
  const absl::Duration ttl;

  Mutex mu;
  absl::Duration deadline ABSL_GUARDED_BY(mu);  // clock->MonotonicNow()
  bool lost ABSL_GUARDED_BY(mu) = false;
  bool revoked ABSL_GUARDED_BY(mu) = false;
};

// The lease's KeepAlive stream: Renew() writes one request and waits for
// the answer that the reader thread hands over.
class KeepAliveStream {
 public:
  KeepAliveStream(Client* client, int endpoint)
      : client_(client), endpoint_(endpoint) {
    client_->PrepareContext(&context_, absl::InfiniteFuture());
    client_->RegisterStream(endpoint_, &context_);
    stream_ = client_->endpoint(endpoint_).lease->LeaseKeepAlive(&context_);
    reader_ = std::thread([this] { ReadLoop(); });
  }
  ~KeepAliveStream() {
    client_->UnregisterStream(&context_);
    context_.TryCancel();
    reader_.join();
    stream_->Finish().ok();
  }

  int endpoint() const { return endpoint_; }

  // One keepalive round trip. Returns the TTL etcd reports (<= 0: the lease
  // is gone), or UNAVAILABLE if no answer came by `deadline`.
  absl::StatusOr<int64_t> KeepAlive(int64_t lease_id, absl::Time deadline) {
    uint64_t seen;
    {
      MutexLock lock(&mu_);
      if (ended_) return absl::UnavailableError("keepalive stream ended");
      seen = answers_;
    }
    pb::LeaseKeepAliveRequest request;
    request.set_id(lease_id);
    if (!stream_->Write(request)) {
      return absl::UnavailableError("keepalive stream broke");
    }
    MutexLock lock(&mu_);
    const bool answered = mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return answers_ > seen || ended_;
        },
        std::max(deadline - absl::Now(), absl::ZeroDuration()));
    if (!answered || answers_ == seen) {
      return absl::UnavailableError(
          absl::StrCat("etcd keepalive at ", client_->endpoint(endpoint_).url,
                       answered ? ": stream ended" : ": no answer in time"));
    }
    return last_ttl_;
  }

 private:
  void ReadLoop() {
    pb::LeaseKeepAliveResponse response;
    while (stream_->Read(&response)) {
      MutexLock lock(&mu_);
      ++answers_;
      last_ttl_ = response.ttl();
      mu_.SignalAll();
    }
    MutexLock lock(&mu_);
    ended_ = true;
    mu_.SignalAll();
  }

  Client* const client_;
  const int endpoint_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::LeaseKeepAliveRequest,
                                           pb::LeaseKeepAliveResponse>>
      stream_;
  std::thread reader_;

  Mutex mu_;
  uint64_t answers_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_ttl_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

class EtcdGrant : public LeadershipGrant {
 public:
  EtcdGrant(EtcdBackendImpl* backend, std::shared_ptr<GrantState> state)
      : backend_(backend), state_(std::move(state)) {}
  ~EtcdGrant() override;

  FenceToken fence() const override { return state_->fence; }
  std::string holder() const override { return state_->holder; }
  absl::Status Renew() override;
  absl::Status Release() override;
  absl::Time expiry() const override;
  bool Lost() override;
  bool WaitLost(absl::Time deadline) override;

 private:
  EtcdBackendImpl* const backend_;
  const std::shared_ptr<GrantState> state_;

  Mutex renew_mu_;  // one Renew() at a time; guards the stream
  std::unique_ptr<KeepAliveStream> keepalive_ ABSL_GUARDED_BY(renew_mu_);
};

class EtcdBackendImpl : public EtcdBackend, public HaBackend {
 public:
  EtcdBackendImpl(const EtcdBackendOptions& options,
                  std::unique_ptr<Client> client)
      : options_(options),
        clock_(options.clock != nullptr ? options.clock : RealClock()),
        layout_(options.prefix),
        client_(std::move(client)) {}

  ~EtcdBackendImpl() override {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
      if (watch_context_ != nullptr) watch_context_->TryCancel();
      mu_.SignalAll();
    }
    if (watcher_.joinable()) watcher_.join();
    if (checker_.joinable()) checker_.join();
  }

  absl::Status Init();

  // Backend.
  absl::StatusOr<Entry> Get(absl::string_view key) override;
  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override;
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence) override;
  absl::StatusOr<uint64_t> Revision() override;
  HaBackend* ha() override { return this; }
  BackendLimits limits() const override { return options_.limits; }
  const std::string& prefix() const override { return layout_.prefix(); }
  std::string current_endpoint() const override {
    return client_->current_endpoint();
  }

  // HaBackend.
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override;
  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override;
  absl::Status BreakLease(FenceToken fence) override;

  // For grants.
  Clock* clock() const { return clock_; }
  Client* client() { return client_.get(); }
  absl::Status RevokeLease(int64_t lease_id);
  void Forget(FenceToken fence);
  void MarkLost(GrantState* state) {
    MutexLock lock(&state->mu);
    state->lost = true;
    state->mu.SignalAll();
  }
  // Blocks until the state is lost, its deadline passes or `until`
  // (monotonic) passes.
  bool WaitLost(GrantState* state, absl::Duration until);

 private:
  pb::RangeRequest ReadOf(const std::string& key) const {
    pb::RangeRequest r;
    r.set_key(key);
    r.set_serializable(options_.serializable_reads);
    return r;
  }
  absl::Status Range(const pb::RangeRequest& request,
                     pb::RangeResponse* response, absl::string_view what) {
    return client_->Call(Client::Kind::kRead, what,
                         [&](Endpoint& ep, grpc::ClientContext* context) {
                           return ep.kv->Range(context, request, response);
                         });
  }
  absl::Status Txn(Client::Kind kind, const pb::TxnRequest& request,
                   pb::TxnResponse* response, absl::string_view what) {
    return client_->Call(kind, what,
                         [&](Endpoint& ep, grpc::ClientContext* context) {
                           return ep.kv->Txn(context, request, response);
                         });
  }
  std::shared_ptr<GrantState> LocalGrant(FenceToken fence) {
    MutexLock lock(&mu_);
    auto it = grants_.find(fence);
    return it == grants_.end() ? nullptr : it->second;
  }
  static bool StateLost(GrantState* state, absl::Duration now) {
    MutexLock lock(&state->mu);
    if (!state->lost && now >= state->deadline) {
      state->lost = true;
      state->mu.SignalAll();
    }
    return state->lost;
  }

  // One attempt to take the lock. nullopt: held by someone; then `seen` is
  // the revision at which it was seen held and `holder_fence` its fence.
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> TryAcquire(
      const AcquireOptions& options, int64_t* seen, FenceToken* holder_fence);

  // The lock watcher: learns every change of the lock key, marks local
  // grants lost, wakes waiting Acquire() calls.
  void EnsureWatcher();
  void WatchLoop();
  void CheckLoop();
  void ApplyLockState(FenceToken create_revision, int64_t revision);

  // Constant after construction.
  const EtcdBackendOptions options_;
  Clock* const clock_;
  const KeyLayout layout_;
  const std::unique_ptr<Client> client_;

  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool watcher_started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
  std::thread checker_;
  grpc::ClientContext* watch_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  int watch_endpoint_ ABSL_GUARDED_BY(mu_) = -1;
  // The lock key as of revision lock_revision_: its create_revision, or 0.
  FenceToken lock_fence_ ABSL_GUARDED_BY(mu_) = kNoFence;
  int64_t lock_revision_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<FenceToken, std::shared_ptr<GrantState>> grants_
      ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------- KV calls

absl::Status EtcdBackendImpl::Init() {
  // One Txn, so nodes opening an empty prefix together all agree: the
  // format record is written only if nothing at all is under the prefix
  // (a compare over the whole range); otherwise the record is read back.
  pb::TxnRequest txn;
  AddCompare(&txn, layout_.prefix(), pb::Compare::CREATE, pb::Compare::EQUAL)
      ->set_create_revision(0);
  txn.mutable_compare(0)->set_range_end(etcd::PrefixRangeEnd(layout_.prefix()));
  pb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(layout_.format_key());
  put->set_value(std::string(etcd::kFormatValue));
  AddRange(txn.mutable_failure(), layout_.format_key(), /*keys_only=*/false);
  pb::TxnResponse response;
  absl::Status s =
      Txn(Client::Kind::kWrite, txn, &response, "check of the prefix");
  const mvccpb::KeyValue* format = nullptr;
  if (s.ok() && response.succeeded()) return absl::OkStatus();
  pb::RangeResponse reread;
  if (s.ok()) {
    format = RangeResult(response, 0);
  } else if (absl::IsUnavailable(s)) {
    // Outcome unknown: the record tells.
    RETURN_IF_ERROR(
        Range(ReadOf(layout_.format_key()), &reread, "read of the format"));
    if (reread.kvs_size() == 0) return s;
    format = &reread.kvs(0);
  } else {
    return s;
  }
  if (format == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd prefix \"", layout_.prefix(),
        "\" holds keys but no strongbox format record: it belongs to "
        "something else; choose another prefix"));
  }
  if (format->value() != etcd::kFormatValue) {
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd prefix \"", layout_.prefix(),
        "\" holds a format record of another kind or version; not a "
        "strongbox store this release can open"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Entry> EtcdBackendImpl::Get(absl::string_view key) {
  RETURN_IF_ERROR(ValidateKey(key, options_.limits));
  pb::RangeRequest request = ReadOf(layout_.DataKey(key));
  pb::RangeResponse response;
  RETURN_IF_ERROR(Range(request, &response, "get"));
  if (response.kvs_size() == 0) {
    return absl::NotFoundError(absl::StrCat("no entry at ", key));
  }
  Entry entry;
  entry.value = std::move(*response.mutable_kvs(0)->mutable_value());
  entry.version = static_cast<uint64_t>(response.kvs(0).mod_revision());
  return entry;
}

absl::StatusOr<std::vector<std::string>> EtcdBackendImpl::List(
    absl::string_view prefix) {
  RETURN_IF_ERROR(ValidatePrefix(prefix, options_.limits));
  const std::string base = layout_.DataKey(prefix);
  pb::RangeRequest request = ReadOf(base);
  request.set_range_end(etcd::PrefixRangeEnd(base));
  request.set_keys_only(true);
  pb::RangeResponse response;
  RETURN_IF_ERROR(Range(request, &response, "list"));
  std::vector<std::string> children;
  for (const mvccpb::KeyValue& kv : response.kvs()) {
    absl::string_view rest(kv.key());
    rest.remove_prefix(base.size());
    const size_t slash = rest.find('/');
    absl::string_view child =
        slash == absl::string_view::npos ? rest : rest.substr(0, slash + 1);
    if (child.empty()) continue;
    if (children.empty() || children.back() != child) {
      children.emplace_back(child);
    }
  }
  return children;
}

absl::StatusOr<uint64_t> EtcdBackendImpl::Revision() {
  pb::RangeRequest request = ReadOf(layout_.revision_key());
  request.set_keys_only(true);
  pb::RangeResponse response;
  RETURN_IF_ERROR(Range(request, &response, "revision"));
  if (response.kvs_size() == 0) return 0;
  return static_cast<uint64_t>(response.kvs(0).mod_revision());
}

absl::StatusOr<uint64_t> EtcdBackendImpl::Commit(absl::Span<const WriteOp> ops,
                                                 FenceToken fence) {
  RETURN_IF_ERROR(ValidateBatch(ops, options_.limits));
  if (fence != kNoFence) {
    // A grant of ours known lost is refused here (its holder's own
    // deadline); any other fence is judged by etcd's compare below.
    std::shared_ptr<GrantState> local = LocalGrant(fence);
    if (local != nullptr && StateLost(local.get(), clock_->MonotonicNow())) {
      return StaleFenceError(fence);
    }
  }
  const bool writes = HasWrites(ops);
  pb::TxnRequest txn;
  if (fence != kNoFence) {
    AddCompare(&txn, layout_.lock_key(), pb::Compare::CREATE,
               pb::Compare::EQUAL)
        ->set_create_revision(static_cast<int64_t>(fence));
    AddRange(txn.mutable_failure(), layout_.lock_key(), /*keys_only=*/true);
  }
  std::vector<const WriteOp*> checked;
  for (const WriteOp& op : ops) {
    const std::string key = layout_.DataKey(op.key);
    switch (op.expect) {
      case WriteOp::Expect::kAnything:
        break;
      case WriteOp::Expect::kAbsent:
        AddCompare(&txn, key, pb::Compare::CREATE, pb::Compare::EQUAL)
            ->set_create_revision(0);
        break;
      case WriteOp::Expect::kVersion:
        AddCompare(&txn, key, pb::Compare::MOD, pb::Compare::EQUAL)
            ->set_mod_revision(static_cast<int64_t>(op.expected_version));
        if (op.expected_version == 0) {
          // An absent key's mod_revision compares as 0 too.
          AddCompare(&txn, key, pb::Compare::VERSION, pb::Compare::GREATER)
              ->set_version(0);
        }
        break;
    }
    if (op.expect != WriteOp::Expect::kAnything) {
      AddRange(txn.mutable_failure(), key, /*keys_only=*/true);
      checked.push_back(&op);
    }
    if (op.kind == WriteOp::Kind::kPut) {
      pb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(op.value);
    } else if (op.kind == WriteOp::Kind::kDelete) {
      txn.add_success()->mutable_request_delete_range()->set_key(key);
    }
  }
  if (writes) {
    txn.add_success()->mutable_request_put()->set_key(layout_.revision_key());
  } else {
    AddRange(txn.mutable_success(), layout_.revision_key(), true);
  }
  pb::TxnResponse response;
  RETURN_IF_ERROR(Txn(writes ? Client::Kind::kWrite : Client::Kind::kRead, txn,
                      &response, "commit"));
  if (response.succeeded()) {
    if (writes) return static_cast<uint64_t>(response.header().revision());
    const mvccpb::KeyValue* rev = RangeResult(response, 0);
    return rev == nullptr ? uint64_t{0}
                          : static_cast<uint64_t>(rev->mod_revision());
  }
  int next = 0;
  if (fence != kNoFence) {
    const mvccpb::KeyValue* lock = RangeResult(response, next++);
    if (lock == nullptr ||
        static_cast<FenceToken>(lock->create_revision()) != fence) {
      std::shared_ptr<GrantState> local = LocalGrant(fence);
      if (local != nullptr) MarkLost(local.get());
      return StaleFenceError(fence);
    }
  }
  for (const WriteOp* op : checked) {
    const mvccpb::KeyValue* kv = RangeResult(response, next++);
    std::optional<uint64_t> version;
    if (kv != nullptr) version = static_cast<uint64_t>(kv->mod_revision());
    RETURN_IF_ERROR(CheckPrecondition(*op, version));
  }
  return absl::AbortedError("a precondition failed");
}

// ---------------------------------------------------------- lock watcher

void EtcdBackendImpl::EnsureWatcher() {
  MutexLock lock(&mu_);
  if (watcher_started_ || stopping_) return;
  watcher_started_ = true;
  watcher_ = std::thread([this] { WatchLoop(); });
  checker_ = std::thread([this] { CheckLoop(); });
}

void EtcdBackendImpl::ApplyLockState(FenceToken create_revision,
                                     int64_t revision) {
  std::vector<std::shared_ptr<GrantState>> lost;
  {
    MutexLock lock(&mu_);
    if (revision < lock_revision_) return;
    lock_fence_ = create_revision;
    lock_revision_ = revision;
    for (auto& [fence, state] : grants_) {
      if (fence != create_revision && static_cast<int64_t>(fence) <= revision) {
        lost.push_back(state);
      }
    }
    mu_.SignalAll();
  }
  for (auto& state : lost) MarkLost(state.get());
}

void EtcdBackendImpl::WatchLoop() {
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
    }
    // Where the lock stands now, then every change after that.
    pb::RangeRequest read;
    read.set_key(layout_.lock_key());
    read.set_keys_only(true);
    pb::RangeResponse now;
    absl::Status s = Range(read, &now, "read of the lock");
    if (!s.ok()) {
      MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; },
          absl::Milliseconds(50));
      continue;
    }
    ApplyLockState(now.kvs_size() > 0 ? now.kvs(0).create_revision() : 0,
                   now.header().revision());
    absl::StatusOr<int> ep =
        client_->AwaitEndpoint(absl::Now() + client_->request_timeout());
    if (!ep.ok()) continue;
    grpc::ClientContext context;
    client_->PrepareContext(&context, absl::InfiniteFuture());
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      watch_context_ = &context;
      watch_endpoint_ = *ep;
    }
    client_->RegisterStream(*ep, &context);
    auto stream = client_->endpoint(*ep).watch->Watch(&context);
    pb::WatchRequest create;
    create.mutable_create_request()->set_key(layout_.lock_key());
    create.mutable_create_request()->set_start_revision(
        now.header().revision() + 1);
    if (stream->Write(create)) {
      pb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.canceled()) break;  // e.g. compacted: read again
        for (const mvccpb::Event& event : response.events()) {
          ApplyLockState(event.type() == mvccpb::Event::PUT
                             ? event.kv().create_revision()
                             : 0,
                         event.kv().mod_revision());
        }
      }
    }
    client_->UnregisterStream(&context);
    {
      MutexLock lock(&mu_);
      watch_context_ = nullptr;
      watch_endpoint_ = -1;
    }
    context.TryCancel();
    stream->Finish().ok();
  }
}

// A stopped member sends neither events nor errors: every
// watch_check_interval, the watch's endpoint must answer a cheap local read
// within the request timeout, else it counts as failed (which cancels the
// watch, reopened elsewhere).
void EtcdBackendImpl::CheckLoop() {
  while (true) {
    int endpoint;
    {
      MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; },
          options_.watch_check_interval);
      if (stopping_) return;
      endpoint = watch_endpoint_;
    }
    if (endpoint < 0) continue;
    pb::RangeRequest probe;
    probe.set_key(layout_.lock_key());
    probe.set_serializable(true);
    probe.set_count_only(true);
    pb::RangeResponse response;
    client_
        ->CallOn(endpoint, "watch check",
                 [&](Endpoint& ep, grpc::ClientContext* context) {
                   return ep.kv->Range(context, probe, &response);
                 })
        .IgnoreError();
  }
}

// ------------------------------------------------------------ leadership

absl::Status EtcdBackendImpl::RevokeLease(int64_t lease_id) {
  pb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  pb::LeaseRevokeResponse response;
  absl::Status s =
      client_->Call(Client::Kind::kRead, "lease revoke",
                    [&](Endpoint& ep, grpc::ClientContext* context) {
                      return ep.lease->LeaseRevoke(context, request, &response);
                    });
  // Already gone (expired, revoked): what we wanted.
  if (absl::IsNotFound(s) ||
      (!s.ok() && absl::StrContains(s.message(), "lease not found"))) {
    return absl::OkStatus();
  }
  return s;
}

void EtcdBackendImpl::Forget(FenceToken fence) {
  MutexLock lock(&mu_);
  grants_.erase(fence);
}

bool EtcdBackendImpl::WaitLost(GrantState* state, absl::Duration until) {
  MutexLock lock(&state->mu);
  while (!state->lost) {
    const absl::Duration now = clock_->MonotonicNow();
    if (now >= state->deadline) {
      state->lost = true;
      break;
    }
    if (now >= until) break;
    // Real time between looks: the clock may be a fake one.
    state->mu.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) { return state->lost; },
        std::min({state->deadline - now, until - now, absl::Milliseconds(10)}));
  }
  return state->lost;
}

absl::StatusOr<std::unique_ptr<LeadershipGrant>> EtcdBackendImpl::TryAcquire(
    const AcquireOptions& options, int64_t* seen, FenceToken* holder_fence) {
  const absl::Duration started = clock_->MonotonicNow();
  pb::LeaseGrantRequest grant_request;
  grant_request.set_ttl(std::max<int64_t>(
      1, absl::ToInt64Seconds(absl::Ceil(options.ttl, absl::Seconds(1)))));
  pb::LeaseGrantResponse lease;
  RETURN_IF_ERROR(client_->Call(
      Client::Kind::kRead, "lease grant",
      [&](Endpoint& ep, grpc::ClientContext* context) {
        return ep.lease->LeaseGrant(context, grant_request, &lease);
      }));
  if (!lease.error().empty()) {
    return absl::UnavailableError(
        absl::StrCat("etcd lease grant: ", lease.error()));
  }
  pb::TxnRequest txn;
  AddCompare(&txn, layout_.lock_key(), pb::Compare::CREATE, pb::Compare::EQUAL)
      ->set_create_revision(0);
  pb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(layout_.lock_key());
  put->set_value(options.holder);
  put->set_lease(lease.id());
  AddRange(txn.mutable_failure(), layout_.lock_key(), /*keys_only=*/true);
  pb::TxnResponse response;
  absl::Status s = Txn(Client::Kind::kWrite, txn, &response, "lock");
  FenceToken fence = kNoFence;
  if (s.ok() && response.succeeded()) {
    fence = static_cast<FenceToken>(response.header().revision());
  } else if (s.ok()) {
    const mvccpb::KeyValue* kv = RangeResult(response, 0);
    *seen = response.header().revision();
    *holder_fence = kv == nullptr ? kNoFence : kv->create_revision();
  } else if (absl::IsUnavailable(s)) {
    // Outcome unknown: the lock key tells, since our lease is unique.
    pb::RangeRequest read;
    read.set_key(layout_.lock_key());
    read.set_keys_only(true);
    pb::RangeResponse now;
    absl::Status r = Range(read, &now, "read of the lock");
    if (r.ok() && now.kvs_size() > 0 && now.kvs(0).lease() == lease.id()) {
      fence = static_cast<FenceToken>(now.kvs(0).create_revision());
    } else {
      RevokeLease(lease.id()).IgnoreError();
      return s;
    }
  } else {
    RevokeLease(lease.id()).IgnoreError();
    return s;
  }
  if (fence == kNoFence) {
    RevokeLease(lease.id()).IgnoreError();
    return std::unique_ptr<LeadershipGrant>();
  }
  auto state = std::make_shared<GrantState>(fence, lease.id(), options.holder,
                                            options.ttl);
  {
    MutexLock lock(&state->mu);
    state->deadline = started + options.ttl;
  }
  bool gone;
  {
    MutexLock lock(&mu_);
    grants_[fence] = state;
    // The watcher may have seen it go already.
    gone =
        lock_revision_ >= static_cast<int64_t>(fence) && lock_fence_ != fence;
  }
  if (gone) MarkLost(state.get());
  return std::unique_ptr<LeadershipGrant>(new EtcdGrant(this, state));
}

absl::StatusOr<std::unique_ptr<LeadershipGrant>> EtcdBackendImpl::Acquire(
    const AcquireOptions& options) {
  if (options.holder.empty()) {
    return absl::InvalidArgumentError("holder must be non-empty");
  }
  if (options.ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ttl must be positive");
  }
  EnsureWatcher();
  // The deadline is a wall time by the clock; count what is left of it on
  // the monotonic clock.
  const bool once = options.deadline == absl::InfinitePast();
  const absl::Duration until =
      options.deadline == absl::InfiniteFuture()
          ? absl::InfiniteDuration()
          : clock_->MonotonicNow() + (options.deadline - clock_->Now());
  while (true) {
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      return absl::CancelledError("acquire cancelled");
    }
    int64_t seen = 0;
    FenceToken holder_fence = kNoFence;
    // Look first: while the lock is held an attempt costs one read, not a
    // lease grant, a Txn and a revoke (three raft writes).
    absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
        std::unique_ptr<LeadershipGrant>();
    pb::RangeRequest look;
    look.set_key(layout_.lock_key());
    look.set_keys_only(true);
    pb::RangeResponse holder_now;
    absl::Status read = Range(look, &holder_now, "read of the lock");
    if (read.ok() && holder_now.kvs_size() > 0) {
      seen = holder_now.header().revision();
      holder_fence =
          static_cast<FenceToken>(holder_now.kvs(0).create_revision());
    } else if (read.ok()) {
      grant = TryAcquire(options, &seen, &holder_fence);
    } else {
      grant = read;
    }
    if (grant.ok() && *grant != nullptr) return grant;
    if (grant.ok()) {
      // Held. By a grant of ours that is lost? Then its lease goes now.
      std::shared_ptr<GrantState> local = LocalGrant(holder_fence);
      if (local != nullptr && StateLost(local.get(), clock_->MonotonicNow())) {
        bool revoke = false;
        {
          MutexLock lock(&local->mu);
          revoke = !local->revoked;
          local->revoked = true;
        }
        if (revoke && RevokeLease(local->lease_id).ok()) continue;
      }
    } else if (!absl::IsUnavailable(grant.status())) {
      return grant.status();
    }
    if (once || clock_->MonotonicNow() >= until) {
      return absl::DeadlineExceededError(
          grant.ok() ? "the lease is held by another holder"
                     : std::string(grant.status().message()));
    }
    // Wait for a change of the lock key after `seen`, a cancellation, the
    // deadline, or the safety re-check.
    const absl::Time recheck = absl::Now() + options_.watch_check_interval;
    const bool held = grant.ok();
    MutexLock lock(&mu_);
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || (held && lock_revision_ > seen);
    };
    while (!changed() && absl::Now() < recheck &&
           clock_->MonotonicNow() < until &&
           !(options.cancel != nullptr && options.cancel->cancelled())) {
      mu_.AwaitWithTimeout(changed, absl::Milliseconds(10));
    }
    if (stopping_) return absl::CancelledError("backend is closing");
  }
}

absl::StatusOr<std::optional<LeaseHolder>> EtcdBackendImpl::CurrentHolder() {
  pb::RangeRequest read;
  read.set_key(layout_.lock_key());
  pb::RangeResponse now;
  RETURN_IF_ERROR(Range(read, &now, "read of the lock"));
  if (now.kvs_size() == 0) return std::optional<LeaseHolder>();
  const mvccpb::KeyValue& kv = now.kvs(0);
  LeaseHolder holder;
  holder.holder = kv.value();
  holder.fence = static_cast<FenceToken>(kv.create_revision());
  std::shared_ptr<GrantState> local = LocalGrant(holder.fence);
  if (local != nullptr) {
    // Ours: we know its deadline better than etcd's whole-second TTL.
    const absl::Duration mono = clock_->MonotonicNow();
    if (StateLost(local.get(), mono)) return std::optional<LeaseHolder>();
    MutexLock lock(&local->mu);
    holder.expiry = clock_->Now() + (local->deadline - mono);
    return std::optional<LeaseHolder>(holder);
  }
  pb::LeaseTimeToLiveRequest ttl_request;
  ttl_request.set_id(kv.lease());
  pb::LeaseTimeToLiveResponse ttl;
  absl::Status s = client_->Call(
      Client::Kind::kRead, "lease time-to-live",
      [&](Endpoint& ep, grpc::ClientContext* context) {
        return ep.lease->LeaseTimeToLive(context, ttl_request, &ttl);
      });
  holder.expiry = clock_->Now() + absl::Seconds(s.ok() ? ttl.ttl() : 0);
  return std::optional<LeaseHolder>(holder);
}

absl::Status EtcdBackendImpl::BreakLease(FenceToken fence) {
  if (std::shared_ptr<GrantState> local = LocalGrant(fence)) {
    MarkLost(local.get());
  }
  pb::TxnRequest txn;
  AddCompare(&txn, layout_.lock_key(), pb::Compare::CREATE, pb::Compare::EQUAL)
      ->set_create_revision(static_cast<int64_t>(fence));
  pb::DeleteRangeRequest* del =
      txn.add_success()->mutable_request_delete_range();
  del->set_key(layout_.lock_key());
  del->set_prev_kv(true);
  pb::TxnResponse response;
  // Deleting a key by its create_revision is idempotent: safe to resend.
  RETURN_IF_ERROR(Txn(Client::Kind::kRead, txn, &response, "break lease"));
  if (response.succeeded() && response.responses_size() > 0) {
    const pb::DeleteRangeResponse& deleted =
        response.responses(0).response_delete_range();
    if (deleted.prev_kvs_size() > 0 && deleted.prev_kvs(0).lease() != 0) {
      RevokeLease(deleted.prev_kvs(0).lease()).IgnoreError();
    }
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------- grant

EtcdGrant::~EtcdGrant() {
  Release().IgnoreError();
  {
    MutexLock lock(&renew_mu_);
    keepalive_.reset();
  }
  backend_->Forget(state_->fence);
}

absl::Status EtcdGrant::Renew() {
  MutexLock renew(&renew_mu_);
  Clock* clock = backend_->clock();
  const absl::Duration started = clock->MonotonicNow();
  absl::Duration deadline;
  {
    MutexLock lock(&state_->mu);
    if (!state_->lost && started >= state_->deadline) state_->lost = true;
    if (state_->lost) {
      return absl::FailedPreconditionError(
          absl::StrCat("lease grant ", state_->fence, " is lost"));
    }
    deadline = state_->deadline;
  }
  // No answer later than the grant's own deadline counts.
  const absl::Time answer_by =
      absl::Now() +
      std::min(backend_->client()->request_timeout(), deadline - started);
  if (keepalive_ == nullptr) {
    absl::StatusOr<int> ep = backend_->client()->AwaitEndpoint(answer_by);
    if (!ep.ok()) return ep.status();
    keepalive_ = std::make_unique<KeepAliveStream>(backend_->client(), *ep);
  }
  absl::StatusOr<int64_t> ttl =
      keepalive_->KeepAlive(state_->lease_id, answer_by);
  if (!ttl.ok()) {
    backend_->client()->EndpointFailed(keepalive_->endpoint());
    keepalive_.reset();
    return ttl.status();
  }
  MutexLock lock(&state_->mu);
  if (*ttl <= 0) {
    state_->lost = true;
    state_->mu.SignalAll();
  }
  if (state_->lost) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease grant ", state_->fence, " is lost"));
  }
  state_->deadline = started + state_->ttl;
  return absl::OkStatus();
}

absl::Status EtcdGrant::Release() {
  bool revoke;
  {
    MutexLock lock(&state_->mu);
    state_->lost = true;
    state_->mu.SignalAll();
    revoke = !state_->revoked;
    state_->revoked = true;
  }
  if (!revoke) return absl::OkStatus();
  absl::Status s = backend_->RevokeLease(state_->lease_id);
  if (!s.ok()) {
    MutexLock lock(&state_->mu);
    state_->revoked = false;  // a later Release() tries again
  }
  return s;
}

absl::Time EtcdGrant::expiry() const {
  Clock* clock = backend_->clock();
  const absl::Duration mono = clock->MonotonicNow();
  MutexLock lock(&state_->mu);
  return clock->Now() + (state_->deadline - mono);
}

bool EtcdGrant::Lost() {
  MutexLock lock(&state_->mu);
  if (!state_->lost && backend_->clock()->MonotonicNow() >= state_->deadline) {
    state_->lost = true;
    state_->mu.SignalAll();
  }
  return state_->lost;
}

bool EtcdGrant::WaitLost(absl::Time deadline) {
  Clock* clock = backend_->clock();
  const absl::Duration until =
      deadline == absl::InfiniteFuture()
          ? absl::InfiniteDuration()
          : clock->MonotonicNow() + (deadline - clock->Now());
  return backend_->WaitLost(state_.get(), until);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdBackend>> EtcdBackend::Open(
    const EtcdBackendOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  etcd::ClientOptions client_options;
  client_options.endpoints = options.endpoints;
  ASSIGN_OR_RETURN(client_options.ca_pem,
                   PemFromOption(options.ca_pem, options.ca_file, "CA"));
  ASSIGN_OR_RETURN(
      client_options.cert_pem,
      PemFromOption(options.cert_pem, options.cert_file, "certificate"));
  ASSIGN_OR_RETURN(client_options.key_pem,
                   PemFromOption(options.key_pem, options.key_file, "key"));
  client_options.username = options.username;
  client_options.password = options.password;
  client_options.dial_timeout = options.dial_timeout;
  client_options.request_timeout = options.request_timeout;
  ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
                   Client::Create(client_options));
  RETURN_IF_ERROR(client->Connect());
  auto backend = std::make_unique<EtcdBackendImpl>(options, std::move(client));
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<EtcdBackend>(std::move(backend));
}

}  // namespace strongbox
