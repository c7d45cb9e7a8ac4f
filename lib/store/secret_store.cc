#include "strongbox/secret_store.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/arena.h"
#include "lib/access/request_access.h"
#include "lib/access/request_gate.h"
#include "lib/access/stored_policies.h"
#include "lib/audit/audit_dispatcher.h"
#include "lib/store/kv_engine.h"
#include "lib/store/test_hooks.h"
#include "lib/store/transit_engine.h"
#include "lib/store/wipe.h"
#include "lib/util/status_macros.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace {

// A host may build a Request with only the proto3 `optional` presence
// (set_cas, set_deletion_allowed). A node from before `optional` reads the
// legacy flags instead and would take such a check-and-set as an
// unconditional write: every request forwarded to another node carries both.
void SetLegacyPresenceFlags(store::Request* request) {
  if (request->has_kv_put() && request->kv_put().has_cas()) {
    request->mutable_kv_put()->set_legacy_has_cas(true);
  }
  if (request->has_transit_config_key() &&
      request->transit_config_key().has_deletion_allowed()) {
    request->mutable_transit_config_key()->set_legacy_set_deletion_allowed(
        true);
  }
}

using store::Request;
using store::Response;

constexpr absl::string_view kRoutePayload = "type.strongbox.dev/route";

// The engine that executes an operation.
enum class Engine { kKv, kTransit, kPolicy };

// The one classification table: every operation, its kind (read: changes
// no storage; write) and the engine that executes it.
struct Operation {
  Request::OpCase op;
  absl::string_view name;
  OperationKind kind;
  Engine engine;
};
constexpr OperationKind kRead = OperationKind::kRead;
constexpr OperationKind kWrite = OperationKind::kWrite;
constexpr Operation kOperations[] = {
    {Request::kKvPut, "kv_put", kWrite, Engine::kKv},
    {Request::kKvGet, "kv_get", kRead, Engine::kKv},
    {Request::kKvDelete, "kv_delete", kWrite, Engine::kKv},
    {Request::kKvUndelete, "kv_undelete", kWrite, Engine::kKv},
    {Request::kKvDestroy, "kv_destroy", kWrite, Engine::kKv},
    {Request::kKvMetadataGet, "kv_metadata_get", kRead, Engine::kKv},
    {Request::kKvMetadataPut, "kv_metadata_put", kWrite, Engine::kKv},
    {Request::kKvDeleteAll, "kv_delete_all", kWrite, Engine::kKv},
    {Request::kKvList, "kv_list", kRead, Engine::kKv},
    {Request::kTransitCreateKey, "transit_create_key", kWrite,
     Engine::kTransit},
    {Request::kTransitRotateKey, "transit_rotate_key", kWrite,
     Engine::kTransit},
    {Request::kTransitReadKey, "transit_read_key", kRead, Engine::kTransit},
    {Request::kTransitConfigKey, "transit_config_key", kWrite,
     Engine::kTransit},
    {Request::kTransitDeleteKey, "transit_delete_key", kWrite,
     Engine::kTransit},
    // Decrypt changes no storage: perf standbys serve it. Encrypt and
    // rewrap store encryption reservations (and rotate the key at its
    // limit) on the active, so they are writes (transit_engine.h).
    {Request::kTransitEncrypt, "transit_encrypt", kWrite, Engine::kTransit},
    {Request::kTransitDecrypt, "transit_decrypt", kRead, Engine::kTransit},
    {Request::kTransitRewrap, "transit_rewrap", kWrite, Engine::kTransit},
    {Request::kPolicyPut, "policy_put", kWrite, Engine::kPolicy},
    {Request::kPolicyGet, "policy_get", kRead, Engine::kPolicy},
    {Request::kPolicyList, "policy_list", kRead, Engine::kPolicy},
    {Request::kPolicyDelete, "policy_delete", kWrite, Engine::kPolicy},
};

const Operation* FindOperation(Request::OpCase op_case) {
  for (const Operation& op : kOperations) {
    if (op.op == op_case) return &op;
  }
  return nullptr;
}

const Operation* FindOperation(const Request& request) {
  return FindOperation(request.op_case());
}

// store_testing::CountDirectCalls / DirectCallsServed (lib/store/test_hooks.h).
std::atomic<bool> direct_calls_counted{false};
std::atomic<uint64_t> direct_calls_served{0};

void SetStatus(const absl::Status& status, Response* response) {
  response->set_code(static_cast<int32_t>(status.code()));
  response->set_error(std::string(status.message()));
}

void SetRoute(RouteDecision::Action action, absl::string_view leader,
              Response* response) {
  response->set_route(std::string(RouteActionName(action)));
  response->set_leader_address(std::string(leader));
}

}  // namespace

absl::StatusOr<OperationKind> ClassifyRequest(const Request& request) {
  const Operation* op = FindOperation(request);
  if (op == nullptr) {
    return absl::InvalidArgumentError("request names no operation");
  }
  return op->kind;
}

absl::string_view OperationName(const Request& request) {
  const Operation* op = FindOperation(request);
  return op == nullptr ? absl::string_view() : op->name;
}

std::optional<RouteHint> GetRouteHint(const absl::Status& status) {
  auto payload = status.GetPayload(kRoutePayload);
  if (!payload.has_value()) return std::nullopt;
  std::vector<std::string> parts =
      absl::StrSplit(std::string(*payload), absl::MaxSplits('\n', 1));
  RouteHint hint;
  for (RouteDecision::Action a : {RouteDecision::Action::kServeLocally,
                                  RouteDecision::Action::kForwardToActive,
                                  RouteDecision::Action::kRedirectToActive,
                                  RouteDecision::Action::kUnavailable}) {
    if (RouteActionName(a) == parts[0]) hint.action = a;
  }
  if (parts.size() > 1) hint.leader_address = parts[1];
  return hint;
}

