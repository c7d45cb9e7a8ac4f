#include "lib/access/request_gate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/access/request_access.h"

namespace strongbox::access {

void InMemoryPolicySource::Put(policy::Policy p) {
  MutexLock lock(&mu_);
  std::string name = p.name;
  policies_.insert_or_assign(std::move(name), std::move(p));
  cache_.clear();
}

void InMemoryPolicySource::Delete(absl::string_view name) {
  MutexLock lock(&mu_);
  policies_.erase(name);
  cache_.clear();
}

absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>>
InMemoryPolicySource::Compiled(absl::Span<const std::string> names,
                               FenceToken /*active_fence*/, bool* from_memory) {
  if (from_memory != nullptr) *from_memory = true;
  const std::string key = absl::StrJoin(names, "\n");
  MutexLock lock(&mu_);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  std::vector<const policy::Policy*> chosen;
  for (const std::string& n : names) {
    auto p = policies_.find(n);
    if (p != policies_.end()) chosen.push_back(&p->second);
  }
  auto set = std::make_shared<const policy::CompiledPolicySet>(
      policy::CompiledPolicySet::Compile(chosen));
  cache_.emplace(key, set);
  return set;
}

absl::StatusOr<bool> InMemoryPolicySource::AnyPolicy(
    FenceToken /*active_fence*/, bool* from_memory) {
  if (from_memory != nullptr) *from_memory = true;
  MutexLock lock(&mu_);
  return !policies_.empty();
}

RequestGate::RequestGate(const Options& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock()) {}

absl::Status RequestGate::Admit(const CallContext* caller,
                                const store::Request& request,
                                FenceToken active_fence, Admission* admission) {
  // The policy path is built only if a policy check or the audit reads it.
  const bool judged =
      options_.check_policies && caller != nullptr && !caller->root;
  absl::StatusOr<Access> access =
      judged || options_.audit != nullptr || !NamesOperation(request)
          ? RequiredAccess(request)
          : absl::StatusOr<Access>(Access());
  if (!access.ok()) return access.status();
  if (options_.audit != nullptr) {
    // What the audit entries need; nothing else reads it.
    admission->start = clock_->MonotonicNow();
    admission->path = access->path;
    admission->operation = store::Request::descriptor()
                               ->FindFieldByNumber(request.op_case())
                               ->name();
  }
  bool unanswered = false;
  const absl::Status verdict =
      Verdict(caller, *access, active_fence, &unanswered, nullptr);
  if (unanswered) return verdict;
  if (options_.audit == nullptr) return verdict;
  const CallContext anonymous;
  audit::AuditEvent event;
  event.caller = caller != nullptr ? caller : &anonymous;
  event.operation = admission->operation;
  event.path = admission->path;
  event.forwarded = request.forwarded();
  AuditFieldsOf(request, &event.fields);
  const absl::Status logged =
      options_.audit->LogRequest(event, &admission->audit_id);
  if (!verdict.ok()) {
    // A refusal is audited too, best effort: it stays a refusal whatever
    // the sinks say.
    event.outcome = verdict;
    event.fields.clear();
    event.elapsed = clock_->MonotonicNow() - admission->start;
    options_.audit->LogResponse(admission->audit_id, event);
    return verdict;
  }
  return logged;
}

absl::Status RequestGate::Verdict(const CallContext* caller,
                                  const Access& access, FenceToken active_fence,
                                  bool* unanswered, bool* from_memory) {
  *unanswered = false;
  if (from_memory != nullptr) *from_memory = true;
  absl::Status verdict;
  if (!options_.check_policies) {
    // Everyone passes.
  } else if (caller == nullptr) {
    absl::StatusOr<bool> any =
        options_.policies->AnyPolicy(active_fence, from_memory);
    if (!any.ok()) {
      *unanswered = true;
      return any.status();
    }
    if (*any) {
      verdict = absl::PermissionDeniedError(
          "permission denied: the request names no caller");
    }
  } else if (!caller->root) {
    absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>> set =
        options_.policies->Compiled(caller->policies, active_fence,
                                    from_memory);
    if (!set.ok()) {
      *unanswered = true;
      return set.status();
    }
    if (!(*set)->Allows(access.path, access.capability)) {
      verdict = absl::PermissionDeniedError(absl::StrCat(
          "permission denied: \"", CapabilityName(access.capability),
          "\" on \"", access.path, "\" is not granted to this caller"));
    }
  }
  return verdict;
}

absl::Status RequestGate::Judge(const CallContext* caller,
                                store::Request::OpCase op,
                                absl::string_view subject, bool create_only,
                                FenceToken active_fence, bool* from_memory) {
  *from_memory = true;
  if (options_.audit != nullptr) {
    return absl::InternalError(
        "an audited request must pass the gate through Admit");
  }
  const bool judged =
      options_.check_policies && caller != nullptr && !caller->root;
  absl::StatusOr<Access> access = judged
                                      ? RequiredAccess(op, subject, create_only)
                                      : absl::StatusOr<Access>(Access());
  if (!access.ok()) return access.status();
  bool unanswered = false;
  return Verdict(caller, *access, active_fence, &unanswered, from_memory);
}

void RequestGate::Complete(const CallContext* caller,
                           const store::Request& request,
                           const Admission& admission,
                           const store::Response& response,
                           absl::string_view forwarded_to) {
  if (options_.audit == nullptr) return;
  const CallContext anonymous;
  audit::AuditEvent event;
  event.caller = caller != nullptr ? caller : &anonymous;
  event.operation = admission.operation;
  event.path = admission.path;
  event.forwarded = request.forwarded();
  event.forwarded_to = std::string(forwarded_to);
  AuditFieldsOf(response, &event.fields);
  event.outcome =
      response.code() == 0
          ? absl::OkStatus()
          : absl::Status(static_cast<absl::StatusCode>(response.code()),
                         response.error());
  event.index = response.index();
  event.elapsed = clock_->MonotonicNow() - admission.start;
  options_.audit->LogResponse(admission.audit_id, event);
}

void RequestGate::AuditSealedRefusal(const CallContext* caller,
                                     const store::Request& request,
                                     const absl::Status& refusal) {
  if (options_.audit == nullptr) return;
  absl::StatusOr<Access> access = RequiredAccess(request);
  if (!access.ok()) return;
  const absl::Duration start = clock_->MonotonicNow();
  const CallContext anonymous;
  audit::AuditEvent event;
  event.caller = caller != nullptr ? caller : &anonymous;
  event.operation = store::Request::descriptor()
                        ->FindFieldByNumber(request.op_case())
                        ->name();
  event.path = access->path;
  event.forwarded = request.forwarded();
  uint64_t id = 0;
  (void)options_.audit->LogRequest(event, &id);
  event.outcome = refusal;
  event.elapsed = clock_->MonotonicNow() - start;
  options_.audit->LogResponse(id, event);
}

}  // namespace strongbox::access
