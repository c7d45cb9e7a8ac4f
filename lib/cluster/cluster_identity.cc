// ClusterIdentity (strongbox/cluster_credentials.h).
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/cluster/records.pb.h"
#include "lib/crypto/random.h"
#include "lib/crypto/x509.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace {

constexpr absl::string_view kCaPath = "cluster/ca";

using cluster::ClusterCaRecord;

// A parsed CA record that wipes itself (it holds the CA key).
struct WipedRecord {
  ~WipedRecord() { WipeMessage(&record); }
  ClusterCaRecord record;
};

uint64_t RandomNonZero() {
  uint64_t v = 0;
  while (v == 0) {
    uint8_t bytes[8];
    if (!crypto::RandomBytes(absl::MakeSpan(bytes)).ok()) std::abort();
    for (uint8_t b : bytes) v = (v << 8) | b;
    v &= ~(uint64_t{1} << 63);  // a positive serial
  }
  return v;
}

// The host of an advertise address "host:port", "[v6]:port" or "host".
std::string AdvertiseHost(absl::string_view address) {
  if (!address.empty() && address.front() == '[') {
    size_t end = address.find(']');
    if (end != absl::string_view::npos) {
      return std::string(address.substr(1, end - 1));
    }
  }
  size_t colon = address.rfind(':');
  if (colon != absl::string_view::npos &&
      address.find(':') == colon) {  // one colon: host:port
    return std::string(address.substr(0, colon));
  }
  return std::string(address);
}

bool IsIpLiteral(absl::string_view host) {
  if (host.find(':') != absl::string_view::npos) return true;  // IPv6
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

bool IsDnsName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
          c == '.')) {
      return false;
    }
  }
  return true;
}

class ClusterIdentityImpl final : public ClusterIdentity, public HaObserver {
 public:
  explicit ClusterIdentityImpl(const Options& options)
      : options_(options),
        coordinator_(options.coordinator),
        clock_(options.clock != nullptr ? options.clock : RealClock()) {}

  void Start() {
    coordinator_->AddObserver(this);
    if (Barrier* barrier = coordinator_->barrier()) {
      seal_listener_ = barrier->AddSealListener([this] { OnSeal(); });
    }
    if (options_.background_thread) {
      thread_ = std::thread([this] { Loop(); });
    }
  }

  ~ClusterIdentityImpl() override {
    {
      MutexLock l(&stop_mu_);
      stop_ = true;
      stop_mu_.SignalAll();
    }
    if (thread_.joinable()) thread_.join();
    coordinator_->RemoveObserver(this);
    if (seal_listener_ >= 0) {
      if (Barrier* barrier = coordinator_->barrier()) {
        barrier->RemoveSealListener(seal_listener_);
      }
    }
    MutexLock l(&mu_);
    current_.reset();
  }

  absl::StatusOr<ClusterCredentials> Current() override {
    {
      MutexLock l(&mu_);
      if (current_ != nullptr) {
        ClusterCredentials copy;
        copy.generation = current_->generation;
        copy.trust_bundle_pem = current_->trust_bundle_pem;
        copy.certificate_chain_pem = current_->certificate_chain_pem;
        copy.private_key_pem =
            SecretBytes::Copy(current_->private_key_pem.view());
        copy.not_before = current_->not_before;
        copy.not_after = current_->not_after;
        copy.ca_id = current_->ca_id;
        return copy;
      }
    }
    if (Sealed(coordinator_->state())) {
      return absl::FailedPreconditionError(
          "sealed: no cluster credentials until unsealed");
    }
    return absl::UnavailableError(
        "no cluster credentials yet (no cluster CA, or not refreshed)");
  }

  absl::Status Refresh() override {
    MutexLock refresh(&refresh_mu_);
    return RefreshLocked(/*rotated=*/false);
  }

  absl::Status RotateCa() override {
    MutexLock refresh(&refresh_mu_);
    if (Sealed(coordinator_->state())) {
      return absl::FailedPreconditionError("sealed");
    }
    Barrier* barrier = coordinator_->barrier();
    if (barrier == nullptr) return absl::FailedPreconditionError("no barrier");
    ASSIGN_OR_RETURN(Entry entry, barrier->Get(kCaPath));
    WipedRecord old;
    const bool parsed = old.record.ParseFromString(entry.value);
    WipeString(entry.value);
    if (!parsed) return absl::DataLossError("cluster CA record is corrupt");
    RETURN_IF_ERROR(StoreNewCa(old.record.ca_certificate_pem()));
    return RefreshLocked(/*rotated=*/true);
  }