absl::Status ResponseStatus(const Response& response) {
  if (response.code() == 0) return absl::OkStatus();
  const int code = response.code();
  absl::Status status(
      code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated)
          ? static_cast<absl::StatusCode>(code)
          : absl::StatusCode::kUnknown,
      response.error());
  if (!response.route().empty() || !response.leader_address().empty()) {
    status.SetPayload(kRoutePayload,
                      absl::Cord(absl::StrCat(response.route(), "\n",
                                              response.leader_address())));
  }
  return status;
}

namespace {

// The longest KV path the backend can hold: its data keys are
// "kv/data/<path>/<version>" (8 + 1 + up to 20 bytes around the path).
size_t EffectiveMaxPath(const SecretStore::Options& options) {
  constexpr size_t kDataKeyOverhead = 8 + 1 + 20;
  const size_t backend_max =
      options.coordinator->barrier()->backend()->limits().max_key_bytes;
  const size_t fits =
      backend_max > kDataKeyOverhead ? backend_max - kDataKeyOverhead : 0;
  return std::min(options.max_path_bytes, fits);
}

// Where each audit sink's salt is kept, behind the barrier.
constexpr absl::string_view kAuditSaltPrefix = "audit/salt/";

// The dispatcher owns its sinks; the store's options lend them.
class LentSink final : public AuditSink {
 public:
  explicit LentSink(AuditSink* sink) : sink_(sink) {}
  absl::Status Write(const AuditEntry& entry) override {
    return sink_->Write(entry);
  }
  absl::Status WriteBatch(
      absl::Span<const AuditEntry* const> entries) override {
    return sink_->WriteBatch(entries);
  }
  bool blocking() const override { return sink_->blocking(); }
  absl::Status Reopen() override { return sink_->Reopen(); }

 private:
  AuditSink* const sink_;
};

CallContext ContextOf(const store::Caller& caller) {
  CallContext c;
  c.caller = caller.id();
  c.policies.assign(caller.policies().begin(), caller.policies().end());
  c.root = caller.root();
  return c;
}

void SetCaller(const CallContext* caller, Request* request) {
  if (caller == nullptr) {
    request->clear_caller();
    return;
  }
  store::Caller* c = request->mutable_caller();
  c->set_id(caller->caller);
  c->mutable_policies()->Clear();
  for (const std::string& p : caller->policies) c->add_policies(p);
  c->set_root(caller->root);
}

TransitOptions TransitOptionsOf(const SecretStore::Options& options) {
  TransitOptions transit;
  transit.max_encryptions_per_version =
      options.transit_max_encryptions_per_version;
  transit.encryption_reservation = options.transit_encryption_reservation;
  transit.rotate_at_limit = options.transit_rotate_at_limit;
  return transit;
}

// A one-item Transit call's request and response, when the call takes the
// message pipeline (an audited store, a call forwarded to the active; the
// others build no messages: SecretStoreImpl::Direct), on an arena whose
// first block is inline: building and freeing them costs no heap
// allocation per message (a string longer than the library's short-string
// size, 15 bytes, still has a heap buffer of its own). Measured: 13% fewer
// instructions per 64-byte TransitEncrypt. Not used where the fixed cost of an
// arena is about what it saves (KvGet and KvPut measured no fewer
// instructions), or where a message is handed to the caller (moving it off an
// arena would copy it). Both are wiped before the arena frees them (D5). Lives
// on the calling thread's stack; not thread-safe.
class CallMessages {
 public:
  CallMessages()
      : arena_(block_, sizeof(block_)),
        request_(google::protobuf::Arena::CreateMessage<Request>(&arena_)),
        response_(google::protobuf::Arena::CreateMessage<Response>(&arena_)) {}
  ~CallMessages() {
    WipeMessage(request_);
    WipeMessage(response_);
  }
  CallMessages(const CallMessages&) = delete;
  CallMessages& operator=(const CallMessages&) = delete;

  Request& request() { return *request_; }
  Response& response() { return *response_; }

 private:
  // Enough for the batch, its answer and the arena's own header; a larger
  // call continues in blocks from the heap.
  alignas(8) char block_[1024];
  google::protobuf::Arena arena_;
  Request* const request_;
  Response* const response_;
};

class SecretStoreImpl final : public SecretStore, public HaObserver {
 public:
  explicit SecretStoreImpl(const Options& options)
      : options_(options),
        coordinator_(options.coordinator),
        clock_(options.clock != nullptr ? options.clock : RealClock()),
        kv_(KvOptions{EffectiveMaxPath(options), options.max_fields,
                      options.max_secret_bytes, options.default_max_versions}),
        transit_(TransitOptionsOf(options)),
        policies_(coordinator_->barrier()),
        audit_(AuditOptionsOf(options, clock_)),
        gate_(GateOptionsOf(options, &policies_, &audit_, clock_)),
        gated_(options.enforce_policies || !options.audit_sinks.empty()) {
    coordinator_->AddObserver(this);
    // Transit keys (and the KV write cache) go with the seal,
    // synchronously (D2), however the barrier is sealed; audit salts are
    // loaded again after unseal.
    seal_listener_ = coordinator_->barrier()->AddSealListener([this] {
      transit_.ClearCache();
      policies_.Clear();
      kv_.ClearWriteCache();
      salts_loaded_.store(false, std::memory_order_release);
    });
  }

  ~SecretStoreImpl() override {
    // In a forked child the coordinator hands out no barrier (its locks
    // may be held by a parent thread that does not exist here).
    if (Barrier* barrier = coordinator_->barrier(); barrier != nullptr) {
      barrier->RemoveSealListener(seal_listener_);
    }
    coordinator_->RemoveObserver(this);
    transit_.ClearCache();
  }

  // HaObserver: keys cached by the Transit engine, and the KV metadata
  // this node wrote (KvOptions::write_cache_entries), go with leadership.
  // The active also creates the audit salts at once, so standbys can load
  // them before the active handles a request of its own (best effort: a
  // failure is retried by the next request).
  void OnStateChange(const StateChange& change) override {
    if (change.to != HaState::kActive) {
      transit_.ClearCache();
      policies_.Clear();
      kv_.ClearWriteCache();
    } else if (audit_.enabled()) {
      (void)EnsureAuditSalts();
    }
  }

