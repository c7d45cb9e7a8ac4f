// X.509 certificates for strongbox's cluster identity: EC P-256 keys, a
// self-signed CA, leaf certificates it signs, and chain verification. The
// same code runs on both providers (BoringSSL and OpenSSL 3 expose the same
// X509/EVP/PEM calls); see lib/crypto/BUILD.bazel.
//
// Private keys stay inside EcPrivateKey (the provider's EVP_PKEY). The only
// way out is ExportPkcs8Pem(), which hands the PEM to a sink and wipes the
// provider's buffer afterwards, so the caller can put it straight into a
// SecretBytes. Certificates are public: plain PEM strings.
//
// Thread-safety: every function is safe to call concurrently; an
// EcPrivateKey may be used by many threads at once (signing only reads it).
#ifndef STRONGBOX_LIB_CRYPTO_X509_H_
#define STRONGBOX_LIB_CRYPTO_X509_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace strongbox::crypto {

// An EC P-256 private key. Freed (and wiped by the provider) on destruction.
class EcPrivateKey {
 public:
  // A fresh key from the provider's RNG. INTERNAL if the provider fails.
  static absl::StatusOr<std::unique_ptr<EcPrivateKey>> Generate();
  // Parses a PKCS#8 (or SEC1) PEM P-256 private key. INVALID_ARGUMENT if
  // it is not one; the message never contains key bytes.
  static absl::StatusOr<std::unique_ptr<EcPrivateKey>> FromPem(
      absl::string_view pem);

  ~EcPrivateKey();
  EcPrivateKey(const EcPrivateKey&) = delete;
  EcPrivateKey& operator=(const EcPrivateKey&) = delete;

  // Calls `sink` once with the key as PKCS#8 PEM; the view is valid only
  // during the call, and the buffer behind it is wiped afterwards.
  absl::Status ExportPkcs8Pem(
      absl::FunctionRef<void(absl::string_view pem)> sink) const;

  struct State;  // provider objects (lib/crypto/x509.cc)
  const State& state() const { return *state_; }

 private:
  explicit EcPrivateKey(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// What a certificate says.
struct CertificateSpec {
  std::string common_name;
  // Subject alternative names. DNS names and URIs as given; IP addresses
  // as text ("127.0.0.1", "::1").
  std::vector<std::string> dns_names;
  std::vector<std::string> uris;
  std::vector<std::string> ip_addresses;
  absl::Time not_before;
  absl::Time not_after;
  // A CA certificate (basicConstraints CA:TRUE, keyCertSign) or a leaf
  // (CA:FALSE, digitalSignature, serverAuth + clientAuth).
  bool is_ca = false;
  // Positive. The caller makes it unique per issuer (random is fine).
  uint64_t serial = 1;
};

// A self-signed CA certificate for `key`, as PEM. INVALID_ARGUMENT for an
// empty validity window or a leaf spec.
absl::StatusOr<std::string> SelfSignCertificate(const EcPrivateKey& key,
                                                const CertificateSpec& spec);

// A certificate for `subject_key`'s public key, signed by `issuer_key`
// whose certificate is `issuer_pem`, as PEM. INVALID_ARGUMENT if
// `issuer_pem` does not parse or does not belong to `issuer_key`.
absl::StatusOr<std::string> IssueCertificate(const EcPrivateKey& issuer_key,
                                             absl::string_view issuer_pem,
                                             const EcPrivateKey& subject_key,
                                             const CertificateSpec& spec);

// Verifies that the first certificate of `chain_pem` chains (through the
// others, if any) to one of the certificates in `trust_pem`, at time `at`.
// OK, or PERMISSION_DENIED naming the provider's reason;
// INVALID_ARGUMENT for PEM that does not parse.
absl::Status VerifyCertificateChain(absl::string_view chain_pem,
                                    absl::string_view trust_pem, absl::Time at);

// Parsed facts of a PEM certificate (the first in `pem`).
struct CertificateFacts {
  std::string common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> uris;
  bool is_ca = false;
  uint64_t serial = 0;
  // Whether its public key is `key`'s.
  bool MatchesKey(const EcPrivateKey& key) const;
  std::string public_key_der;  // SubjectPublicKeyInfo
};
absl::StatusOr<CertificateFacts> ParseCertificate(absl::string_view pem);

}  // namespace strongbox::crypto

#endif  // STRONGBOX_LIB_CRYPTO_X509_H_