  void AddObserver(ClusterCredentialsObserver* observer) override {
    MutexLock l(&observers_mu_);
    observers_.push_back(observer);
  }
  void RemoveObserver(ClusterCredentialsObserver* observer) override {
    MutexLock l(&observers_mu_);
    observers_.erase(
        std::remove(observers_.begin(), observers_.end(), observer),
        observers_.end());
  }

  // HaObserver: follow the node's state at once.
  void OnStateChange(const StateChange& change) override {
    if (Sealed(change.to)) {
      if (!Sealed(change.from)) Drop("sealed");
    } else if (change.from != change.to) {
      (void)Refresh();  // a failure is retried by the next refresh
    }
  }

 private:
  struct Held {
    uint64_t generation = 0;
    std::string trust_bundle_pem;
    std::string certificate_chain_pem;
    SecretBytes private_key_pem;
    absl::Time not_before;
    absl::Time not_after;
    absl::Time renew_at;
    uint64_t ca_id = 0;
  };

  static bool Sealed(HaState state) {
    return state == HaState::kSealed || state == HaState::kUninitialized;
  }

  void Loop() {
    MutexLock l(&stop_mu_);
    while (!stop_) {
      stop_mu_.Unlock();
      (void)Refresh();
      stop_mu_.Lock();
      stop_mu_.AwaitWithTimeout(
          [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; },
          options_.refresh_interval);
    }
  }

  // The barrier's seal listener: runs inside Seal(), after the barrier's
  // keys are wiped, so the leaf key goes at the same moment (D2).
  void OnSeal() {
    MutexLock l(&mu_);
    ++seal_epoch_;
    current_.reset();  // SecretBytes wipes the key
  }

  void Drop(const std::string& reason) {
    bool had = false;
    {
      MutexLock l(&mu_);
      ++seal_epoch_;
      had = current_ != nullptr;
      current_.reset();
    }
    // Also when the seal listener already dropped them: observers hear of
    // every seal from the state change.
    (void)had;
    {
      ClusterCredentialsChange change;
      change.reason = reason;
      Notify(change);
    }
  }