  Response Handle(const Request& request) override {
    if (!request.has_caller()) return Handle(request, CallContext());
    return Handle(request, ContextOf(request.caller()));
  }

  Response Handle(const Request& request, const CallContext& caller) override {
    Response response;
    HandleAs(request, CallerOrNull(caller), &response);
    return response;
  }

  // HandleAs()'s caller: null for an anonymous one (no caller).
  static const CallContext* CallerOrNull(const CallContext& caller) {
    return caller.anonymous() ? nullptr : &caller;
  }

  // The request pipeline (file comment of secret_store.h): judge, audit,
  // route and execute, audit the outcome, into *out (empty; it may be on an
  // arena: CallMessages). `caller` null: no caller.
  void HandleAs(const Request& request, const CallContext* caller,
                Response* out) {
    Response& response = *out;
    const Operation* op = FindOperation(request);
    if (op == nullptr) {
      SetStatus(ClassifyRequest(request).status(), &response);
      return;
    }
    Barrier* barrier = coordinator_->barrier();
    if (barrier == nullptr) {
      // A forked child's copy of the coordinator (ha_coordinator.h): touch
      // nothing of the parent's.
      SetStatus(absl::FailedPreconditionError(
                    "this store's coordinator belongs to the process that "
                    "created it; a forked child cannot use it"),
                &response);
      return;
    }
    if (!gated_) {
      Route(request, *op, caller, IndexState::kUnchecked, &response);
      return;
    }
    if (barrier->sealed()) {
      RefuseSealed(request, *op, caller, &response);
      return;
    }
    IndexState index = IndexState::kUnchecked;
    if (op->kind == OperationKind::kRead && request.min_index() > 0) {
      // Judge by the policies as of min_index: catch up first. A node that
      // cannot forwards the request (judged on the active) or fails.
      index = CaughtUp(request.min_index()) ? IndexState::kReached
                                            : IndexState::kBehind;
      if (index == IndexState::kBehind) {
        Route(request, *op, caller, index, &response);
        return;
      }
    }
    absl::Status admitted = options_.enforce_policies
                                ? access::CheckKvPathOutsideReserved(request)
                                : absl::OkStatus();
    if (admitted.ok() && audit_.enabled()) admitted = EnsureAuditSalts();
    access::RequestGate::Admission admission;
    if (admitted.ok()) {
      admitted =
          gate_.Admit(caller, request, PolicyCacheFence(caller), &admission);
    }
    if (!admitted.ok()) {
      SetStatus(admitted, &response);
      return;
    }
    std::string forwarded_to;
    Route(request, *op, caller, index, &response, &forwarded_to);
    gate_.Complete(caller, request, admission, response, forwarded_to);
  }

  // A sealed node runs nothing and can judge nothing (policies and salts
  // are behind the barrier): it refuses, and audits the refusal without
  // values (RequestGate::AuditSealedRefusal). Not through Route(): the node
  // may unseal meanwhile, and Route would then serve the request unjudged.
  void RefuseSealed(const Request& request, const Operation& op,
                    const CallContext* caller, Response* response) {
    const HaState state = coordinator_->state();
    const RouteDecision d = coordinator_->Route(op.kind);
    const absl::Status refusal =
        state == HaState::kSealed || state == HaState::kUninitialized
            ? absl::FailedPreconditionError(
                  absl::StrCat("this node is ", HaStateName(state)))
            : absl::UnavailableError(
                  "this node was sealed when the request arrived; retry");
    SetStatus(refusal, response);
    SetRoute(RouteDecision::Action::kUnavailable, d.leader_address, response);
    if (audit_.enabled()) gate_.AuditSealedRefusal(caller, request, refusal);
  }

  // Whether this node has been checked to have reached the request's
  // min_index.
  enum class IndexState { kUnchecked, kReached, kBehind };

  // The fence under which the policy cache may be trusted for this
  // request (stored_policies.h): this node's write fence, verified against
  // the backend (at most every verify_interval:
  // HaCoordinator::VerifiedWriteFence), if it is the active and the gate
  // will consult the policies; kNoFence otherwise. Transit verifies again
  // in Execute, right before its engine runs: the gate may take long (the
  // audit sinks), and Transit's key cache must not be trusted for longer
  // than the coordinator's bound.
  FenceToken PolicyCacheFence(const CallContext* caller) {
    if (!options_.enforce_policies || (caller != nullptr && caller->root)) {
      return kNoFence;
    }
    if (coordinator_->state() != HaState::kActive) return kNoFence;
    absl::StatusOr<FenceToken> fence = coordinator_->VerifiedWriteFence();
    return fence.ok() ? *fence : kNoFence;
  }

  // `forwarded_to` (optional): set to the active's address if the request
  // was forwarded there.
  void Route(const Request& request, const Operation& op,
             const CallContext* caller, IndexState index, Response* out,
             std::string* forwarded_to = nullptr) {
    Response& response = *out;
    const OperationKind kind = op.kind;
    if (request.forwarded() && coordinator_->state() != HaState::kActive) {
      // Forwarded requests run only on the active: never forward again.
      RouteDecision d = coordinator_->Route(kind);
      SetStatus(absl::UnavailableError(
                    "a forwarded request reached a node that is not active"),
                &response);
      SetRoute(RouteDecision::Action::kUnavailable, d.leader_address,
               &response);
      return;
    }
    RouteDecision d = coordinator_->Route(kind);
    switch (d.action) {
      case RouteDecision::Action::kServeLocally:
        Execute(request, op, caller, index, &response, forwarded_to);
        return;
      case RouteDecision::Action::kForwardToActive:
        if (options_.forwarder != nullptr && !request.forwarded()) {
          Forward(request, caller, d.leader_address, &response);
          if (forwarded_to != nullptr) *forwarded_to = d.leader_address;
          return;
        }
        SetStatus(absl::UnavailableError(absl::StrCat(
                      "this node is a performance standby; send writes to "
                      "the active node at ",
                      d.leader_address)),
                  &response);
        SetRoute(d.action, d.leader_address, &response);
        return;
      case RouteDecision::Action::kRedirectToActive:
        SetStatus(absl::UnavailableError(absl::StrCat(
                      "this node is a standby; the active node is at ",
                      d.leader_address)),
                  &response);
        SetRoute(d.action, d.leader_address, &response);
        return;
      case RouteDecision::Action::kUnavailable: {
        const HaState state = coordinator_->state();
        if (state == HaState::kSealed || state == HaState::kUninitialized) {
          SetStatus(absl::FailedPreconditionError(
                        absl::StrCat("this node is ", HaStateName(state))),
                    &response);
        } else {
          SetStatus(absl::UnavailableError(d.reason), &response);
        }
        SetRoute(d.action, d.leader_address, &response);
        return;
      }
    }
  }

