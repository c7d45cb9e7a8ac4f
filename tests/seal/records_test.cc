#include "lib/seal/records.h"

#include <string>

#include "gtest/gtest.h"
#include "lib/seal/records.pb.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::seal {
namespace {

using Code = absl::StatusCode;

TEST(SealParametersTest, Rules) {
  EXPECT_OK(ValidateSealParameters(1, 1));
  EXPECT_OK(ValidateSealParameters(5, 3));
  EXPECT_OK(ValidateSealParameters(255, 255));
  for (auto [n, t] : {std::pair{0, 0}, {2, 1}, {2, 3}, {256, 3}, {3, -1}}) {
    EXPECT_EQ(ValidateSealParameters(n, t).code(), Code::kInvalidArgument)
        << n << "/" << t;
  }
}

TEST(SealConfigTest, RoundTripAndStrictParse) {
  auto parsed = ParseSealConfig(SerializeSealConfig({5, 3}));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->shares, 5);
  EXPECT_EQ(parsed->threshold, 3);
  EXPECT_EQ(ParseSealConfig("\xff").status().code(), Code::kDataLoss);
  EXPECT_EQ(ParseSealConfig("").status().code(), Code::kDataLoss);  // format 0
  SealConfig msg;
  msg.set_format(1);
  msg.set_shares(3);
  msg.set_threshold(4);
  EXPECT_EQ(ParseSealConfig(msg.SerializeAsString()).status().code(),
            Code::kDataLoss);
  msg.set_threshold(2);
  msg.set_format(2);
  EXPECT_EQ(ParseSealConfig(msg.SerializeAsString()).status().code(),
            Code::kDataLoss);
  // A 64-bit varint in the 32-bit `shares` field (field 2) on the wire:
  // protobuf keeps the low 32 bits, so the record says 3 shares, not
  // 2^32 + 3, and the rules see 3.
  msg.set_format(1);
  msg.clear_shares();
  std::string bytes = msg.SerializeAsString();
  bytes.append("\x10\x83\x80\x80\x80\x10", 6);
  absl::StatusOr<SealConfigRecord> wide = ParseSealConfig(bytes);
  ASSERT_OK(wide);
  EXPECT_EQ(wide->shares, 3);
  EXPECT_EQ(wide->threshold, 2);
}

TEST(SealedRecordTest, RoundTripAndAuthentication) {
  SecretBytes key = SecretBytes::Random(kKeyBytes);
  auto record = SealRecord(key, "core/root-key", "payload");
  ASSERT_OK(record);
  auto parts = ParseSealedRecord(*record);
  ASSERT_OK(parts);
  auto opened = OpenRecord(key, "core/root-key", *parts);
  ASSERT_OK(opened);
  EXPECT_EQ(opened->view(), "payload");
  EXPECT_EQ(OpenRecord(key, "core/keyring", *parts).status().code(),
            Code::kDataLoss);
  SecretBytes other = SecretBytes::Random(kKeyBytes);
  EXPECT_EQ(OpenRecord(other, "core/root-key", *parts).status().code(),
            Code::kDataLoss);
  for (size_t bit = 0; bit < record->size() * 8; ++bit) {
    std::string bad = *record;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    auto bad_parts = ParseSealedRecord(bad);
    if (!bad_parts.ok()) {
      EXPECT_EQ(bad_parts.status().code(), Code::kDataLoss);
      continue;
    }
    auto bad_open = OpenRecord(key, "core/root-key", *bad_parts);
    // A flip in an unknown-field tag can leave the record intact.
    if (bad_parts->nonce == parts->nonce &&
        bad_parts->ciphertext == parts->ciphertext) {
      continue;
    }
    EXPECT_EQ(bad_open.status().code(), Code::kDataLoss) << bit;
  }
  EXPECT_EQ(ParseSealedRecord("").status().code(), Code::kDataLoss);
  // An empty plaintext seals and opens.
  auto empty = SealRecord(key, "p", "");
  ASSERT_OK(empty);
  auto empty_open = OpenRecord(key, "p", *ParseSealedRecord(*empty));
  ASSERT_OK(empty_open);
  EXPECT_TRUE(empty_open->empty());
}

