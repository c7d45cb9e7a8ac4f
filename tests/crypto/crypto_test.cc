// lib/crypto under whichever provider this build selected (tools/test runs
// it under both): known answers, tamper and truncation, no partial output,
// concurrent use of one key, random bytes, digests.
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "lib/crypto/aead.h"
#include "lib/crypto/digest.h"
#include "lib/crypto/random.h"
#include "lib/crypto/secure_memory.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::crypto {
namespace {

using Code = absl::StatusCode;
constexpr size_t kTag = Aes256GcmKey::kTagBytes;

std::string Hex(absl::string_view hex) { return absl::HexStringToBytes(hex); }
std::string ToHex(absl::string_view bytes) {
  return absl::BytesToHexString(bytes);
}
absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()),
                             s.size());
}
absl::Span<uint8_t> Mutable(std::string& s) {
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(&s[0]), s.size());
}

std::unique_ptr<Aes256GcmKey> MakeKey(absl::string_view key) {
  absl::StatusOr<std::unique_ptr<Aes256GcmKey>> k = Aes256GcmKey::Create(key);
  EXPECT_OK(k);
  return k.ok() ? *std::move(k) : nullptr;
}

std::string SealOrDie(const Aes256GcmKey& key, absl::string_view nonce,
                      absl::string_view plaintext, absl::string_view ad) {
  std::string out(plaintext.size() + kTag, '\0');
  absl::Status s = key.Seal(Bytes(nonce), plaintext, ad, Mutable(out));
  EXPECT_OK(s);
  return out;
}

TEST(ProviderTest, IsTheOneThisBuildSelected) {
  EXPECT_EQ(ProviderName(), STRONGBOX_EXPECTED_PROVIDER);
}