  std::string HandleSerialized(absl::string_view bytes) override {
    Wiped<Request> request;
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
        !request->ParseFromArray(bytes.data(),
                                 static_cast<int>(bytes.size()))) {
      Response response;
      SetStatus(absl::InvalidArgumentError("request bytes do not parse"),
                &response);
      return response.SerializeAsString();
    }
    Wiped<Response> response(Handle(*request));
    std::string out;
    SerializeInto(*response, &out);
    return out;
  }

  // ------------------------------------------------------- direct calls

  // A failure with no route as a response carries it: its code and
  // message, read back as ResponseStatus() reads a response (what the
  // typed calls answer on the message pipeline).
  static absl::Status AsAnswered(const absl::Status& failure) {
    Response response;
    SetStatus(failure, &response);
    return ResponseStatus(response);
  }

  // A call served on this node without request or response messages: the
  // one-item Transit calls, KvGet and KvPut, when they need no audit entry.
  // HandleAs()'s pipeline for such a call, in its order: the sealed check,
  // the policy verdict (the reserved-path check and RequestGate::Judge,
  // Admit's answer for a call with nothing to record; `create_only`: a
  // kv_put with cas = 0), the route (served here), the engine call's
  // fences (PrepareCall), then `run`, the engine's typed entry point, and
  // the answer to its failure (EngineFailure). Each failure is the status
  // ResponseStatus() reads back from the response the message pipeline
  // would build. nullopt: audit sinks are configured, the node is sealed
  // or in a forked child (nothing done), or the route is not to serve here
  // (only the verdict was taken: its one effect, a verified fence that
  // found the grant lost and demoted the node, is why the route changed);
  // the caller then builds the request, and the message pipeline decides
  // again.
  // tests/store/direct_calls_test compares the two.
  std::optional<absl::Status> Direct(
      Request::OpCase op_case, absl::string_view subject, bool create_only,
      const CallContext* caller,
      // (By reference: built by the caller and copied to the stack, the
      // FunctionRef's two halves were read back as one 16-byte load, a
      // store-forwarding stall of about 4 ns per call on KvGet's path.)
      const absl::FunctionRef<absl::Status(const EngineCall&)>& run) {
    Barrier* barrier = coordinator_->barrier();
    if (!options_.audit_sinks.empty() || barrier == nullptr ||
        barrier->sealed()) {
      return std::nullopt;
    }
    // The policy cache's fence (PolicyCacheFence: the verified fence on the
    // active, else kNoFence).
    const FenceToken policy_fence =
        gated_ ? PolicyCacheFence(caller) : kNoFence;
    bool verdict_from_memory = true;
    if (gated_) {
      absl::Status admitted =
          options_.enforce_policies
              ? access::CheckKvPathOutsideReserved(op_case, subject)
              : absl::OkStatus();
      if (admitted.ok()) {
        admitted = gate_.Judge(caller, op_case, subject, create_only,
                               policy_fence, &verdict_from_memory);
      }
      if (!admitted.ok()) {
        return AsAnswered(admitted);
      }
    }
    const Operation& op = *FindOperation(op_case);
    // The route. A verified fence is OK only while this node is active with
    // its grant unexpired (HA2), which is when Route() serves every call
    // here; if the verdict came from memory, nothing that can wait ran since
    // it was checked, so it still stands and Route() is not asked. After a
    // verdict that read storage, the lease may have lapsed meanwhile:
    // Route() checks it again.
    if ((policy_fence == kNoFence || !verdict_from_memory) &&
        coordinator_->Route(op.kind).action !=
            RouteDecision::Action::kServeLocally) {
      return std::nullopt;
    }
    if (direct_calls_counted.load(std::memory_order_relaxed)) {
      direct_calls_served.fetch_add(1, std::memory_order_relaxed);
    }
    EngineCall call;
    if (absl::Status s = PrepareCall(op, /*min_index=*/0, &call); !s.ok()) {
      Response failure;
      RoutedFailure(s, &failure);
      return ResponseStatus(failure);
    }
    absl::Status status = run(call);
    if (status.ok()) return status;
    std::optional<std::string> leader;
    Response failure;
    SetStatus(EngineFailure(status, op.kind, call, &leader), &failure);
    if (leader.has_value()) {
      SetRoute(RouteDecision::Action::kUnavailable, *leader, &failure);
    }
    return ResponseStatus(failure);
  }

  // ------------------------------------------------------------------ KV

  absl::StatusOr<KvWriteResult> KvPut(
      absl::string_view path, const std::map<std::string, std::string>& data,
      std::optional<uint64_t> cas, const CallContext& caller) override {
    {
      KvWriteResult result;
      std::optional<absl::Status> direct = Direct(
          Request::kKvPut, path, /*create_only=*/cas.has_value() && *cas == 0,
          CallerOrNull(caller), [&](const EngineCall& call) {
            return kv_.Put(path, data, cas, call, &result.version,
                           &result.index);
          });
      if (direct.has_value()) {
        if (!direct->ok()) return *std::move(direct);
        return result;
      }
    }
    Wiped<Request> r;
    store::KvPutRequest* put = r->mutable_kv_put();
    put->set_path(std::string(path));
    for (const auto& [k, v] : data) (*put->mutable_data())[k] = v;
    if (cas.has_value()) {
      put->set_cas(*cas);
      put->set_legacy_has_cas(true);  // for nodes before `optional`
    }
    Wiped<Response> response(Handle(*r, caller));
    RETURN_IF_ERROR(ResponseStatus(*response));
    return KvWriteResult{response->kv_write().version(), response->index()};
  }

