// StoredPolicies: named policy documents kept behind the barrier, the
// PolicySource of a store (issue 15).
//
// Storage: one record per policy at "policy/<name>" (kStoragePrefix),
// sealed by the barrier like every value; the record holds the document
// text as the host gave it (policy-get returns it unchanged). Put parses
// the document first (ParsePolicy), so a bad document stores nothing (D6).
// Put and Delete are writes: the caller (the active) passes its fence.
// Every Put and Delete also rewrites the epoch record (kEpochKey) in the
// same atomic commit, so the epoch record's backend version changes with
// every policy change. (A reload lists the policies whether or not the
// epoch record exists, so policies written before it existed are found; a
// writer that does not move it is noticed only by a node that reloads.)
//
// Cache (the Transit key cache's protocol, transit_key_cache.h): every node
// keeps the answer to "does any policy exist", the parsed policies and the
// compiled sets, all valid for one epoch version.
//   - Who invalidates. A Put or Delete on this node drops the whole cache
//     when it ends, whatever its outcome; Clear() drops it too (sealed,
//     lost leadership). Nothing loaded before a drop is installed after it
//     (the cache generation).
//   - What a call trusts. On the active (the caller passes its fence,
//     verified against the backend at most every verify_interval), a cache
//     validated under that same fence while no policy write on this node
//     was in flight is used with no backend call at all: the active is the
//     cluster's only policy writer and its writes drop the cache. Any other
//     call (every standby call, a fence of a new term) reads the epoch
//     record's backend version (one Get, no decryption) and reloads (one
//     List, then each named record on demand) only when it changed. So the
//     request path never lists storage unless policies changed, and a node
//     serves the policies as of its read: on a linearizable backend, a
//     policy change acknowledged on the active is in force on every node
//     for the next request (after min_index, SecretStore's catch-up).
//
// Thread-safe. No lock is held across backend I/O.
#ifndef STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_
#define STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/access/request_gate.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"
#include "lib/util/mutex.h"
#include "strongbox/backend.h"
#include "strongbox/barrier.h"

namespace strongbox::access {

class StoredPolicies : public PolicySource {
 public:
  static constexpr absl::string_view kStoragePrefix = "policy/";
  // Rewritten with every policy change (its version is the cache's epoch).
  static constexpr absl::string_view kEpochKey = "policy-epoch";

  // `barrier` is not owned and must outlive this object.
  explicit StoredPolicies(Barrier* barrier) : barrier_(barrier) {}

  // Validates and stores `document` as policy `name`; the backend index.
  // INVALID_ARGUMENT for a bad name or document (nothing stored).
  absl::StatusOr<uint64_t> Put(absl::string_view name,
                               absl::string_view document, FenceToken fence);
  // The stored document text. NOT_FOUND if there is none.
  absl::StatusOr<std::string> GetDocument(absl::string_view name);
  // Every policy name, sorted.
  absl::StatusOr<std::vector<std::string>> List();
  // Removes policy `name` (absent is fine); the backend index.
  absl::StatusOr<uint64_t> Delete(absl::string_view name, FenceToken fence);

  // Drops the cache (the node sealed or lost leadership).
  void Clear();

  // PolicySource.
  absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>> Compiled(
      absl::Span<const std::string> names, FenceToken active_fence,
      bool* from_memory) override;
  absl::StatusOr<bool> AnyPolicy(FenceToken active_fence,
                                 bool* from_memory) override;

 private:
  // What a validation found: the cache generation it is valid for.
  struct Validated {
    uint64_t generation = 0;
    bool any = false;
  };

  static constexpr size_t kMaxCachedSets = 1024;

  // Makes the cache current for this call (see the file comment).
  // *from_memory: whether it answered without reading storage.
  absl::StatusOr<Validated> Validate(FenceToken active_fence,
                                     bool* from_memory);
  // Policy `name` as of `generation` (null if absent), from the cache or
  // storage.
  absl::StatusOr<std::shared_ptr<const policy::Policy>> Load(
      const std::string& name, uint64_t generation);
  // Write bookkeeping: a validation that overlaps a write is never trusted,
  // and the write drops the cache when it ends.
  void BeginWrite();
  void EndWrite();
  // Drops the cached policies and sets and moves to a new generation.
  void DropLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes the trusted fence and the state it vouches for to the
  // lock-free fast path of Validate (fast_seq_, fast_fence_, fast_state_).
  // Called after every change to either.
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Barrier* const barrier_;

  Mutex mu_;
  // Whether the fields below describe storage as of epoch_version_.
  bool validated_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t epoch_version_ ABSL_GUARDED_BY(mu_) = 0;  // 0: no epoch record
  bool any_ ABSL_GUARDED_BY(mu_) = false;
  // The active fence under which the cache is known current (kNoFence: read
  // the epoch record first).
  FenceToken trusted_fence_ ABSL_GUARDED_BY(mu_) = kNoFence;
  // ++ at the start and end of every write on this node, and on Clear.
  uint64_t write_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // ++ whenever the cache is dropped: loads begun before do not install.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // trusted_fence_ (kNoFence unless validated_), and generation_ << 1 |
  // any_, for Validate without mu_; written only by PublishLocked, under
  // the sequence count fast_seq_ (odd while they are written).
  std::atomic<uint64_t> fast_seq_{0};
  std::atomic<FenceToken> fast_fence_{kNoFence};
  std::atomic<uint64_t> fast_state_{0};
  // Parsed policies of this generation; null: absent from storage.
  absl::flat_hash_map<std::string, std::shared_ptr<const policy::Policy>>
      policies_ ABSL_GUARDED_BY(mu_);

  // Compiled sets by the caller's list of policy names, looked up with the
  // caller's own list (no key built per request). Hashes and compares a
  // list as a span, so a stored vector and a caller's span meet.
  struct NamesHash {
    using is_transparent = void;
    size_t operator()(absl::Span<const std::string> names) const {
      return absl::Hash<absl::Span<const std::string>>()(names);
    }
  };
  struct NamesEq {
    using is_transparent = void;
    bool operator()(absl::Span<const std::string> a,
                    absl::Span<const std::string> b) const {
      return a == b;
    }
  };
  // The compiled sets have a lock of their own, a reader lock sharded per
  // CPU: every request of a caller with policies looks one up, and
  // under mu_ all of them would take one mutex. Lock order: mu_, then
  // sets_mu_. sets_generation_ is generation_, copied by DropLocked; sets_
  // holds sets of that generation only.
  SharedMutex sets_mu_;
  uint64_t sets_generation_ ABSL_GUARDED_BY(sets_mu_) = 0;
  absl::flat_hash_map<std::vector<std::string>,
                      std::shared_ptr<const policy::CompiledPolicySet>,
                      NamesHash, NamesEq>
      sets_ ABSL_GUARDED_BY(sets_mu_);
};

}  // namespace strongbox::access

#endif  // STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_
