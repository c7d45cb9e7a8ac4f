// Secret-bearing protobuf messages in lib/store are wiped by their type,
// not by remembering at each call site (STYLE 14, invariant D5):
//   - Wiped<M> owns a message and wipes every string and bytes field in it
//     (WipeMessage) before it is freed; every request, response and record
//     the store builds, parses or copies lives in one, except a one-item
//     Transit call's request and response, which live on an arena that
//     wipes both before it is freed (CallMessages, secret_store.cc);
//   - SerializeInto() serializes straight into its final, exactly sized
//     buffer (a WriteOp's value, a SecretBytes), so no serialization
//     temporary is freed;
//   - WipedBatch holds the WriteOps of one commit and wipes their values;
//   - AssignFields() / ClearFields() replace or drop a secret map, wiping
//     the values it held (a plain map assignment frees them unwiped).
// Internal to strongbox.
#ifndef STRONGBOX_LIB_STORE_WIPE_H_
#define STRONGBOX_LIB_STORE_WIPE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/backend.h"
#include "strongbox/requests.pb.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/secret_store.h"

namespace strongbox {

// WipeMessage() for the store's own secret-bearing messages, chosen at
// compile time (Wiped<M> uses them): no reflection, about 10x faster.
void WipeMessage(store::Request* message);
void WipeMessage(store::Response* message);
void WipeMessage(store::KvSecret* message);
void WipeMessage(store::KvMetadataRecord* message);
void WipeMessage(store::KvDataRecord* message);

// A message that is wiped (WipeMessage) when destroyed or assigned over.
// Move-only: moving leaves the source empty (protobuf moves by swapping).
template <typename M>
class Wiped {
 public:
  Wiped() = default;
  explicit Wiped(M&& message) : message_(std::move(message)) {}
  ~Wiped() { WipeMessage(&message_); }
  Wiped(Wiped&& other) noexcept : message_(std::move(other.message_)) {}
  Wiped& operator=(Wiped&& other) noexcept {
    if (this != &other) {
      WipeMessage(&message_);
      message_.Clear();
      message_.Swap(&other.message_);
    }
    return *this;
  }
  Wiped(const Wiped&) = delete;
  Wiped& operator=(const Wiped&) = delete;

  M* operator->() { return &message_; }
  const M* operator->() const { return &message_; }
  M& operator*() { return message_; }
  const M& operator*() const { return message_; }
  M* get() { return &message_; }

 private:
  M message_;
};

// WipeMessage() without the fast paths for the store's own messages (the
// reference the tests hold those to): every string and bytes field.
void WipeMessageByReflection(google::protobuf::Message* message);

// Serializes `message` into `out`, sized exactly (no reallocation, no
// temporary). Returns false if the message is too large to serialize.
bool SerializeInto(const google::protobuf::Message& message, std::string* out);

// A Put of `message`'s serialization at `key`, built in place.
WriteOp PutMessage(absl::string_view key,
                   const google::protobuf::Message& message);

// Overwrites all of `s`'s buffer (up to capacity(), where a string that
// shrank or was moved from keeps old bytes); its contents stay as they were
// only in size: the bytes are gone.
void WipeBuffer(std::string* s);

// An atomic batch under construction whose values are wiped when it is
// destroyed, and whose growth wipes what it leaves behind (a moved-from
// short string keeps its bytes in its inline buffer).
class WipedBatch {
 public:
  WipedBatch() = default;
  ~WipedBatch();
  WipedBatch(const WipedBatch&) = delete;
  WipedBatch& operator=(const WipedBatch&) = delete;

  void Add(WriteOp op);
  // A new, empty op at the end, built where it stays (no move, nothing
  // left behind to wipe). Valid until the next Add or Emplace.
  WriteOp& Emplace();
  absl::Span<const WriteOp> ops() const { return ops_; }
  // For Barrier::CommitInPlace, which seals the values where they are.
  absl::Span<WriteOp> mutable_ops() { return absl::MakeSpan(ops_); }
  // After a CommitInPlace that succeeded: every value now holds only its
  // stored (sealed) bytes, so none is wiped. (After a failed one, values
  // may still hold plaintext: do not call this.)
  void MarkSealed() { sealed_ = true; }

 private:
  // Makes room for one more op, wiping what a move leaves behind.
  void Reserve();

  // Inline for the engines' usual batches (a put: data, prune, metadata).
  absl::InlinedVector<WriteOp, 4> ops_;
  bool sealed_ = false;
};

using SecretFields = google::protobuf::Map<std::string, std::string>;

// Wipes the values `to` holds, then copies `from` into it.
void AssignFields(const SecretFields& from, SecretFields* to);
// Wipes the values `fields` holds, then empties it.
void ClearFields(SecretFields* fields);

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_WIPE_H_