  absl::StatusOr<store::KvSecret> KvGet(absl::string_view path,
                                        uint64_t version, uint64_t min_index,
                                        const CallContext& caller) override {
    // The secret is built where it is returned (every path returns
    // `result`); the caller owns it (and wipes it).
    absl::StatusOr<store::KvSecret> result(absl::in_place);
    if (min_index == 0) {
      std::optional<absl::Status> direct =
          Direct(Request::kKvGet, path, /*create_only=*/false,
                 CallerOrNull(caller), [&](const EngineCall& call) {
                   return kv_.Get(path, version, call, &*result);
                 });
      if (direct.has_value()) {
        if (!direct->ok()) {
          // A failure may leave part of a secret: wiped here.
          WipeMessage(&*result);
          result = *std::move(direct);
        }
        return result;
      }
    }
    Request r;
    r.mutable_kv_get()->set_path(std::string(path));
    r.mutable_kv_get()->set_version(version);
    r.set_min_index(min_index);
    Wiped<Response> response(Handle(r, caller));
    absl::Status status = ResponseStatus(*response);
    if (status.ok()) {
      // Moved out by swapping.
      result->Swap(response->mutable_kv_secret());
    } else {
      result = std::move(status);
    }
    return result;
  }

  absl::Status KvVersions(absl::string_view path,
                          const std::vector<uint64_t>& versions,
                          store::KvVersionsRequest* req, Request& r,
                          const CallContext& caller) {
    req->set_path(std::string(path));
    for (uint64_t v : versions) req->add_versions(v);
    return ResponseStatus(Handle(r, caller));
  }

  absl::Status KvDelete(absl::string_view path, std::vector<uint64_t> versions,
                        const CallContext& caller) override {
    Request r;
    return KvVersions(path, versions, r.mutable_kv_delete(), r, caller);
  }
  absl::Status KvUndelete(absl::string_view path,
                          std::vector<uint64_t> versions,
                          const CallContext& caller) override {
    Request r;
    return KvVersions(path, versions, r.mutable_kv_undelete(), r, caller);
  }
  absl::Status KvDestroy(absl::string_view path, std::vector<uint64_t> versions,
                         const CallContext& caller) override {
    Request r;
    return KvVersions(path, versions, r.mutable_kv_destroy(), r, caller);
  }

  absl::StatusOr<store::KvMetadata> KvMetadata(
      absl::string_view path, const CallContext& caller) override {
    Request r;
    r.mutable_kv_metadata_get()->set_path(std::string(path));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return std::move(*response.mutable_kv_metadata());
  }

  absl::Status KvSetMetadata(absl::string_view path, uint32_t max_versions,
                             bool cas_required,
                             const CallContext& caller) override {
    Request r;
    r.mutable_kv_metadata_put()->set_path(std::string(path));
    r.mutable_kv_metadata_put()->set_max_versions(max_versions);
    r.mutable_kv_metadata_put()->set_cas_required(cas_required);
    return ResponseStatus(Handle(r, caller));
  }

  absl::Status KvDeleteAll(absl::string_view path,
                           const CallContext& caller) override {
    Request r;
    r.mutable_kv_delete_all()->set_path(std::string(path));
    return ResponseStatus(Handle(r, caller));
  }

  absl::StatusOr<std::vector<std::string>> KvList(
      absl::string_view prefix, const CallContext& caller) override {
    Request r;
    r.mutable_kv_list()->set_prefix(std::string(prefix));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return std::vector<std::string>(response.kv_list().keys().begin(),
                                    response.kv_list().keys().end());
  }

  // ------------------------------------------------------------- Transit

  absl::Status TransitCreateKey(absl::string_view name,
                                const CallContext& caller) override {
    Request r;
    r.mutable_transit_create_key()->set_name(std::string(name));
    return ResponseStatus(Handle(r, caller));
  }

  absl::Status TransitRotateKey(absl::string_view name,
                                const CallContext& caller) override {
    Request r;
    r.mutable_transit_rotate_key()->set_name(std::string(name));
    return ResponseStatus(Handle(r, caller));
  }

  absl::StatusOr<store::TransitKeyInfo> TransitReadKey(
      absl::string_view name, const CallContext& caller) override {
    Request r;
    r.mutable_transit_read_key()->set_name(std::string(name));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return std::move(*response.mutable_transit_key());
  }

