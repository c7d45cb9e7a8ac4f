#include "lib/access/stored_policies.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/util/status_macros.h"

namespace strongbox::access {
namespace {

std::string KeyOf(absl::string_view name) {
  return absl::StrCat(StoredPolicies::kStoragePrefix, name);
}

}  // namespace

absl::StatusOr<uint64_t> StoredPolicies::Put(absl::string_view name,
                                             absl::string_view document,
                                             FenceToken fence) {
  ASSIGN_OR_RETURN(policy::Policy parsed, policy::ParsePolicy(name, document));
  ASSIGN_OR_RETURN(uint64_t index, barrier_->Put(KeyOf(name), document, fence));
  MutexLock lock(&mu_);
  policies_.insert_or_assign(
      std::string(name),
      Cached{index, std::make_shared<const policy::Policy>(std::move(parsed))});
  return index;
}

absl::StatusOr<std::string> StoredPolicies::GetDocument(
    absl::string_view name) {
  RETURN_IF_ERROR(policy::ValidatePolicyName(name));
  ASSIGN_OR_RETURN(Entry entry, barrier_->Get(KeyOf(name)));
  return std::move(entry.value);
}

absl::StatusOr<std::vector<std::string>> StoredPolicies::List() {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   barrier_->List(kStoragePrefix));
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<uint64_t> StoredPolicies::Delete(absl::string_view name,
                                                FenceToken fence) {
  RETURN_IF_ERROR(policy::ValidatePolicyName(name));
  ASSIGN_OR_RETURN(uint64_t index, barrier_->Delete(KeyOf(name), fence));
  MutexLock lock(&mu_);
  policies_.erase(name);
  return index;
}

absl::StatusOr<StoredPolicies::Cached> StoredPolicies::Current(
    absl::string_view name) {
  if (!policy::ValidatePolicyName(name).ok()) return Cached{};  // never stored
  const std::string key = KeyOf(name);
  // The record's version, without opening it.
  absl::StatusOr<Entry> raw = barrier_->backend()->Get(key);
  uint64_t version = 0;
  if (raw.ok()) {
    version = raw->version;
  } else if (raw.status().code() != absl::StatusCode::kNotFound) {
    return raw.status();
  }
  {
    MutexLock lock(&mu_);
    auto it = policies_.find(name);
    if (it != policies_.end() && it->second.version == version) {
      return it->second;
    }
  }
  if (version == 0) {
    MutexLock lock(&mu_);
    policies_.erase(name);
    return Cached{};
  }
  absl::StatusOr<Entry> entry = barrier_->Get(key);
  if (!entry.ok()) {
    if (entry.status().code() == absl::StatusCode::kNotFound) return Cached{};
    return entry.status();
  }
  absl::StatusOr<policy::Policy> parsed =
      policy::ParsePolicy(name, entry->value);
  if (!parsed.ok()) {
    // Put stores only documents that parse: this one was not written by us.
    return absl::DataLossError(
        absl::StrCat("stored policy \"", name,
                     "\" does not parse: ", parsed.status().message()));
  }
  Cached fresh{entry->version,
               std::make_shared<const policy::Policy>(*std::move(parsed))};
  MutexLock lock(&mu_);
  auto& slot = policies_[name];
  if (slot.version <= fresh.version) slot = fresh;
  return fresh;
}

absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>>
StoredPolicies::Compiled(absl::Span<const std::string> names) {
  std::vector<Cached> current;
  current.reserve(names.size());
  std::vector<uint64_t> versions;
  versions.reserve(names.size());
  for (const std::string& n : names) {
    ASSIGN_OR_RETURN(Cached c, Current(n));
    versions.push_back(c.version);
    current.push_back(std::move(c));
  }
  const std::string key = absl::StrJoin(names, "\n");
  {
    MutexLock lock(&mu_);
    auto it = sets_.find(key);
    if (it != sets_.end() && it->second.versions == versions) {
      return it->second.set;
    }
  }
  std::vector<const policy::Policy*> chosen;
  for (const Cached& c : current) {
    if (c.policy != nullptr) chosen.push_back(c.policy.get());
  }
  auto set = std::make_shared<const policy::CompiledPolicySet>(
      policy::CompiledPolicySet::Compile(chosen));
  MutexLock lock(&mu_);
  // Callers' policy lists are few in practice; a host that invents a new
  // list per request must not grow this without bound.
  if (sets_.size() >= kMaxCachedSets) sets_.clear();
  sets_.insert_or_assign(key, CachedSet{std::move(versions), set});
  return set;
}

absl::StatusOr<bool> StoredPolicies::AnyPolicy() {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   barrier_->List(kStoragePrefix));
  return !names.empty();
}

}  // namespace strongbox::access