  absl::Status StoreNewCa(const std::string& previous_pem)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_) {
    ASSIGN_OR_RETURN(FenceToken fence, coordinator_->WriteFence());
    WipedRecord fresh;
    const uint64_t ca_id = RandomNonZero();
    ASSIGN_OR_RETURN(auto key, crypto::EcPrivateKey::Generate());
    crypto::CertificateSpec spec;
    spec.common_name = absl::StrFormat("strongbox cluster CA %016x", ca_id);
    const absl::Time now = clock_->Now();
    spec.not_before = now - options_.backdate;
    spec.not_after = now + options_.ca_lifetime;
    spec.is_ca = true;
    spec.serial = ca_id;
    ASSIGN_OR_RETURN(std::string pem, crypto::SelfSignCertificate(*key, spec));
    fresh.record.set_ca_id(ca_id);
    fresh.record.set_ca_certificate_pem(pem);
    fresh.record.set_previous_ca_certificate_pem(previous_pem);
    fresh.record.set_created_unix_seconds(absl::ToUnixSeconds(now));
    RETURN_IF_ERROR(key->ExportPkcs8Pem([&](absl::string_view key_pem) {
      fresh.record.set_ca_private_key_pem(std::string(key_pem));
    }));
    SecretBytes bytes = SerializeToSecretBytes(fresh.record);
    ASSIGN_OR_RETURN(uint64_t version, coordinator_->barrier()->Put(
                                           kCaPath, bytes.view(), fence));
    (void)version;
    return absl::OkStatus();
  }

  absl::Status RefreshLocked(bool rotated)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_) {
    const HaState state = coordinator_->state();
    if (Sealed(state)) {
      MutexLock l(&mu_);
      current_.reset();
      return absl::OkStatus();
    }
    uint64_t epoch;
    {
      MutexLock l(&mu_);
      epoch = seal_epoch_;
    }
    Barrier* barrier = coordinator_->barrier();
    if (barrier == nullptr) return absl::FailedPreconditionError("no barrier");
    absl::StatusOr<Entry> entry = barrier->Get(kCaPath);
    if (absl::IsNotFound(entry.status())) {
      if (state != HaState::kActive) {
        return absl::UnavailableError(
            "no cluster CA yet: the active node creates it");
      }
      RETURN_IF_ERROR(StoreNewCa(""));
      entry = barrier->Get(kCaPath);
    }
    if (!entry.ok()) return entry.status();
    WipedRecord ca;
    const bool parsed = ca.record.ParseFromString(entry->value);
    WipeString(entry->value);
    if (!parsed || ca.record.ca_id() == 0) {
      return absl::DataLossError("cluster CA record is corrupt");
    }
    const absl::Time now = clock_->Now();
    std::string reason;
    {
      MutexLock l(&mu_);
      if (current_ == nullptr) {
        reason = "minted";
      } else if (current_->ca_id != ca.record.ca_id()) {
        reason = "ca_rotated";
      } else if (now >= current_->renew_at) {
        reason = "renewed";
      } else {
        return absl::OkStatus();
      }
    }
    if (rotated) reason = "ca_rotated";

    // Mint a leaf.
    auto ca_key = crypto::EcPrivateKey::FromPem(ca.record.ca_private_key_pem());
    if (!ca_key.ok()) return absl::DataLossError("cluster CA key is corrupt");
    ASSIGN_OR_RETURN(auto leaf_key, crypto::EcPrivateKey::Generate());
    HaStatus status = coordinator_->Status();
    crypto::CertificateSpec spec;
    spec.common_name = status.node_id;
    spec.dns_names.push_back(std::string(kClusterServerName));
    spec.uris.push_back(absl::StrCat("urn:strongbox:node:", status.node_id));
    const std::string host = AdvertiseHost(options_.advertise_address);
    if (IsIpLiteral(host)) {
      spec.ip_addresses.push_back(host);
    } else if (IsDnsName(host)) {
      spec.dns_names.push_back(host);
    }
    spec.not_before = now - options_.backdate;
    spec.not_after = now + options_.leaf_lifetime;
    spec.serial = RandomNonZero();
    absl::StatusOr<std::string> leaf = crypto::IssueCertificate(
        **ca_key, ca.record.ca_certificate_pem(), *leaf_key, spec);
    if (!leaf.ok()) return leaf.status();

    auto held = std::make_unique<Held>();
    held->trust_bundle_pem = ca.record.ca_certificate_pem();
    if (!ca.record.previous_ca_certificate_pem().empty()) {
      absl::StrAppend(&held->trust_bundle_pem,
                      ca.record.previous_ca_certificate_pem());
    }
    held->certificate_chain_pem =
        absl::StrCat(*leaf, ca.record.ca_certificate_pem());
    RETURN_IF_ERROR(leaf_key->ExportPkcs8Pem([&](absl::string_view pem) {
      held->private_key_pem = SecretBytes::Copy(pem);
    }));
    held->not_before = spec.not_before;
    held->not_after = spec.not_after;
    held->renew_at = now + options_.leaf_lifetime * options_.renew_after;
    held->ca_id = ca.record.ca_id();

    ClusterCredentialsChange change;
    {
      MutexLock l(&mu_);
      // Sealed while minting: install nothing (D2).
      if (seal_epoch_ != epoch || barrier->sealed()) {
        return absl::FailedPreconditionError("sealed while minting");
      }
      held->generation = ++generation_;
      change.generation = held->generation;
      change.available = true;
      change.reason = reason;
      current_ = std::move(held);
    }
    Notify(change);
    return absl::OkStatus();
  }

  void Notify(const ClusterCredentialsChange& change) {
    MutexLock l(&observers_mu_);  // one at a time, in order
    for (ClusterCredentialsObserver* o : observers_) {
      o->OnClusterCredentialsChanged(change);
    }
  }

 private:
  // Constant after construction.
  const Options options_;
  HaCoordinator* const coordinator_;
  Clock* const clock_;
  int seal_listener_ = -1;
  std::thread thread_;

  // Serializes Refresh() and RotateCa() (held across barrier I/O; nothing
  // else takes it).
  Mutex refresh_mu_;

  Mutex mu_;
  std::unique_ptr<Held> current_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seal_epoch_ ABSL_GUARDED_BY(mu_) = 0;

  Mutex observers_mu_;
  std::vector<ClusterCredentialsObserver*> observers_
      ABSL_GUARDED_BY(observers_mu_);

  Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterIdentity>> ClusterIdentity::Create(
    const Options& options) {
  if (options.coordinator == nullptr) {
    return absl::InvalidArgumentError("ClusterIdentity needs a coordinator");
  }
  if (options.leaf_lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("leaf_lifetime must be positive");
  }
  if (!(options.renew_after > 0 && options.renew_after < 1)) {
    return absl::InvalidArgumentError("renew_after must be in (0, 1)");
  }
  if (options.ca_lifetime <= options.leaf_lifetime) {
    return absl::InvalidArgumentError(
        "ca_lifetime must be longer than leaf_lifetime");
  }
  if (options.background_thread &&
      options.refresh_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("refresh_interval must be positive");
  }
  auto identity = std::make_unique<ClusterIdentityImpl>(options);
  identity->Start();
  return std::unique_ptr<ClusterIdentity>(std::move(identity));
}

}  // namespace strongbox
