// bench/floors.h over OpenSSL 3: per thread, one context per direction,
// copied once from a template keyed at construction (a context is mutable
// state); per message only the IV is set, as lib/crypto does.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <atomic>

#include "bench/floors.h"

namespace strongbox::bench {
namespace {

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

std::atomic<uint64_t> g_next_id{1};

// This thread's contexts, for the RawAead with id `owner`.
struct ThreadContexts {
  uint64_t owner = 0;
  EVP_CIPHER_CTX* seal = nullptr;
  EVP_CIPHER_CTX* open = nullptr;
  ~ThreadContexts() {
    EVP_CIPHER_CTX_free(seal);
    EVP_CIPHER_CTX_free(open);
  }
};
thread_local ThreadContexts t_contexts;

}  // namespace

struct RawAead::State {
  uint64_t id = g_next_id.fetch_add(1);
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  EVP_CIPHER_CTX* seal_template = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* open_template = EVP_CIPHER_CTX_new();

  ThreadContexts& Mine() {
    ThreadContexts& t = t_contexts;
    if (t.owner != id) {
      EVP_CIPHER_CTX_free(t.seal);
      EVP_CIPHER_CTX_free(t.open);
      t.seal = EVP_CIPHER_CTX_new();
      t.open = EVP_CIPHER_CTX_new();
      EVP_CIPHER_CTX_copy(t.seal, seal_template);
      EVP_CIPHER_CTX_copy(t.open, open_template);
      t.owner = id;
    }
    return t;
  }
};

RawAead::RawAead() : state_(new State) {
  uint8_t key[32];
  RAND_bytes(key, sizeof(key));
  EVP_EncryptInit_ex2(state_->seal_template, state_->cipher, key, nullptr,
                      nullptr);
  EVP_DecryptInit_ex2(state_->open_template, state_->cipher, key, nullptr,
                      nullptr);
}

RawAead::~RawAead() {
  EVP_CIPHER_CTX_free(state_->seal_template);
  EVP_CIPHER_CTX_free(state_->open_template);
  EVP_CIPHER_free(state_->cipher);
}

absl::string_view RawAead::Provider() { return "openssl"; }

void RawAead::RandomNonce(uint8_t* out) { RAND_bytes(out, kNonceBytes); }

void RawAead::SealInto(absl::string_view plaintext, absl::string_view ad,
                       std::string* out) {
  out->resize(kNonceBytes + plaintext.size() + kTagBytes);
  uint8_t* p = reinterpret_cast<uint8_t*>(&(*out)[0]);
  RAND_bytes(p, kNonceBytes);
  EVP_CIPHER_CTX* ctx = state_->Mine().seal;
  int len = 0;
  EVP_EncryptInit_ex2(ctx, nullptr, nullptr, p, nullptr);
  EVP_EncryptUpdate(ctx, nullptr, &len, U8(ad), static_cast<int>(ad.size()));
  EVP_EncryptUpdate(ctx, p + kNonceBytes, &len, U8(plaintext),
                    static_cast<int>(plaintext.size()));
  EVP_EncryptFinal_ex(ctx, p + kNonceBytes + plaintext.size(), &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes,
                      p + kNonceBytes + plaintext.size());
}

bool RawAead::OpenInto(absl::string_view sealed, absl::string_view ad,
                       std::string* out) const {
  if (sealed.size() < kNonceBytes + kTagBytes) return false;
  const size_t n = sealed.size() - kNonceBytes - kTagBytes;
  out->resize(n);
  const uint8_t* p = U8(sealed);
  EVP_CIPHER_CTX* ctx = state_->Mine().open;
  int len = 0;
  uint8_t end[16];
  return EVP_DecryptInit_ex2(ctx, nullptr, nullptr, p, nullptr) == 1 &&
         EVP_DecryptUpdate(ctx, nullptr, &len, U8(ad),
                           static_cast<int>(ad.size())) == 1 &&
         EVP_DecryptUpdate(ctx, reinterpret_cast<uint8_t*>(&(*out)[0]), &len,
                           p + kNonceBytes, static_cast<int>(n)) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes,
                             const_cast<uint8_t*>(p + kNonceBytes + n)) == 1 &&
         EVP_DecryptFinal_ex(ctx, end, &len) == 1;
}

}  // namespace strongbox::bench