TEST(KeyringTest, RoundTripAndValidation) {
  KeyringContents keyring;
  keyring.active_term = 2;
  keyring.terms.push_back({2, SecretBytes::Random(kKeyBytes), 7});
  keyring.terms.push_back({1, SecretBytes::Random(kKeyBytes), 5});
  SecretBytes bytes = SerializeKeyring(keyring);
  auto parsed = ParseKeyring(bytes.view());
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->active_term, 2u);
  ASSERT_EQ(parsed->terms.size(), 2u);
  EXPECT_EQ(parsed->terms[0].term, 1u);  // sorted
  EXPECT_TRUE(parsed->terms[0].key.Equals(keyring.terms[1].key));
  EXPECT_EQ(parsed->terms[1].created_unix_micros, 7);

  auto expect_loss = [](const Keyring& msg) {
    EXPECT_EQ(ParseKeyring(msg.SerializeAsString()).status().code(),
              Code::kDataLoss);
  };
  Keyring msg;
  msg.set_format(1);
  msg.set_active_term(1);
  expect_loss(msg);  // no terms
  KeyTerm* t = msg.add_terms();
  t->set_term(1);
  t->set_key(std::string(31, 'k'));
  expect_loss(msg);  // short key
  t->set_key(std::string(32, 'k'));
  EXPECT_OK(ParseKeyring(msg.SerializeAsString()));
  msg.set_active_term(3);
  expect_loss(msg);  // active term missing
  msg.set_active_term(1);
  *msg.add_terms() = *t;
  expect_loss(msg);  // duplicate term
  msg.mutable_terms(1)->set_term(0);
  expect_loss(msg);  // term 0
  msg.mutable_terms(1)->set_term(2);
  msg.set_format(0);
  expect_loss(msg);  // format
  EXPECT_EQ(ParseKeyring("\x1a\xff").status().code(), Code::kDataLoss);
}

TEST(KeyringTest, ReservedEncryptionsRoundTrip) {
  KeyringContents keyring;
  keyring.active_term = 2;
  keyring.terms.push_back(TermKey{1, SecretBytes::Random(kKeyBytes), 5, 7});
  keyring.terms.push_back(
      TermKey{2, SecretBytes::Random(kKeyBytes), 6, uint64_t{1} << 40});
  SecretBytes plain = SerializeKeyring(keyring);
  auto parsed = ParseKeyring(plain.view());
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->terms[0].reserved_encryptions, 7u);
  EXPECT_EQ(parsed->terms[1].reserved_encryptions, uint64_t{1} << 40);
}

TEST(PendingRekeyTest, RoundTripAndStrictParse) {
  SecretBytes key = SecretBytes::Random(kKeyBytes);
  auto root = SealRecord(key, "core/root-key", "root key bytes");
  ASSERT_OK(root);
  auto parsed = ParsePendingRekey(SerializePendingRekey({{4, 3}, *root}));
  ASSERT_OK(parsed);
  EXPECT_EQ(parsed->config.shares, 4);
  EXPECT_EQ(parsed->config.threshold, 3);
  EXPECT_EQ(parsed->root_record, *root);
  EXPECT_EQ(ParsePendingRekey("\xff").status().code(), Code::kDataLoss);
  EXPECT_EQ(ParsePendingRekey("").status().code(), Code::kDataLoss);
  EXPECT_EQ(
      ParsePendingRekey(SerializePendingRekey({{2, 3}, *root})).status().code(),
      Code::kDataLoss);
  EXPECT_EQ(ParsePendingRekey(SerializePendingRekey({{3, 2}, "garbage"}))
                .status()
                .code(),
            Code::kDataLoss);
}

// Auto mode (a rekey of the recovery key): the wrapped new recovery key,
// and the escrow record only with escrow.
TEST(PendingRekeyTest, AutoModeRecordRoundTrips) {
  const std::string wrapped = SerializeWrappedKey({"kek-1", "blob"});
  PendingRekeyRecord no_escrow;
  no_escrow.config = {3, 2};
  no_escrow.recovery_wrapped = wrapped;
  auto parsed = ParsePendingRekey(SerializePendingRekey(no_escrow));
  ASSERT_OK(parsed);
  EXPECT_TRUE(parsed->auto_mode());
  EXPECT_TRUE(parsed->config.auto_unseal);
  EXPECT_FALSE(parsed->config.escrow);
  EXPECT_EQ(parsed->recovery_wrapped, wrapped);
  EXPECT_TRUE(parsed->root_record.empty());

  SecretBytes key = SecretBytes::Random(kKeyBytes);
  auto root = SealRecord(key, "core/root-key", "root key bytes");
  ASSERT_OK(root);
  PendingRekeyRecord escrow = no_escrow;
  escrow.root_record = *root;
  parsed = ParsePendingRekey(SerializePendingRekey(escrow));
  ASSERT_OK(parsed);
  EXPECT_TRUE(parsed->config.escrow);
  EXPECT_EQ(parsed->root_record, *root);

  escrow.root_record = "garbage";
  EXPECT_EQ(ParsePendingRekey(SerializePendingRekey(escrow)).status().code(),
            Code::kDataLoss);
  no_escrow.recovery_wrapped = "\xff";
  EXPECT_EQ(ParsePendingRekey(SerializePendingRekey(no_escrow)).status().code(),
            Code::kDataLoss);
}

}  // namespace
}  // namespace strongbox::seal
