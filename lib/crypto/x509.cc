// lib/crypto/x509.h on either provider: BoringSSL and OpenSSL 3 share the
// X509, EVP_PKEY, PEM and X509V3 calls used here, so one definition
// compiles against whichever provider's headers the build chose.
#include "lib/crypto/x509.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#ifdef OPENSSL_IS_BORINGSSL
#include <openssl/mem.h>
#endif

#include <climits>
#include <ctime>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/crypto/secure_memory.h"

namespace strongbox::crypto {

struct EcPrivateKey::State {
  ~State() { EVP_PKEY_free(pkey); }
  EVP_PKEY* pkey = nullptr;
};

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

BioPtr ReadBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Every certificate in `pem`, in order. INVALID_ARGUMENT when none parses.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(absl::string_view pem,
                                                      absl::string_view what) {
  if (pem.size() > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is too large"));
  }
  BioPtr bio = ReadBio(pem);
  if (bio == nullptr) return absl::InternalError("BIO allocation failed");
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(x);
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " holds no PEM certificate"));
  }
  return certs;
}

absl::StatusOr<std::string> ToPem(X509* x) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), x) != 1) {
    ERR_clear_error();
    return absl::InternalError("could not encode a certificate");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(runtime/int)
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> PublicKeyDer(EVP_PKEY* pkey) {
  uint8_t* der = nullptr;
  int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) {
    ERR_clear_error();
    return absl::InternalError("could not encode a public key");
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid,
                          const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("certificate extension rejected: ", OBJ_nid2sn(nid)));
  }
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return absl::InternalError("could not add an extension");
  return absl::OkStatus();
}

// Builds and signs a certificate for `subject` under `issuer_key`; the
// issuer's name comes from `issuer` (nullptr: self-signed).
absl::StatusOr<std::string> Build(EVP_PKEY* issuer_key, X509* issuer,
                                  EVP_PKEY* subject,
                                  const CertificateSpec& spec) {
  if (spec.not_after <= spec.not_before) {
    return absl::InvalidArgumentError("certificate validity window is empty");
  }
  if (spec.serial == 0) {
    return absl::InvalidArgumentError("certificate serial must be positive");
  }
  X509Ptr cert(X509_new());
  if (cert == nullptr) return absl::InternalError("X509 allocation failed");
  X509* x = cert.get();
  bool ok =
      X509_set_version(x, 2) == 1 &&
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), spec.serial) == 1 &&
      ASN1_TIME_set(X509_getm_notBefore(x), absl::ToTimeT(spec.not_before)) !=
          nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(x), absl::ToTimeT(spec.not_after)) !=
          nullptr &&
      X509_NAME_add_entry_by_txt(
          X509_get_subject_name(x), "CN", MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
          -1, 0) == 1 &&
      X509_set_issuer_name(x, issuer == nullptr
                                  ? X509_get_subject_name(x)
                                  : X509_get_subject_name(issuer)) == 1 &&
      X509_set_pubkey(x, subject) == 1;
  if (!ok) {
    ERR_clear_error();
    return absl::InvalidArgumentError("could not fill in the certificate");
  }
  X509* issuer_cert = issuer == nullptr ? x : issuer;
  if (spec.is_ca) {
    absl::Status s = AddExtension(x, issuer_cert, NID_basic_constraints,
                                  "critical,CA:TRUE,pathlen:0");
    if (s.ok()) {
      s = AddExtension(x, issuer_cert, NID_key_usage,
                       "critical,keyCertSign,cRLSign");
    }
    if (!s.ok()) return s;
  } else {
    absl::Status s = AddExtension(x, issuer_cert, NID_basic_constraints,
                                  "critical,CA:FALSE");
    if (s.ok()) {
      s = AddExtension(x, issuer_cert, NID_key_usage,
                       "critical,digitalSignature");
    }
    if (s.ok()) {
      s = AddExtension(x, issuer_cert, NID_ext_key_usage,
                       "serverAuth,clientAuth");
    }
    if (!s.ok()) return s;
  }
  std::vector<std::string> sans;
  for (const std::string& d : spec.dns_names) sans.push_back("DNS:" + d);
  for (const std::string& u : spec.uris) sans.push_back("URI:" + u);
  for (const std::string& ip : spec.ip_addresses) sans.push_back("IP:" + ip);
  for (const std::string& san : sans) {
    if (san.find(',') != std::string::npos) {
      return absl::InvalidArgumentError(
          "a subject alternative name may not contain ','");
    }
  }
  if (!sans.empty()) {
    absl::Status s = AddExtension(x, issuer_cert, NID_subject_alt_name,
                                  absl::StrJoin(sans, ","));
    if (!s.ok()) return s;
  }
  if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) {
    ERR_clear_error();
    return absl::InternalError("could not sign the certificate");
  }
  return ToPem(x);
}

}  // namespace

// ------------------------------------------------------------ EcPrivateKey

EcPrivateKey::EcPrivateKey(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
EcPrivateKey::~EcPrivateKey() = default;

absl::StatusOr<std::unique_ptr<EcPrivateKey>> EcPrivateKey::Generate() {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
  auto state = std::make_unique<State>();
  const bool ok =
      ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) == 1 &&
      EVP_PKEY_keygen(ctx, &state->pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    return absl::InternalError("EC P-256 key generation failed");
  }
  return std::unique_ptr<EcPrivateKey>(new EcPrivateKey(std::move(state)));
}