// The GCM specification's AES-256 test cases 13-16 (McGrew & Viega; also
// in NIST's gcmEncryptExtIV256 set): key, IV, plaintext, AD -> C || T.
struct Vector {
  const char* name;
  const char* key;
  const char* iv;
  const char* plaintext;
  const char* ad;
  const char* sealed;  // ciphertext || tag
};
constexpr char kKey1516[] =
    "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const Vector kVectors[] = {
    {"tc13", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"tc14", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"},
    {"tc15", kKey1516, "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"tc16", kKey1516, "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST(Aes256GcmKeyTest, KnownAnswers) {
  for (const Vector& v : kVectors) {
    SCOPED_TRACE(v.name);
    auto key = MakeKey(Hex(v.key));
    ASSERT_NE(key, nullptr);
    const std::string nonce = Hex(v.iv), plain = Hex(v.plaintext),
                      ad = Hex(v.ad);
    EXPECT_EQ(ToHex(SealOrDie(*key, nonce, plain, ad)), v.sealed);
    const std::string sealed = Hex(v.sealed);
    std::string out(sealed.size() - kTag, '\x55');
    ASSERT_OK(key->Open(Bytes(nonce), sealed, ad, Mutable(out)));
    EXPECT_EQ(ToHex(out), v.plaintext);
  }
}

// A fixed key, nonce and AD over the sizes strongbox stores, against the
// bytes Python's `cryptography` (OpenSSL) gives (the stored format must never
// change with the provider).
TEST(Aes256GcmKeyTest, FixedInputsGiveFixedBytes) {
  auto key = MakeKey(std::string(32, '\x07'));
  ASSERT_NE(key, nullptr);
  const std::string nonce(12, '\x01');
  std::string plain;
  for (int i = 0; i < 70; ++i) plain.push_back(static_cast<char>(i));
  const std::string sealed = SealOrDie(*key, nonce, plain, "app/secret");
  EXPECT_EQ(absl::string_view(ToHex(sealed)).substr(0, 32),
            "76e08bb494baea09d9ddd62a7c3a7e3e");
  EXPECT_EQ(ToHex(sealed.substr(sealed.size() - kTag)),
            "0ede5117426f96f49d209f57f28bdd71");
}

TEST(Aes256GcmKeyTest, EveryFlippedBitAndEveryTruncationIsDataLoss) {
  auto key = MakeKey(std::string(32, 'k'));
  ASSERT_NE(key, nullptr);
  const std::string nonce(12, 'n'), ad = "path/of/value";
  const std::string sealed = SealOrDie(*key, nonce, "a secret value", ad);
  auto expect_rejected = [&](absl::string_view n, absl::string_view s,
                             absl::string_view a) {
    std::string out(s.size() >= kTag ? s.size() - kTag : 0, '\xAA');
    absl::Status status = key->Open(Bytes(n), s, a, Mutable(out));
    EXPECT_EQ(status.code(), Code::kDataLoss) << status;
    EXPECT_EQ(out, std::string(out.size(), '\0')) << "partial output";
  };
  for (size_t bit = 0; bit < sealed.size() * 8; ++bit) {
    std::string bad = sealed;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    expect_rejected(nonce, bad, ad);
  }
  for (size_t bit = 0; bit < ad.size() * 8; ++bit) {
    std::string bad = ad;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    expect_rejected(nonce, sealed, bad);
  }
  for (size_t bit = 0; bit < nonce.size() * 8; ++bit) {
    std::string bad = nonce;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    expect_rejected(bad, sealed, ad);
  }
  for (size_t len = 0; len < sealed.size(); ++len) {
    expect_rejected(nonce, sealed.substr(0, len), ad);
  }
  expect_rejected(nonce, sealed, ad + "x");
  expect_rejected(nonce, sealed + "x", ad);
  // A context that failed is as good as new afterwards.
  std::string out(sealed.size() - kTag, '\0');
  ASSERT_OK(key->Open(Bytes(nonce), sealed, ad, Mutable(out)));
  EXPECT_EQ(out, "a secret value");
}

TEST(Aes256GcmKeyTest, WrongKeyIsDataLoss) {
  auto a = MakeKey(std::string(32, 'a'));
  auto b = MakeKey(std::string(32, 'b'));
  const std::string nonce(12, 'n');
  const std::string sealed = SealOrDie(*a, nonce, "value", "ad");
  std::string out(sealed.size() - kTag, '\xAA');
  EXPECT_EQ(b->Open(Bytes(nonce), sealed, "ad", Mutable(out)).code(),
            Code::kDataLoss);
  EXPECT_EQ(out, std::string(out.size(), '\0'));
}

TEST(Aes256GcmKeyTest, BadArgumentsAreInvalidArgument) {
  EXPECT_EQ(Aes256GcmKey::Create(std::string(31, 'k')).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Aes256GcmKey::Create("").status().code(), Code::kInvalidArgument);
  auto key = MakeKey(std::string(32, 'k'));
  std::string out(5 + kTag, '\0');
  EXPECT_EQ(key->Seal(Bytes("short"), "hello", "", Mutable(out)).code(),
            Code::kInvalidArgument);
  std::string small(5, '\0');
  EXPECT_EQ(key->Seal(Bytes(std::string(12, 'n')), "hello", "", Mutable(small))
                .code(),
            Code::kInvalidArgument);
  const std::string sealed = SealOrDie(*key, std::string(12, 'n'), "hello", "");
  std::string wrong(4, '\0');
  EXPECT_EQ(
      key->Open(Bytes(std::string(12, 'n')), sealed, "", Mutable(wrong)).code(),
      Code::kInvalidArgument);
}

TEST(Aes256GcmKeyTest, InPlaceAndEmpty) {
  auto key = MakeKey(std::string(32, 'k'));
  const std::string nonce(12, 'n');
  std::string buf = "in place plaintext";
  const size_t n = buf.size();
  buf.resize(n + kTag);
  const std::string expected =
      SealOrDie(*key, nonce, "in place plaintext", "ad");
  ASSERT_TRUE(key->Seal(Bytes(nonce), absl::string_view(buf.data(), n), "ad",
                        Mutable(buf))
                  .ok());
  EXPECT_EQ(buf, expected);
  ASSERT_TRUE(key->Open(Bytes(nonce), buf, "ad",
                        absl::MakeSpan(reinterpret_cast<uint8_t*>(&buf[0]), n))
                  .ok());
  EXPECT_EQ(buf.substr(0, n), "in place plaintext");

  const std::string empty_sealed = SealOrDie(*key, nonce, "", "");
  EXPECT_EQ(empty_sealed.size(), kTag);
  EXPECT_OK(key->Open(Bytes(nonce), empty_sealed, "", {}));
  std::string bad = empty_sealed;
  bad[0] ^= 1;
  EXPECT_EQ(key->Open(Bytes(nonce), bad, "", {}).code(), Code::kDataLoss);
}

// OpenInto is Open without the size checks (Open calls it): the same
// plaintext, the same refusals, the same wipe, and a null `out` for an
// empty plaintext.
TEST(Aes256GcmKeyTest, OpenIntoAnswersAsOpen) {
  auto key = MakeKey(std::string(32, 'k'));
  ASSERT_NE(key, nullptr);
  const std::string nonce(12, 'n'), ad = "kv/meta/app/db";
  const std::string sealed = SealOrDie(*key, nonce, "a secret value", ad);
  const uint8_t* n = reinterpret_cast<const uint8_t*>(nonce.data());
  std::string out(sealed.size() - kTag, '\xAA');
  ASSERT_OK(key->OpenInto(sealed, ad, reinterpret_cast<uint8_t*>(&out[0]), n));
  EXPECT_EQ(out, "a secret value");
  // In place, as the barrier opens.
  std::string buf = sealed;
  ASSERT_OK(key->OpenInto(buf, ad, reinterpret_cast<uint8_t*>(&buf[0]), n));
  EXPECT_EQ(buf.substr(0, sealed.size() - kTag), "a secret value");
  // Every failure wipes the output through Cleanse (checked with its test
  // observer: BoringSSL zero-fills a failed open's output itself, so the
  // bytes alone would not show a missing wipe).
  struct Wipes {
    const uint8_t* out = nullptr;
    size_t size = 0;
    int count = 0;
  } wipes;
  SetCleanseObserverForTesting(
      [](const uint8_t* data, size_t size, void* arg) {
        Wipes* w = static_cast<Wipes*>(arg);
        if (data == w->out && size == w->size) ++w->count;
      },
      &wipes);
  int failures = 0;
  for (size_t bit = 0; bit < sealed.size() * 8; ++bit) {
    std::string bad = sealed;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    std::string wiped(sealed.size() - kTag, '\xAA');
    wipes.out = reinterpret_cast<const uint8_t*>(wiped.data());
    wipes.size = wiped.size();
    EXPECT_EQ(
        key->OpenInto(bad, ad, reinterpret_cast<uint8_t*>(&wiped[0]), n).code(),
        Code::kDataLoss);
    ++failures;
    EXPECT_EQ(wiped, std::string(wiped.size(), '\0')) << "partial output";
    EXPECT_EQ(wipes.count, failures) << "no Cleanse of the output";
  }
  SetCleanseObserverForTesting(nullptr, nullptr);
  EXPECT_EQ(
      key->OpenInto(sealed, "other", reinterpret_cast<uint8_t*>(&out[0]), n)
          .code(),
      Code::kDataLoss);
  for (size_t len = 0; len < kTag; ++len) {
    EXPECT_EQ(key->OpenInto(sealed.substr(0, len), ad, nullptr, n).code(),
              Code::kDataLoss);
  }
  const std::string empty_sealed = SealOrDie(*key, nonce, "", "");
  EXPECT_OK(key->OpenInto(empty_sealed, "", nullptr, n));
  std::string bad = empty_sealed;
  bad[3] ^= 1;
  EXPECT_EQ(key->OpenInto(bad, "", nullptr, n).code(), Code::kDataLoss);
}

TEST(Aes256GcmKeyTest, ManyThreadsOnOneKey) {
  auto key = MakeKey(std::string(32, 'k'));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        std::string nonce(12, '\0');
        nonce[0] = static_cast<char>(t);
        nonce[1] = static_cast<char>(i);
        nonce[2] = static_cast<char>(i >> 8);
        const std::string plain(static_cast<size_t>(i % 100), 'p');
        const std::string ad = "ad" + std::to_string(t);
        std::string sealed(plain.size() + kTag, '\0');
        std::string out(plain.size(), '\0');
        if (!key->Seal(Bytes(nonce), plain, ad, Mutable(sealed)).ok() ||
            !key->Open(Bytes(nonce), sealed, ad, Mutable(out)).ok() ||
            out != plain) {
          ++failures;
        }
        if (i % 7 == 0) {
          sealed[0] ^= 1;
          if (key->Open(Bytes(nonce), sealed, ad, Mutable(out)).code() !=
              Code::kDataLoss) {
            ++failures;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Aes256GcmKeyTest, KeyScheduleIsWipedOnDestruction) {
  struct Log {
    std::vector<std::pair<const void*, size_t>> wiped;
  } log;
  auto key = MakeKey(std::string(32, 'k'));
  std::vector<std::pair<const void*, size_t>> buffers;
  key->AppendSecretBuffers(&buffers);
  SetCleanseObserverForTesting(
      [](const uint8_t* data, size_t size, void* arg) {
        for (size_t i = 0; i < size; ++i) ASSERT_EQ(data[i], 0);
        static_cast<Log*>(arg)->wiped.emplace_back(data, size);
      },
      &log);
  key.reset();
  SetCleanseObserverForTesting(nullptr, nullptr);
  for (const auto& [data, size] : buffers) {
    bool found = false;
    for (const auto& [w, wsize] : log.wiped)
      found |= w == data && wsize >= size;
    EXPECT_TRUE(found) << "a key-schedule buffer was freed unwiped";
  }
}

TEST(RandomTest, FillsAndDiffers) {
  std::string a(32, '\0'), b(32, '\0');
  ASSERT_OK(RandomBytes(Mutable(a)));
  ASSERT_OK(RandomBytes(Mutable(b)));
  EXPECT_NE(a, b);
  EXPECT_NE(a, std::string(32, '\0'));
  EXPECT_OK(RandomBytes({}));
}

TEST(SecureMemoryTest, CleanseAndCompare) {
  std::string s = "secret";
  Cleanse(&s[0], s.size());
  EXPECT_EQ(s, std::string(6, '\0'));
  Cleanse(nullptr, 0);
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc", 3));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd", 3));
  EXPECT_TRUE(ConstantTimeEquals(nullptr, nullptr, 0));
}

TEST(DigestTest, Sha256Vectors) {
  EXPECT_EQ(ToHex(std::string(
                reinterpret_cast<const char*>(Sha256("").value().data()), 32)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(
      ToHex(std::string(
          reinterpret_cast<const char*>(Sha256("abc").value().data()), 32)),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

std::string HmacHex(absl::string_view key, absl::string_view data) {
  absl::StatusOr<Sha256Digest> mac = HmacSha256(key, data);
  EXPECT_OK(mac);
  return ToHex(
      absl::string_view(reinterpret_cast<const char*>(mac->data()), 32));
}

// RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
TEST(DigestTest, HmacSha256Vectors) {
  EXPECT_EQ(HmacHex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HmacHex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(HmacHex(std::string(131, '\xaa'),
                    "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(HmacHex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

}  // namespace
}  // namespace strongbox::crypto
