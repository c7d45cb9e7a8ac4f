// ClusterIdentity: the TLS identity of one node of a strongbox cluster,
// kept behind the barrier, so only unsealed members of one cluster can
// authenticate to each other (what a transport add-on such as
// //:grpc_transport uses for mutual TLS; operators configure nothing).
//
// The cluster CA. The first active node after initialization generates an
// EC P-256 key and a self-signed CA certificate (its common name carries a
// random id, so two clusters' CAs never share a name) and stores both as one
// record behind the barrier (path "cluster/ca", lib/cluster/records.proto),
// written with its fence. RotateCa() on the active replaces it; the record
// keeps the previous CA certificate, so the trust bundle accepts the old
// and the new CA while nodes follow.
//
// The node's leaf. Every unsealed node that can read the record mints its
// own key pair and a short-lived certificate signed by the CA: common name
// and URI SAN "urn:strongbox:node:<node_id>", the advertise address's host
// as an IP or DNS SAN, and the fixed DNS SAN kClusterServerName, which a
// client names as the TLS server name (nodes' addresses are opaque to
// strongbox). The leaf key exists only in memory (SecretBytes) and is wiped
// when the barrier seals, before Seal() returns (D2). The CA key is read
// from the barrier only while minting and wiped right after.
//
// Following changes. Refresh() is one step: on a sealed node it drops the
// credentials; otherwise it reads the record (the active creates it when
// absent), and mints a new leaf when there is none, the CA changed (a
// rotation, also one made while this node was sealed), or the leaf has
// passed Options::renew_after of its lifetime. The identity calls it when
// the node's state changes (unseal, activation) and, with
// Options::background_thread, every Options::refresh_interval; without it
// the host calls Refresh() (tests, with a FakeClock). Observers learn every
// change of Current() (new leaf, CA rotation, seal).
//
// Ownership: the caller owns the coordinator (it must outlive the
// identity); observers are not owned and must be removed before they die.
// Thread-safety: every method may be called concurrently. Observers are
// called one at a time, never under the identity's lock, on the thread
// that made the change (a Refresh() caller, the coordinator's observer
// thread, or the identity's background thread), and may call Current() but
// not Add/RemoveObserver. RemoveObserver() waits for a delivery in
// progress, so the observer may be destroyed once it returns.
#ifndef STRONGBOX_CLUSTER_CREDENTIALS_H_
#define STRONGBOX_CLUSTER_CREDENTIALS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "strongbox/clock.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {

// The DNS SAN every leaf carries; clients verify servers against it.
inline constexpr absl::string_view kClusterServerName = "strongbox-cluster";

// One snapshot of this node's TLS identity. The key is a copy that belongs
// to the caller: drop it when observers report a change (a seal included),
// so no key outlives the barrier's seal. A transport that hands it to a TLS
// library (gRPC copies it into its own strings) cannot wipe that copy.
struct ClusterCredentials {
  // Increases with every change of the credentials on this node.
  uint64_t generation = 0;
  // PEM certificates of the cluster CA to trust: the current CA, then the
  // previous one if the CA was rotated.
  std::string trust_bundle_pem;
  // PEM: this node's leaf certificate, then the CA certificate.
  std::string certificate_chain_pem;
  // PEM (PKCS#8) private key of the leaf.
  SecretBytes private_key_pem;
  // The leaf's validity.
  absl::Time not_before;
  absl::Time not_after;
  // The CA's random id (changes on rotation).
  uint64_t ca_id = 0;
};

// What changed, for observers.
struct ClusterCredentialsChange {
  uint64_t generation = 0;  // the new generation (0: none, sealed)
  bool available = false;   // whether Current() now returns credentials
  std::string reason;       // "minted", "renewed", "ca_rotated", "sealed"
};

class ClusterCredentialsObserver {
 public:
  ClusterCredentialsObserver() = default;
  virtual ~ClusterCredentialsObserver() = default;
  ClusterCredentialsObserver(const ClusterCredentialsObserver&) = delete;
  ClusterCredentialsObserver& operator=(const ClusterCredentialsObserver&) =
      delete;
  virtual void OnClusterCredentialsChanged(
      const ClusterCredentialsChange& change) = 0;
};

class ClusterIdentity {
 public:
  struct Options {
    // This node. Not owned. REQUIRED. Its node_id names the leaf.
    HaCoordinator* coordinator = nullptr;
    // The address this node's transport listens on for peers (usually the
    // coordinator's advertise_address): its host goes into the leaf as an
    // IP or DNS SAN. Optional.
    std::string advertise_address;
    // Time source for certificate validity and renewal. Not owned.
    // Default: RealClock().
    Clock* clock = nullptr;
    // Leaf validity. REQUIRES: > 0. Default: 24 h.
    absl::Duration leaf_lifetime = absl::Hours(24);
    // Leaves are back-dated by this much against clock skew. Default: 5 min.
    absl::Duration backdate = absl::Minutes(5);
    // Fraction of the lifetime after which Refresh() mints a new leaf.
    // REQUIRES: 0 < renew_after < 1. Default: 0.5.
    double renew_after = 0.5;
    // CA validity. Default: 10 years.
    absl::Duration ca_lifetime = absl::Hours(24 * 365 * 10);
    // Call Refresh() every refresh_interval on a thread of the identity's
    // own (true), or only when the host does (false). Default: true, 2 s.
    bool background_thread = true;
    absl::Duration refresh_interval = absl::Seconds(2);
  };

  // Validates the options and registers with the coordinator (and its
  // barrier's seal). INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<ClusterIdentity>> Create(
      const Options& options);
  // Stops the thread, unregisters, wipes the key.
  virtual ~ClusterIdentity() = default;
  ClusterIdentity(const ClusterIdentity&) = delete;
  ClusterIdentity& operator=(const ClusterIdentity&) = delete;

  // The current credentials (a copy of the key). FAILED_PRECONDITION when
  // sealed or uninitialized; UNAVAILABLE while no CA exists yet (no active
  // node has created it) or the record could not be read.
  virtual absl::StatusOr<ClusterCredentials> Current() = 0;

  // One step (see above). OK also when sealed (nothing to do then).
  // UNAVAILABLE when no CA exists yet and this node is not active, or the
  // backend fails; DATA_LOSS for a corrupt record.
  virtual absl::Status Refresh() = 0;

  // Active only: replaces the cluster CA (keeping the old certificate in
  // the trust bundle), then mints this node's new leaf. Other nodes follow
  // at their next Refresh(). UNAVAILABLE on a standby (no write fence);
  // FAILED_PRECONDITION when sealed or deposed (stale fence).
  virtual absl::Status RotateCa() = 0;

  virtual void AddObserver(ClusterCredentialsObserver* observer) = 0;
  virtual void RemoveObserver(ClusterCredentialsObserver* observer) = 0;

 protected:
  ClusterIdentity() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_CLUSTER_CREDENTIALS_H_
