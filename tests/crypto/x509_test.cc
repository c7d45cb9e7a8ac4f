// lib/crypto/x509.h under whichever provider the build chose (both run in
// tools/test: the plain stages for BoringSSL, `openssl-asan` for OpenSSL 3).
#include "lib/crypto/x509.h"

#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::crypto {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

// Issuers are found by name: two CAs in one trust bundle need distinct
// names (the cluster identity puts a random id in each).
CertificateSpec CaSpec(absl::string_view name) {
  CertificateSpec spec;
  spec.common_name = std::string(name);
  spec.not_before = kNow - absl::Hours(1);
  spec.not_after = kNow + absl::Hours(24 * 365);
  spec.is_ca = true;
  spec.serial = 7;
  return spec;
}

CertificateSpec LeafSpec() {
  CertificateSpec spec;
  spec.common_name = "n1";
  spec.dns_names = {"strongbox-cluster"};
  spec.uris = {"urn:strongbox:node:n1"};
  spec.ip_addresses = {"127.0.0.1"};
  spec.not_before = kNow - absl::Minutes(5);
  spec.not_after = kNow + absl::Hours(1);
  spec.serial = 99;
  return spec;
}

struct Ca {
  std::unique_ptr<EcPrivateKey> key;
  std::string pem;
};

Ca MakeCa(absl::string_view name) {
  Ca ca;
  ca.key = *EcPrivateKey::Generate();
  ca.pem = *SelfSignCertificate(*ca.key, CaSpec(name));
  return ca;
}

TEST(X509Test, LeafVerifiesAgainstItsCaAndNotAnother) {
  Ca ca = MakeCa("ca 1");
  Ca other = MakeCa("ca 2");
  ASSERT_OK_AND_ASSIGN(auto leaf_key, EcPrivateKey::Generate());
  ASSERT_OK_AND_ASSIGN(
      std::string leaf,
      IssueCertificate(*ca.key, ca.pem, *leaf_key, LeafSpec()));
  EXPECT_THAT(VerifyCertificateChain(leaf + ca.pem, ca.pem, kNow), IsOk());
  EXPECT_THAT(VerifyCertificateChain(leaf, other.pem + ca.pem, kNow), IsOk());
  EXPECT_THAT(VerifyCertificateChain(leaf, other.pem, kNow),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Outside the validity window.
  EXPECT_THAT(
      VerifyCertificateChain(leaf, ca.pem, kNow + absl::Hours(2)),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("expired")));
  // A self-signed leaf-like CA is not the cluster's.
  EXPECT_THAT(VerifyCertificateChain(other.pem, ca.pem, kNow),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(X509Test, FactsNameTheSubjectAndTheKey) {
  Ca ca = MakeCa("ca 1");
  ASSERT_OK_AND_ASSIGN(auto leaf_key, EcPrivateKey::Generate());
  ASSERT_OK_AND_ASSIGN(
      std::string leaf,
      IssueCertificate(*ca.key, ca.pem, *leaf_key, LeafSpec()));
  ASSERT_OK_AND_ASSIGN(CertificateFacts facts, ParseCertificate(leaf));
  EXPECT_EQ(facts.common_name, "n1");
  EXPECT_THAT(facts.dns_names, ElementsAre("strongbox-cluster"));
  EXPECT_THAT(facts.uris, ElementsAre("urn:strongbox:node:n1"));
  EXPECT_FALSE(facts.is_ca);
  EXPECT_EQ(facts.serial, 99u);
  EXPECT_TRUE(facts.MatchesKey(*leaf_key));
  EXPECT_FALSE(facts.MatchesKey(*ca.key));
  ASSERT_OK_AND_ASSIGN(CertificateFacts ca_facts, ParseCertificate(ca.pem));
  EXPECT_TRUE(ca_facts.is_ca);
}

TEST(X509Test, KeyRoundTripsThroughPkcs8Pem) {
  Ca ca = MakeCa("ca 1");
  std::string pem;
  ASSERT_THAT(ca.key->ExportPkcs8Pem(
                  [&](absl::string_view p) { pem = std::string(p); }),
              IsOk());
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  ASSERT_OK_AND_ASSIGN(auto again, EcPrivateKey::FromPem(pem));
  ASSERT_OK_AND_ASSIGN(CertificateFacts facts, ParseCertificate(ca.pem));
  EXPECT_TRUE(facts.MatchesKey(*again));
  // The reparsed key signs certificates that verify.
  ASSERT_OK_AND_ASSIGN(auto leaf_key, EcPrivateKey::Generate());
  ASSERT_OK_AND_ASSIGN(std::string leaf,
                       IssueCertificate(*again, ca.pem, *leaf_key, LeafSpec()));
  EXPECT_THAT(VerifyCertificateChain(leaf, ca.pem, kNow), IsOk());
}

TEST(X509Test, BadInputIsRefusedClearly) {
  Ca ca = MakeCa("ca 1");
  Ca other = MakeCa("ca 2");
  ASSERT_OK_AND_ASSIGN(auto leaf_key, EcPrivateKey::Generate());
  EXPECT_THAT(EcPrivateKey::FromPem("garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCertificate("garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(VerifyCertificateChain("garbage", ca.pem, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Issuer certificate of another key.
  EXPECT_THAT(IssueCertificate(*ca.key, other.pem, *leaf_key, LeafSpec()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  CertificateSpec empty = LeafSpec();
  empty.not_after = empty.not_before;
  EXPECT_THAT(IssueCertificate(*ca.key, ca.pem, *leaf_key, empty),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SelfSignCertificate(*ca.key, LeafSpec()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace strongbox::crypto