  // A one-item encrypt, decrypt or rewrap (`op_case`; `input` is the
  // plaintext or the ciphertext): through Direct(), or else as a one-item
  // batch through the message pipeline, on one CallMessages. The result
  // (ciphertext or plaintext) is moved out to the caller, who owns (and
  // wipes) it; the messages are wiped.
  absl::StatusOr<std::string> TransitOne(Request::OpCase op_case,
                                         absl::string_view name,
                                         absl::string_view input,
                                         absl::string_view context,
                                         const CallContext& caller) {
    std::string out;
    absl::Status item_status;
    std::optional<absl::Status> direct =
        Direct(op_case, name, /*create_only=*/false, CallerOrNull(caller),
               [&](const EngineCall& call) {
                 return transit_.ExecuteOne(op_case, name, input, context, call,
                                            &out, &item_status);
               });
    if (direct.has_value()) {
      if (!direct->ok()) return *std::move(direct);
      if (!item_status.ok()) return AsAnswered(item_status);
      return absl::StatusOr<std::string>(std::move(out));
    }
    CallMessages messages;
    Request& r = messages.request();
    store::TransitBatchRequest* batch =
        op_case == Request::kTransitEncrypt   ? r.mutable_transit_encrypt()
        : op_case == Request::kTransitDecrypt ? r.mutable_transit_decrypt()
                                              : r.mutable_transit_rewrap();
    batch->mutable_name()->assign(name.data(), name.size());
    store::TransitItem* item = batch->add_items();
    // Assigned in place: set_plaintext() would free a temporary copy.
    (op_case == Request::kTransitEncrypt ? item->mutable_plaintext()
                                         : item->mutable_ciphertext())
        ->assign(input.data(), input.size());
    item->mutable_context()->assign(context.data(), context.size());
    Response& response = messages.response();
    HandleAs(r, CallerOrNull(caller), &response);
    RETURN_IF_ERROR(ResponseStatus(response));
    if (response.transit_batch().items_size() != 1) {
      return absl::InternalError("transit answered no item");
    }
    store::TransitResultItem& result =
        *response.mutable_transit_batch()->mutable_items(0);
    if (result.code() != 0) {
      return AsAnswered(absl::Status(
          static_cast<absl::StatusCode>(result.code()), result.error()));
    }
    // Moved out, not copied. (A string on the arena is a std::string whose
    // buffer is on the heap: the move takes the buffer.)
    return std::move(op_case == Request::kTransitDecrypt
                         ? *result.mutable_plaintext()
                         : *result.mutable_ciphertext());
  }

  absl::StatusOr<std::string> TransitEncrypt(
      absl::string_view name, absl::string_view plaintext,
      absl::string_view context, const CallContext& caller) override {
    return TransitOne(Request::kTransitEncrypt, name, plaintext, context,
                      caller);
  }

  absl::StatusOr<std::string> TransitDecrypt(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context, const CallContext& caller) override {
    return TransitOne(Request::kTransitDecrypt, name, ciphertext, context,
                      caller);
  }

  absl::StatusOr<std::string> TransitRewrap(
      absl::string_view name, absl::string_view ciphertext,
      absl::string_view context, const CallContext& caller) override {
    return TransitOne(Request::kTransitRewrap, name, ciphertext, context,
                      caller);
  }

  // ------------------------------------------------------------ Policies

  absl::StatusOr<uint64_t> PolicyPut(absl::string_view name,
                                     absl::string_view document,
                                     const CallContext& caller) override {
    Request r;
    r.mutable_policy_put()->set_name(std::string(name));
    r.mutable_policy_put()->set_document(std::string(document));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return response.index();
  }

  absl::StatusOr<std::string> PolicyGet(absl::string_view name,
                                        const CallContext& caller) override {
    Request r;
    r.mutable_policy_get()->set_name(std::string(name));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return std::move(*response.mutable_policy()->mutable_document());
  }

  absl::StatusOr<std::vector<std::string>> PolicyList(
      const CallContext& caller) override {
    Request r;
    r.mutable_policy_list();
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return std::vector<std::string>(response.policy_list().names().begin(),
                                    response.policy_list().names().end());
  }

  absl::StatusOr<uint64_t> PolicyDelete(absl::string_view name,
                                        const CallContext& caller) override {
    Request r;
    r.mutable_policy_delete()->set_name(std::string(name));
    Response response = Handle(r, caller);
    RETURN_IF_ERROR(ResponseStatus(response));
    return response.index();
  }

  // --------------------------------------------------------------- Audit

  absl::StatusOr<std::string> AuditHash(absl::string_view sink,
                                        absl::string_view value) override {
    bool known = false;
    for (const auto& s : options_.audit_sinks) known = known || s.name == sink;
    if (!known) {
      return absl::NotFoundError(absl::StrCat("no audit sink \"", sink, "\""));
    }
    RETURN_IF_ERROR(EnsureAuditSalts());
    return audit_.HashValue(sink, value);
  }

  absl::Status ReopenAuditSinks() override { return audit_.ReopenSinks(); }
  bool FlushAudit(absl::Duration timeout) override {
    return audit_.Flush(timeout);
  }
  AuditStats audit_stats() override { return audit_.stats(); }

  // On an active node, the audit salts now (see OnStateChange).
  void CreateAuditSaltsIfActive() {
    if (audit_.enabled() && coordinator_->state() == HaState::kActive) {
      (void)EnsureAuditSalts();
    }
  }

