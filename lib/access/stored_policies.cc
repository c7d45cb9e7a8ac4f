#include "lib/access/stored_policies.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/util/status_macros.h"

namespace strongbox::access {
namespace {

std::string KeyOf(absl::string_view name) {
  return absl::StrCat(StoredPolicies::kStoragePrefix, name);
}

// The epoch record's value: only its version matters.
constexpr absl::string_view kEpochValue = "1";

// A generation no cache ever has: what is loaded for it is not kept.
constexpr uint64_t kNoGeneration = ~uint64_t{0};

}  // namespace

void StoredPolicies::DropLocked() {
  policies_.clear();
  validated_ = false;
  trusted_fence_ = kNoFence;
  ++generation_;
  {
    WriterLock lock(&sets_mu_);
    sets_.clear();
    sets_generation_ = generation_;
  }
  PublishLocked();
}

void StoredPolicies::PublishLocked() {
  // A sequence lock: the count is odd while the pair is written, and moves
  // on with every publish, so a reader that sees the same even count on
  // both sides of reading the pair read one publish's pair (the fence alone
  // would not do: it stays the same across publishes). Sequentially
  // consistent throughout: the loads are plain on x86, and publishes are
  // rare.
  const uint64_t seq = fast_seq_.load(std::memory_order_relaxed);
  fast_seq_.store(seq + 1);
  fast_fence_.store(validated_ ? trusted_fence_ : kNoFence);
  fast_state_.store((generation_ << 1) | (any_ ? 1 : 0));
  fast_seq_.store(seq + 2);
}

void StoredPolicies::BeginWrite() {
  MutexLock lock(&mu_);
  ++write_epoch_;
  ++writes_in_flight_;
  trusted_fence_ = kNoFence;
  PublishLocked();
}

void StoredPolicies::EndWrite() {
  MutexLock lock(&mu_);
  ++write_epoch_;
  --writes_in_flight_;
  // Whatever the outcome (it may be unknown): the next call re-reads.
  DropLocked();
}

void StoredPolicies::Clear() {
  MutexLock lock(&mu_);
  ++write_epoch_;
  DropLocked();
}

absl::StatusOr<uint64_t> StoredPolicies::Put(absl::string_view name,
                                             absl::string_view document,
                                             FenceToken fence) {
  RETURN_IF_ERROR(policy::ParsePolicy(name, document).status());
  const WriteOp ops[] = {WriteOp::Put(KeyOf(name), document),
                         WriteOp::Put(kEpochKey, kEpochValue)};
  BeginWrite();
  absl::StatusOr<uint64_t> index = barrier_->Commit(ops, fence);
  EndWrite();
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
  const WriteOp ops[] = {WriteOp::Delete(KeyOf(name)),
                         WriteOp::Put(kEpochKey, kEpochValue)};
  BeginWrite();
  absl::StatusOr<uint64_t> index = barrier_->Commit(ops, fence);
  EndWrite();
  return index;
}

absl::StatusOr<StoredPolicies::Validated> StoredPolicies::Validate(
    FenceToken fence, bool* from_memory) {
  *from_memory = true;
  if (fence != kNoFence) {
    // Trusted under this fence, read without mu_ (PublishLocked).
    const uint64_t seq = fast_seq_.load();
    if ((seq & 1) == 0 && fast_fence_.load() == fence) {
      const uint64_t state = fast_state_.load();
      if (fast_seq_.load() == seq) {
        return Validated{state >> 1, (state & 1) != 0};
      }
    }
  }
  uint64_t write_epoch = 0;
  bool quiet = false;  // no policy write in flight on this node
  {
    MutexLock lock(&mu_);
    if (validated_ && fence != kNoFence && trusted_fence_ == fence) {
      return Validated{generation_, any_};  // no backend call
    }
    write_epoch = write_epoch_;
    quiet = writes_in_flight_ == 0;
  }
  *from_memory = false;
  const bool may_trust = fence != kNoFence && quiet;
  // The epoch record's version, without opening it.
  absl::StatusOr<Entry> raw = barrier_->backend()->Get(kEpochKey);
  uint64_t version = 0;
  if (raw.ok()) {
    version = raw->version;
  } else if (raw.status().code() != absl::StatusCode::kNotFound) {
    return raw.status();
  }
  {
    MutexLock lock(&mu_);
    if (validated_ && epoch_version_ == version) {
      if (may_trust && write_epoch_ == write_epoch) {
        trusted_fence_ = fence;
        PublishLocked();
      }
      return Validated{generation_, any_};
    }
  }
  // Changed (or never read): which policies exist, read after the epoch so
  // at least as new as it. Listed even without an epoch record, so that
  // policies stored before it existed are found on every (re)load.
  absl::StatusOr<std::vector<std::string>> names =
      barrier_->List(kStoragePrefix);
  if (!names.ok()) return names.status();
  const bool any = !names->empty();
  MutexLock lock(&mu_);
  if (write_epoch_ != write_epoch) {
    // A write on this node began or ended meanwhile: answer this call (it
    // overlapped the write, so either state is right) but cache nothing.
    return Validated{kNoGeneration, any};
  }
  if (!validated_ || epoch_version_ < version) {
    DropLocked();
    validated_ = true;
    epoch_version_ = version;
    any_ = any;
  }
  // (If another call validated at a newer epoch meanwhile, use that.)
  if (may_trust) trusted_fence_ = fence;
  PublishLocked();
  return Validated{generation_, any_};
}

absl::StatusOr<std::shared_ptr<const policy::Policy>> StoredPolicies::Load(
    const std::string& name, uint64_t generation) {
  if (!policy::ValidatePolicyName(name).ok()) return nullptr;  // never stored
  {
    MutexLock lock(&mu_);
    if (generation == generation_) {
      auto it = policies_.find(name);
      if (it != policies_.end()) return it->second;
    }
  }
  std::shared_ptr<const policy::Policy> loaded;
  absl::StatusOr<Entry> entry = barrier_->Get(KeyOf(name));
  if (entry.ok()) {
    absl::StatusOr<policy::Policy> parsed =
        policy::ParsePolicy(name, entry->value);
    if (!parsed.ok()) {
      // Put stores only documents that parse: this one was not written by
      // us.
      return absl::DataLossError(
          absl::StrCat("stored policy \"", name,
                       "\" does not parse: ", parsed.status().message()));
    }
    loaded = std::make_shared<const policy::Policy>(*std::move(parsed));
  } else if (entry.status().code() != absl::StatusCode::kNotFound) {
    return entry.status();
  }
  MutexLock lock(&mu_);
  if (generation == generation_) policies_.insert_or_assign(name, loaded);
  return loaded;
}

absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>>
StoredPolicies::Compiled(absl::Span<const std::string> names,
                         FenceToken active_fence, bool* from_memory) {
  bool validated_from_memory = false;
  ASSIGN_OR_RETURN(const Validated v,
                   Validate(active_fence, &validated_from_memory));
  // A set compiled now reads storage only when some policy exists.
  if (from_memory != nullptr) *from_memory = validated_from_memory && !v.any;
  {
    ReaderLock lock(&sets_mu_);
    if (v.generation == sets_generation_) {
      auto it = sets_.find(names);
      if (it != sets_.end()) {
        if (from_memory != nullptr) *from_memory = validated_from_memory;
        return it->second;
      }
    }
  }
  std::vector<std::shared_ptr<const policy::Policy>> loaded;
  loaded.reserve(names.size());
  std::vector<const policy::Policy*> chosen;
  if (v.any) {
    for (const std::string& n : names) {
      ASSIGN_OR_RETURN(std::shared_ptr<const policy::Policy> p,
                       Load(n, v.generation));
      if (p != nullptr) chosen.push_back(p.get());
      loaded.push_back(std::move(p));
    }
  }
  auto set = std::make_shared<const policy::CompiledPolicySet>(
      policy::CompiledPolicySet::Compile(chosen));
  MutexLock lock(&mu_);
  if (v.generation == generation_) {
    WriterLock sets_lock(&sets_mu_);
    // Callers' policy lists are few in practice; a host that invents a new
    // list per request must not grow this without bound.
    if (sets_.size() >= kMaxCachedSets) sets_.clear();
    sets_.insert_or_assign(std::vector<std::string>(names.begin(), names.end()),
                           set);
  }
  return set;
}

absl::StatusOr<bool> StoredPolicies::AnyPolicy(FenceToken active_fence,
                                               bool* from_memory) {
  bool validated_from_memory = false;
  ASSIGN_OR_RETURN(const Validated v,
                   Validate(active_fence, &validated_from_memory));
  if (from_memory != nullptr) *from_memory = validated_from_memory;
  return v.any;
}

}  // namespace strongbox::access
