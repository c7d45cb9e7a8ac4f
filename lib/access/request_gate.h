// RequestGate: the front of the request pipeline (DESIGN.md): the caller's
// policies must allow the operation on its path (PERMISSION_DENIED
// otherwise), then the audit sinks must accept the request entry
// (UNAVAILABLE otherwise, nothing executed); after execution, Complete()
// writes the response entry, whose failure never changes the response.
//
// SecretStore::Handle calls Admit before routing and Complete after it, on
// every node (a forwarded request carries its caller and is checked again on
// the active). Policies come from a PolicySource: StoredPolicies (behind the
// barrier) implements it; InMemoryPolicySource serves tests and hosts that keep
// policies themselves.
//
// Callers: a root CallContext skips the policy check (it is still
// audited). A request with no caller (null) passes only while no policy
// exists at all (a store that has not adopted policies behaves as before).
//
// Thread-safe.
#ifndef STRONGBOX_LIB_ACCESS_REQUEST_GATE_H_
#define STRONGBOX_LIB_ACCESS_REQUEST_GATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "lib/access/request_access.h"
#include "lib/audit/audit_dispatcher.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"
#include "lib/util/mutex.h"
#include "strongbox/backend.h"
#include "strongbox/call_context.h"
#include "strongbox/clock.h"
#include "strongbox/requests.pb.h"

namespace strongbox::access {

class PolicySource {
 public:
  virtual ~PolicySource() = default;
  // `active_fence`, in both calls: this node's fence if it is the active
  // and its grant was verified against the backend for this request
  // (HaCoordinator::VerifiedWriteFence), kNoFence otherwise. A source may
  // trust what it cached under that fence (StoredPolicies does).
  //
  // `from_memory` (may be null), in both calls: set to whether the answer
  // came from memory alone, with no call to storage or anything else that
  // can wait. A caller that checked something time-bound (the lease) before
  // asking needs to check it again unless it did.
  //
  // The compiled union of the named policies (unknown names add nothing).
  // Never null when OK. An error (storage unreachable, sealed, a record
  // that fails to open) refuses the request with that status.
  virtual absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>>
  Compiled(absl::Span<const std::string> names, FenceToken active_fence,
           bool* from_memory) = 0;
  // Whether any policy exists.
  virtual absl::StatusOr<bool> AnyPolicy(FenceToken active_fence,
                                         bool* from_memory) = 0;
};

// Policies held in memory; compiled sets cached per list of names until the
// next Put/Delete.
class InMemoryPolicySource : public PolicySource {
 public:
  void Put(policy::Policy p);
  void Delete(absl::string_view name);
  absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>> Compiled(
      absl::Span<const std::string> names, FenceToken active_fence,
      bool* from_memory) override;
  absl::StatusOr<bool> AnyPolicy(FenceToken active_fence,
                                 bool* from_memory) override;

 private:
  Mutex mu_;
  absl::flat_hash_map<std::string, policy::Policy> policies_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string,
                      std::shared_ptr<const policy::CompiledPolicySet>>
      cache_ ABSL_GUARDED_BY(mu_);  // key: names joined by '\n'
};

class RequestGate {
 public:
  struct Options {
    // Where policies come from. Not owned. REQUIRED when check_policies.
    PolicySource* policies = nullptr;
    // Judge callers by their policies. Off: every caller passes (entries
    // are still audited). Default: true.
    bool check_policies = true;
    // Audit sinks. Not owned. Optional: no auditing.
    audit::AuditDispatcher* audit = nullptr;
    // For the response entry's elapsed time. Not owned. Default:
    // RealClock().
    Clock* clock = nullptr;
  };

  // What Admit hands Complete.
  struct Admission {
    uint64_t audit_id = 0;
    absl::Duration start;
    std::string path;
    std::string operation;
  };

  explicit RequestGate(const Options& options);

  // OK: execute the request, then call Complete. PERMISSION_DENIED: the
  // policies refuse (the refusal is audited, best effort). UNAVAILABLE: no
  // audit sink accepted the request entry. INVALID_ARGUMENT: no operation.
  // The PolicySource's error if it cannot answer. `active_fence`: as
  // PolicySource's (kNoFence when not known).
  absl::Status Admit(const CallContext* caller, const store::Request& request,
                     FenceToken active_fence, Admission* admission);
  // The policy verdict alone, for a request that needs no audit entry:
  // SecretStore's calls that build no request message. `op`, `subject`
  // (the path, prefix or key name the request names) and `create_only` (a
  // kv_put with cas = 0) stand for the request, as in RequiredAccess. The
  // same codes as Admit. INTERNAL when audit sinks are configured: an
  // audited request goes through Admit, which records it. *from_memory:
  // whether the verdict came from memory alone (PolicySource).
  absl::Status Judge(const CallContext* caller, store::Request::OpCase op,
                     absl::string_view subject, bool create_only,
                     FenceToken active_fence, bool* from_memory);
  // Writes the response entry. Never fails. `forwarded_to`: the active's
  // address if this node forwarded the request there (else empty).
  void Complete(const CallContext* caller, const store::Request& request,
                const Admission& admission, const store::Response& response,
                absl::string_view forwarded_to = {});
  // Audits a request refused before it could be judged because the node is
  // sealed: a request entry and a response entry with `refusal`, best
  // effort (the refusal stands whatever the sinks say), and with no fields
  // (a sealed node cannot read its salts, so it records no value, hashed or
  // not). Caller, operation and path are recorded as for any request.
  void AuditSealedRefusal(const CallContext* caller,
                          const store::Request& request,
                          const absl::Status& refusal);

 private:
  // The policies' verdict on `access` (read only when the caller is
  // judged: not null, not root): OK or PERMISSION_DENIED; or the
  // PolicySource's error, with *unanswered set. *from_memory (may be
  // null): as PolicySource says; true when no source was asked.
  absl::Status Verdict(const CallContext* caller, const Access& access,
                       FenceToken active_fence, bool* unanswered,
                       bool* from_memory);

  const Options options_;
  Clock* const clock_;
};

}  // namespace strongbox::access

#endif  // STRONGBOX_LIB_ACCESS_REQUEST_GATE_H_