  // Adds the options' sinks to the dispatcher (Create calls it once).
  absl::Status AddSinks() {
    for (const Options::AuditSinkOptions& o : options_.audit_sinks) {
      if (o.sink == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("options.audit_sinks: sink \"", o.name, "\" is null"));
      }
      audit::AuditDispatcher::SinkOptions so;
      so.name = o.name;
      so.sink = std::make_unique<LentSink>(o.sink);
      so.timeout = o.timeout;
      RETURN_IF_ERROR(audit_.AddSink(std::move(so)));
    }
    return absl::OkStatus();
  }

 private:
  static audit::AuditDispatcher::Options AuditOptionsOf(const Options& options,
                                                        Clock* clock) {
    audit::AuditDispatcher::Options o;
    o.clock = clock;
    o.observer = options.audit_observer;
    return o;
  }
  static access::RequestGate::Options GateOptionsOf(
      const Options& options, access::PolicySource* policies,
      audit::AuditDispatcher* audit, Clock* clock) {
    access::RequestGate::Options o;
    o.policies = policies;
    o.check_policies = options.enforce_policies;
    o.audit = options.audit_sinks.empty() ? nullptr : audit;
    o.clock = clock;
    return o;
  }

  // Loads every sink's salt from behind the barrier, the active creating
  // any that is missing (once: only-if-absent, so two racing actives keep
  // the first). Until then no entry is made: UNAVAILABLE.
  absl::Status EnsureAuditSalts() {
    if (salts_loaded_.load(std::memory_order_acquire)) return absl::OkStatus();
    Barrier* barrier = coordinator_->barrier();
    for (const Options::AuditSinkOptions& sink : options_.audit_sinks) {
      const std::string key = absl::StrCat(kAuditSaltPrefix, sink.name);
      for (int attempt = 0;; ++attempt) {
        absl::StatusOr<Entry> stored = barrier->Get(key);
        if (stored.ok()) {
          SecretBytes salt = SecretBytes::Copy(stored->value);
          WipeBuffer(&stored->value);
          RETURN_IF_ERROR(audit_.SetSalt(sink.name, std::move(salt)));
          break;
        }
        if (stored.status().code() != absl::StatusCode::kNotFound) {
          return absl::UnavailableError(
              absl::StrCat("audit: cannot load the salt of sink \"", sink.name,
                           "\": ", stored.status().message()));
        }
        absl::StatusOr<FenceToken> fence = coordinator_->WriteFence();
        if (!fence.ok() || attempt > 0) {
          return absl::UnavailableError(
              absl::StrCat("audit: the salt of sink \"", sink.name,
                           "\" is not stored yet; the active node creates it"));
        }
        SecretBytes fresh = SecretBytes::Random(32);
        absl::StatusOr<uint64_t> created;
        {
          WipedBatch batch;
          batch.Add(std::move(WriteOp::Put(key, fresh.view()).IfAbsent()));
          created = barrier->Commit(batch.ops(), *fence);
        }
        if (created.ok()) {
          RETURN_IF_ERROR(audit_.SetSalt(sink.name, std::move(fresh)));
          break;
        }
        if (created.status().code() != absl::StatusCode::kAborted) {
          return absl::UnavailableError(
              absl::StrCat("audit: cannot store the salt of sink \"", sink.name,
                           "\": ", created.status().message()));
        }
        // Another active stored one first: read it.
      }
    }
    salts_loaded_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }

  absl::Status ExecutePolicy(const Request& r, const EngineCall& call,
                             Response* response) {
    switch (r.op_case()) {
      case Request::kPolicyPut: {
        ASSIGN_OR_RETURN(
            uint64_t index,
            policies_.Put(r.policy_put().name(), r.policy_put().document(),
                          call.write_fence));
        response->set_index(index);
        return absl::OkStatus();
      }
      case Request::kPolicyDelete: {
        ASSIGN_OR_RETURN(
            uint64_t index,
            policies_.Delete(r.policy_delete().name(), call.write_fence));
        response->set_index(index);
        return absl::OkStatus();
      }
      case Request::kPolicyGet: {
        ASSIGN_OR_RETURN(std::string document,
                         policies_.GetDocument(r.policy_get().name()));
        store::PolicyDocument* out = response->mutable_policy();
        out->set_name(r.policy_get().name());
        *out->mutable_document() = std::move(document);
        return absl::OkStatus();
      }
      case Request::kPolicyList: {
        ASSIGN_OR_RETURN(std::vector<std::string> names, policies_.List());
        for (std::string& n : names) {
          response->mutable_policy_list()->add_names(std::move(n));
        }
        return absl::OkStatus();
      }
      default:
        return absl::InternalError("not a policy operation");
    }
  }

  // Forwards `request` to the active, carrying `caller` (null: none); the
  // answer goes into *out (empty), which may be on an arena.
  void Forward(const Request& request, const CallContext* caller,
               const std::string& leader, Response* out) {
    // A string wiped right after the call, not SecretBytes: the bytes live
    // for one call and the transport copies them into buffers of its own
    // at once (gRPC's are neither locked nor wiped), so an mlock()ed page
    // per forwarded request (mmap, mlock, madvise, munlock: about 5 us of
    // the hop) would keep nothing out of swap.
    std::string request_bytes;
    {
      Wiped<Request> forwarded;
      *forwarded = request;
      forwarded->set_forwarded(true);
      SetCaller(caller, forwarded.get());
      SetLegacyPresenceFlags(forwarded.get());
      SerializeInto(*forwarded, &request_bytes);
    }
    Response& response = *out;
    absl::StatusOr<std::string> bytes =
        options_.forwarder->Forward(leader, request_bytes);
    WipeBuffer(&request_bytes);
    if (!bytes.ok()) {
      SetStatus(absl::UnavailableError(
                    absl::StrCat("forwarding to the active node at ", leader,
                                 " failed: ", bytes.status().message())),
                &response);
      SetRoute(RouteDecision::Action::kForwardToActive, leader, &response);
      return;
    }
    const bool parsed = response.ParseFromString(*bytes);
    WipeBuffer(&*bytes);
    if (!parsed) {
      // What did parse may hold secrets: wiped before Clear() drops it.
      WipeMessage(&response);
      response.Clear();
      SetStatus(absl::UnavailableError(
                    absl::StrCat("the active node at ", leader,
                                 " answered bytes that do not parse")),
                &response);
      SetRoute(RouteDecision::Action::kForwardToActive, leader, &response);
    }
  }

  // Waits until the backend has reached `min_index`, for at most
  // Options::max_index_wait of the injected clock's monotonic time (so a
  // FakeClock drives it). The backend has no change notification that works
  // across processes (LMDB), so this polls its revision, backing off from
  // 50 us to 1 ms between reads.
  bool CaughtUp(uint64_t min_index) {
    const absl::Duration give_up =
        clock_->MonotonicNow() + options_.max_index_wait;
    absl::Duration pause = absl::Microseconds(50);
    while (true) {
      absl::StatusOr<uint64_t> revision =
          coordinator_->barrier()->backend()->Revision();
      if (revision.ok() && *revision >= min_index) return true;
      const absl::Duration now = clock_->MonotonicNow();
      if (now >= give_up) return false;
      clock_->SleepFor(std::min(pause, give_up - now));
      pause = std::min(pause * 2, absl::Milliseconds(1));
    }
  }

  // The engine call for `op` served on this node. Transit trusts its key
  // cache under call->active_fence: a node deposed before its loop noticed
  // must not, so its fence is verified against the backend (cheap); other
  // writes carry the write fence; a KV read takes kNoFence (without
  // building an error status on the hot read path). Not OK: a write that
  // has no fence (leadership lost, or sealed, between Route() and here),
  // to answer with route kUnavailable to the active (RoutedFailure).
  absl::Status PrepareCall(const Operation& op, uint64_t min_index,
                           EngineCall* call) {
    call->barrier = coordinator_->barrier();
    call->min_index = min_index;
    call->clock = clock_;  // read only by writes (EngineCall::Now)
    const bool write = op.kind == OperationKind::kWrite;
    absl::StatusOr<FenceToken> fence =
        op.engine == Engine::kTransit ? coordinator_->VerifiedWriteFence()
        : write                       ? coordinator_->WriteFence()
                                      : absl::StatusOr<FenceToken>(kNoFence);
    if (write) {
      if (!fence.ok()) return fence.status();
      call->write_fence = *fence;
    }
    if (fence.ok()) call->active_fence = *fence;
    return absl::OkStatus();
  }

  // An engine's failure as the call answers it (*leader set: with route
  // kUnavailable to that active). A write the backend refused for a stale
  // fence means leadership moved mid-write: nothing was applied, the
  // coordinator is told, and the caller retries at the new active.
  absl::Status EngineFailure(const absl::Status& status, OperationKind kind,
                             const EngineCall& call,
                             std::optional<std::string>* leader) {
    if (kind != OperationKind::kWrite || !IsStaleFence(status)) return status;
    coordinator_->ReportStaleFence(call.write_fence);
    *leader = coordinator_->Route(OperationKind::kWrite).leader_address;
    return absl::UnavailableError(absl::StrCat(
        "leadership was lost during the write; nothing was applied (",
        status.message(), ")"));
  }

  // A write with no fence after Route() served it here: `status` with
  // route kUnavailable to the active, into *response.
  void RoutedFailure(const absl::Status& status, Response* response) {
    SetStatus(status, response);
    SetRoute(RouteDecision::Action::kUnavailable,
             coordinator_->Route(OperationKind::kWrite).leader_address,
             response);
  }

  void Execute(const Request& request, const Operation& op,
               const CallContext* caller, IndexState index, Response* response,
               std::string* forwarded_to) {
    EngineCall call;
    if (absl::Status s = PrepareCall(op, request.min_index(), &call); !s.ok()) {
      RoutedFailure(s, response);
      return;
    }
    if (op.kind == OperationKind::kRead && request.min_index() > 0 &&
        index != IndexState::kReached &&
        (index == IndexState::kBehind || !CaughtUp(request.min_index()))) {
      RouteDecision d = coordinator_->Route(OperationKind::kWrite);
      if (request.forward_if_behind() && options_.forwarder != nullptr &&
          !request.forwarded() && !d.leader_address.empty() &&
          d.action != RouteDecision::Action::kServeLocally) {
        Forward(request, caller, d.leader_address, response);
        if (forwarded_to != nullptr) *forwarded_to = d.leader_address;
        return;
      }
      SetStatus(absl::UnavailableError(absl::StrCat(
                    "this node has not reached index ", request.min_index(),
                    " within ", absl::FormatDuration(options_.max_index_wait))),
                response);
      SetRoute(RouteDecision::Action::kUnavailable, d.leader_address, response);
      return;
    }
    absl::Status status = op.engine == Engine::kPolicy
                              ? ExecutePolicy(request, call, response)
                          : op.engine == Engine::kTransit
                              ? transit_.Execute(request, call, response)
                              : kv_.Execute(request, call, response);
    if (!status.ok()) {
      std::optional<std::string> leader;
      status = EngineFailure(status, op.kind, call, &leader);
      // No partial results next to an error.
      WipeMessage(response);
      response->clear_result();
      SetStatus(status, response);
      if (leader.has_value()) {
        SetRoute(RouteDecision::Action::kUnavailable, *leader, response);
      }
    }
  }

  const Options options_;
  HaCoordinator* const coordinator_;
  Clock* const clock_;
  const KvEngine kv_;
  TransitEngine transit_;
  access::StoredPolicies policies_;
  audit::AuditDispatcher audit_;
  access::RequestGate gate_;
  // Whether requests go through gate_ at all (policies or sinks).
  const bool gated_;
  std::atomic<bool> salts_loaded_{false};
  int seal_listener_ = 0;
};

}  // namespace

