// The OpenSSL 3 provider (Debian's libssl-dev), chosen with
// `--config=openssl` for hosts that link OpenSSL themselves. Every
// definition of lib/crypto's headers for this provider is here.
//
// An EVP_CIPHER_CTX is mutable state, so unlike BoringSSL's EVP_AEAD_CTX it
// cannot be shared by concurrent callers. Each key keeps, per direction, a
// template context keyed once at Create and a few slots (one per shard of
// threads, each behind its own lock) that are copies of it made on first
// use; a message then costs only a new IV on a ready context, never a key
// expansion.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <climits>
#include <cstring>

#include "lib/crypto/aead.h"
#include "lib/crypto/random.h"
#include "lib/crypto/secure_memory.h"
#include "lib/util/mutex.h"

#if OPENSSL_VERSION_MAJOR < 3
#error "the openssl provider needs OpenSSL 3"
#endif
#ifdef OPENSSL_IS_BORINGSSL
#error "the openssl provider is built against BoringSSL's headers"
#endif

namespace strongbox::crypto {
namespace {

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// The cipher, fetched once: an explicit fetch spares every Init the
// implicit lookup. Immutable once fetched; never freed (one per process).
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* const cipher =
      EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

struct CtxDeleter {
  // EVP_CIPHER_CTX_free has the provider wipe its key schedule
  // (OPENSSL_clear_free of the GCM context).
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

constexpr int kSlots = 4;

// One direction of one key.
class Direction {
 public:
  Direction() = default;
  Direction(const Direction&) = delete;
  Direction& operator=(const Direction&) = delete;

  // Keys the template. Called once, before any use.
  bool Init(bool encrypt, absl::string_view key) {
    template_.reset(EVP_CIPHER_CTX_new());
    if (template_ == nullptr || Aes256Gcm() == nullptr) return false;
    return EVP_CipherInit_ex2(template_.get(), Aes256Gcm(), U8(key), nullptr,
                              encrypt ? 1 : 0, nullptr) == 1;
  }

  // Runs `fn(ctx)` on a keyed context no other thread is using.
  template <typename Fn>
  absl::Status With(Fn fn) const {
    Slot& slot = slots_[CurrentShardIndex() % kSlots];
    MutexLock lock(&slot.mu);
    if (slot.ctx == nullptr) {
      CtxPtr copy(EVP_CIPHER_CTX_new());
      bool copied;
      {
        // The template is only read, but OpenSSL promises nothing about
        // concurrent copies of one context; copies are rare.
        MutexLock template_lock(&template_mu_);
        copied = copy != nullptr &&
                 EVP_CIPHER_CTX_copy(copy.get(), template_.get()) == 1;
      }
      if (!copied) return absl::InternalError("AEAD context copy failed");
      slot.ctx = std::move(copy);
    }
    return fn(slot.ctx.get());
  }

