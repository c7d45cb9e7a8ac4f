// CallContext: who is asking, as the host vouches for it, and the
// capabilities a path policy grants.
//
// The host authenticates its callers (mTLS, tokens, whatever it has);
// strongbox authorizes them. A CallContext names the caller (an id the host
// vouches for, recorded in audit entries) and the names of the policies the
// host assigned to it. Policies are Vault's path policies: each rule pairs a
// path pattern with a set of capabilities (lib/policy/policy.h describes the
// JSON format, the matching and the priority order).
//
// No caller: a default-constructed CallContext (no id, no policies, not
// root) stands for "no caller"; it passes while no policy exists and is
// refused once one does.
//
// Root: a context with `root` set is the host's own administrative context;
// it bypasses policy evaluation (it is still audited). A host must never
// build one from a remote caller's claims.
//
// Plain value types; thread-compatible.
#ifndef STRONGBOX_CALL_CONTEXT_H_
#define STRONGBOX_CALL_CONTEXT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace strongbox {

// One capability of a policy rule (Vault's names). `kDeny` on the winning
// rule for a path refuses everything, whatever else any policy grants.
enum class Capability : uint16_t {
  kCreate = 1 << 0,
  kRead = 1 << 1,
  kUpdate = 1 << 2,
  kPatch = 1 << 3,
  kDelete = 1 << 4,
  kList = 1 << 5,
  kSudo = 1 << 6,
  kDeny = 1 << 7,
};

// "create", "read", "update", "patch", "delete", "list", "sudo", "deny".
constexpr absl::string_view CapabilityName(Capability capability) {
  switch (capability) {
    case Capability::kCreate:
      return "create";
    case Capability::kRead:
      return "read";
    case Capability::kUpdate:
      return "update";
    case Capability::kPatch:
      return "patch";
    case Capability::kDelete:
      return "delete";
    case Capability::kList:
      return "list";
    case Capability::kSudo:
      return "sudo";
    case Capability::kDeny:
      return "deny";
  }
  return "?";
}

// Every capability, in the enum's order.
inline constexpr Capability kAllCapabilities[] = {
    Capability::kCreate, Capability::kRead,   Capability::kUpdate,
    Capability::kPatch,  Capability::kDelete, Capability::kList,
    Capability::kSudo,   Capability::kDeny,
};

// A set of capabilities (a bit set). Cheap to copy.
class CapabilitySet {
 public:
  constexpr CapabilitySet() = default;
  constexpr explicit CapabilitySet(uint16_t bits) : bits_(bits) {}
  constexpr CapabilitySet(Capability c)  // NOLINT: implicit by design
      : bits_(static_cast<uint16_t>(c)) {}

  constexpr bool Has(Capability c) const {
    return (bits_ & static_cast<uint16_t>(c)) != 0;
  }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr uint16_t bits() const { return bits_; }
  CapabilitySet& Add(CapabilitySet other) {
    bits_ |= other.bits_;
    return *this;
  }
  friend constexpr bool operator==(CapabilitySet a, CapabilitySet b) {
    return a.bits_ == b.bits_;
  }
  friend constexpr bool operator!=(CapabilitySet a, CapabilitySet b) {
    return a.bits_ != b.bits_;
  }
  friend constexpr CapabilitySet operator|(CapabilitySet a, CapabilitySet b) {
    return CapabilitySet(static_cast<uint16_t>(a.bits_ | b.bits_));
  }

  // The names joined by ',' in the enum's order ("read,list"); "" if empty.
  std::string ToString() const;

 private:
  uint16_t bits_ = 0;
};

// Who makes a call. See the file comment.
struct CallContext {
  // The caller's id as the host authenticated it; recorded in audit
  // entries, never used for authorization. Default: "".
  std::string caller;
  // The names of the policies that apply to this caller; their rules are
  // unioned per pattern. Default: none (every path refused).
  std::vector<std::string> policies;
  // The host's own administrative context: no policy check. Default: false.
  bool root = false;

  // No caller at all (the default): refused once any policy exists.
  bool anonymous() const { return caller.empty() && policies.empty() && !root; }

  static CallContext Root(std::string caller = "root") {
    CallContext c;
    c.caller = std::move(caller);
    c.root = true;
    return c;
  }
  static CallContext As(std::string caller, std::vector<std::string> policies) {
    CallContext c;
    c.caller = std::move(caller);
    c.policies = std::move(policies);
    return c;
  }
};

inline std::string CapabilitySet::ToString() const {
  std::string out;
  for (Capability c : kAllCapabilities) {
    if (!Has(c)) continue;
    if (!out.empty()) out += ',';
    const absl::string_view name = CapabilityName(c);
    out.append(name.data(), name.size());
  }
  return out;
}

}  // namespace strongbox

#endif  // STRONGBOX_CALL_CONTEXT_H_