void store_testing::CountDirectCalls(bool on) {
  direct_calls_counted.store(on, std::memory_order_relaxed);
}

uint64_t store_testing::DirectCallsServed() {
  return direct_calls_served.load(std::memory_order_relaxed);
}

absl::StatusOr<std::unique_ptr<SecretStore>> SecretStore::Create(
    const Options& options) {
  if (options.coordinator == nullptr) {
    return absl::InvalidArgumentError("options.coordinator is required");
  }
  if (options.coordinator->barrier() == nullptr) {
    // A coordinator in a forked child (ha_coordinator.h).
    return absl::FailedPreconditionError(
        "the coordinator belongs to another process");
  }
  if (options.max_index_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.max_index_wait must not be negative");
  }
  if (options.default_max_versions == 0 || options.max_fields == 0 ||
      options.max_path_bytes == 0 || options.max_secret_bytes == 0) {
    return absl::InvalidArgumentError(
        "options: KV limits (max_path_bytes, max_fields, max_secret_bytes, "
        "default_max_versions) must be positive");
  }
  if (options.transit_max_encryptions_per_version == 0 ||
      options.transit_encryption_reservation == 0) {
    return absl::InvalidArgumentError(
        "options: transit_max_encryptions_per_version and "
        "transit_encryption_reservation must be positive");
  }
  std::set<std::string> sink_names;
  for (const auto& sink : options.audit_sinks) {
    if (sink.name.empty() || !sink_names.insert(sink.name).second ||
        sink.name.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          "options.audit_sinks: every sink needs a unique name without '/'");
    }
  }
  auto store = std::make_unique<SecretStoreImpl>(options);
  RETURN_IF_ERROR(store->AddSinks());
  store->CreateAuditSaltsIfActive();
  return std::unique_ptr<SecretStore>(std::move(store));
}

}  // namespace strongbox