absl::StatusOr<std::unique_ptr<EcPrivateKey>> EcPrivateKey::FromPem(
    absl::string_view pem) {
  if (pem.size() > INT_MAX) {
    return absl::InvalidArgumentError("private key PEM is too large");
  }
  BioPtr bio = ReadBio(pem);
  auto state = std::make_unique<State>();
  if (bio != nullptr) {
    state->pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  }
  ERR_clear_error();
  if (state->pkey == nullptr || EVP_PKEY_id(state->pkey) != EVP_PKEY_EC ||
      EVP_PKEY_bits(state->pkey) != 256) {
    return absl::InvalidArgumentError("not a PEM EC P-256 private key");
  }
  return std::unique_ptr<EcPrivateKey>(new EcPrivateKey(std::move(state)));
}

absl::Status EcPrivateKey::ExportPkcs8Pem(
    absl::FunctionRef<void(absl::string_view pem)> sink) const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), state_->pkey, nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    ERR_clear_error();
    return absl::InternalError("could not encode the private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT(runtime/int)
  sink(absl::string_view(data, static_cast<size_t>(len)));
  Cleanse(data, static_cast<size_t>(len));
  return absl::OkStatus();
}

// ----------------------------------------------------------- certificates

absl::StatusOr<std::string> SelfSignCertificate(const EcPrivateKey& key,
                                                const CertificateSpec& spec) {
  if (!spec.is_ca) {
    return absl::InvalidArgumentError(
        "a self-signed certificate must be a CA certificate");
  }
  return Build(key.state().pkey, nullptr, key.state().pkey, spec);
}

absl::StatusOr<std::string> IssueCertificate(const EcPrivateKey& issuer_key,
                                             absl::string_view issuer_pem,
                                             const EcPrivateKey& subject_key,
                                             const CertificateSpec& spec) {
  auto issuers = ReadCertificates(issuer_pem, "issuer certificate");
  if (!issuers.ok()) return issuers.status();
  X509* issuer = (*issuers)[0].get();
  if (X509_check_private_key(issuer, issuer_key.state().pkey) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "issuer certificate does not belong to the issuer key");
  }
  return Build(issuer_key.state().pkey, issuer, subject_key.state().pkey, spec);
}

absl::Status VerifyCertificateChain(absl::string_view chain_pem,
                                    absl::string_view trust_pem,
                                    absl::Time at) {
  auto chain = ReadCertificates(chain_pem, "certificate chain");
  if (!chain.ok()) return chain.status();
  auto trust = ReadCertificates(trust_pem, "trust bundle");
  if (!trust.ok()) return trust.status();
  X509_STORE* store = X509_STORE_new();
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  absl::Status result;
  bool ok = store != nullptr && untrusted != nullptr && ctx != nullptr;
  for (auto& t : *trust) ok = ok && X509_STORE_add_cert(store, t.get()) == 1;
  for (size_t i = 1; ok && i < chain->size(); ++i) {
    ok = sk_X509_push(untrusted, (*chain)[i].get()) != 0;
  }
  if (ok)
    ok = X509_STORE_CTX_init(ctx, store, (*chain)[0].get(), untrusted) == 1;
  if (!ok) {
    result = absl::InternalError("could not set up certificate verification");
  } else {
    X509_STORE_CTX_set_time(ctx, 0, absl::ToTimeT(at));
    if (X509_verify_cert(ctx) != 1) {
      result = absl::PermissionDeniedError(absl::StrCat(
          "certificate does not verify: ",
          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx))));
    }
  }
  ERR_clear_error();
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);  // the certificates belong to `chain`
  X509_STORE_free(store);
  return result;
}

bool CertificateFacts::MatchesKey(const EcPrivateKey& key) const {
  auto der = PublicKeyDer(key.state().pkey);
  return der.ok() && *der == public_key_der;
}

absl::StatusOr<CertificateFacts> ParseCertificate(absl::string_view pem) {
  auto certs = ReadCertificates(pem, "certificate");
  if (!certs.ok()) return certs.status();
  X509* x = (*certs)[0].get();
  CertificateFacts facts;
  X509_NAME* name = X509_get_subject_name(x);
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx >= 0) {
    ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    facts.common_name.assign(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
        static_cast<size_t>(ASN1_STRING_length(cn)));
  }
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    const int n = static_cast<int>(sk_GENERAL_NAME_num(names));
    for (int i = 0; i < n; ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
      if (gn->type != GEN_DNS && gn->type != GEN_URI) continue;
      const ASN1_STRING* s = gn->d.ia5;
      std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
      (gn->type == GEN_DNS ? facts.dns_names : facts.uris).push_back(value);
    }
    GENERAL_NAMES_free(names);
  }
  facts.is_ca = X509_check_ca(x) > 0;
  uint64_t serial = 0;
  if (ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(x)) == 1) {
    facts.serial = serial;
  }
  ERR_clear_error();
  EVP_PKEY* pub = X509_get_pubkey(x);  // a reference of our own
  if (pub == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("certificate has no usable public key");
  }
  auto der = PublicKeyDer(pub);
  EVP_PKEY_free(pub);
  if (!der.ok()) return der.status();
  facts.public_key_der = *std::move(der);
  return facts;
}

}  // namespace strongbox::crypto