 private:
  struct alignas(64) Slot {
    Mutex mu;
    CtxPtr ctx ABSL_GUARDED_BY(mu);
  };
  CtxPtr template_;  // constant after Init
  mutable Mutex template_mu_;
  mutable Slot slots_[kSlots];
};

bool FitsInt(size_t n) { return n <= static_cast<size_t>(INT_MAX); }

}  // namespace

absl::string_view ProviderName() { return "openssl"; }

// ------------------------------------------------------------------ AEAD

struct Aes256GcmKey::State {
  Direction seal;
  Direction open;
};

Aes256GcmKey::Aes256GcmKey(std::unique_ptr<State> state)
    : state_(std::move(state)) {
  CountLive(+1);
}
Aes256GcmKey::~Aes256GcmKey() { CountLive(-1); }

absl::StatusOr<std::unique_ptr<Aes256GcmKey>> Aes256GcmKey::Create(
    absl::string_view key) {
  if (key.size() != kKeyBytes) {
    return absl::InvalidArgumentError("AES-256-GCM key has the wrong length");
  }
  auto state = std::make_unique<State>();
  if (!state->seal.Init(/*encrypt=*/true, key) ||
      !state->open.Init(/*encrypt=*/false, key)) {
    return absl::InternalError("AEAD init failed");
  }
  return std::unique_ptr<Aes256GcmKey>(new Aes256GcmKey(std::move(state)));
}

absl::Status Aes256GcmKey::Seal(absl::Span<const uint8_t> nonce,
                                absl::string_view plaintext,
                                absl::string_view ad,
                                absl::Span<uint8_t> out) const {
  if (nonce.size() != kNonceBytes) {
    return absl::InvalidArgumentError("AES-GCM nonce must be 12 bytes");
  }
  if (out.size() != plaintext.size() + kTagBytes) {
    return absl::InvalidArgumentError("AEAD output buffer has the wrong size");
  }
  if (!FitsInt(plaintext.size()) || !FitsInt(ad.size())) {
    return absl::InvalidArgumentError("AEAD input is too long");
  }
  absl::Status status = state_->seal.With([&](EVP_CIPHER_CTX* ctx) {
    int len = 0, final_len = 0;
    uint8_t* ct = out.data();
    // The default IV length is 12; per message only the IV is set.
    if (EVP_EncryptInit_ex2(ctx, nullptr, nullptr, nonce.data(), nullptr) !=
            1 ||
        (!ad.empty() && EVP_EncryptUpdate(ctx, nullptr, &len, U8(ad),
                                          static_cast<int>(ad.size())) != 1) ||
        (!plaintext.empty() &&
         (EVP_EncryptUpdate(ctx, ct, &len, U8(plaintext),
                            static_cast<int>(plaintext.size())) != 1 ||
          static_cast<size_t>(len) != plaintext.size())) ||
        EVP_EncryptFinal_ex(ctx, ct + plaintext.size(), &final_len) != 1 ||
        final_len != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes,
                            ct + plaintext.size()) != 1) {
      return absl::InternalError("AEAD seal failed");
    }
    return absl::OkStatus();
  });
  if (!status.ok()) Cleanse(out.data(), out.size());
  return status;
}

absl::Status Aes256GcmKey::OpenInto(absl::string_view sealed,
                                    absl::string_view ad, uint8_t* out,
                                    const uint8_t* nonce) const {
  if (sealed.size() < kTagBytes) {
    return absl::DataLossError("AEAD ciphertext is shorter than its tag");
  }
  if (!FitsInt(sealed.size()) || !FitsInt(ad.size())) {
    return absl::InvalidArgumentError("AEAD input is too long");
  }
  const size_t ct_size = sealed.size() - kTagBytes;
  // The tag is copied out first: `out` may start where `sealed` starts.
  uint8_t tag[kTagBytes];
  std::memcpy(tag, sealed.data() + ct_size, kTagBytes);
  absl::Status status = state_->open.With([&](EVP_CIPHER_CTX* ctx) {
    int len = 0, final_len = 0;
    uint8_t end[16];  // Final writes nothing for GCM; a valid pointer anyway
    if (EVP_DecryptInit_ex2(ctx, nullptr, nullptr, nonce, nullptr) != 1 ||
        (!ad.empty() && EVP_DecryptUpdate(ctx, nullptr, &len, U8(ad),
                                          static_cast<int>(ad.size())) != 1) ||
        (ct_size != 0 && (EVP_DecryptUpdate(ctx, out, &len, U8(sealed),
                                            static_cast<int>(ct_size)) != 1 ||
                          static_cast<size_t>(len) != ct_size)) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) != 1) {
      return absl::InternalError("AEAD open failed");
    }
    // Final checks the tag.
    if (EVP_DecryptFinal_ex(ctx, end, &final_len) != 1 || final_len != 0) {
      return absl::DataLossError("AEAD ciphertext failed authentication");
    }
    return absl::OkStatus();
  });
  // Update already wrote unauthenticated plaintext: never hand it out.
  if (!status.ok() && ct_size != 0) Cleanse(out, ct_size);
  return status;
}

void Aes256GcmKey::AppendSecretBuffers(
    std::vector<std::pair<const void*, size_t>>* out) const {}

// ---------------------------------------------------------------- random

absl::Status RandomBytes(absl::Span<uint8_t> out) {
  uint8_t* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    const int n = static_cast<int>(left > INT_MAX ? INT_MAX : left);
    if (RAND_bytes(p, n) != 1) {
      Cleanse(out.data(), out.size());
      return absl::InternalError("random number generator failed");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace strongbox::crypto
