// SecretBytes: the one type that holds key material in strongbox.
//
// A fixed-size, heap-allocated byte buffer that
//   * lives on its own page-aligned allocation, so mlock()/munlock() never
//     touch another object's pages; mlock() is attempted (keeping keys out
//     of swap) and its failure (RLIMIT_MEMLOCK, EPERM) tolerated — locked()
//     reports the outcome. The pages are also excluded from core dumps
//     (MADV_DONTDUMP) where the OS allows;
//   * is wiped (the crypto provider's cleanse, which the compiler cannot
//     elide) on Clear(), on move-from and on
//     destruction, before the memory is returned;
//   * is move-only: a copy has to be asked for (Copy()), never implicit;
//   * compares in constant time.
// Convert to std::string only at an API edge that demands one (shares
// handed to an operator) and wipe such strings with WipeString().
//
// Thread-compatible: a const SecretBytes may be read from many threads.
#ifndef STRONGBOX_SECRET_BYTES_H_
#define STRONGBOX_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox {

class SecretBytes {
 public:
  // An empty buffer (size 0, no allocation).
  SecretBytes() = default;
  // `size` zero bytes.
  explicit SecretBytes(size_t size);
  ~SecretBytes() { Clear(); }

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // A buffer holding a copy of `bytes`.
  static SecretBytes Copy(absl::string_view bytes);
  // `size` bytes from the crypto provider's RNG (BoringSSL or OpenSSL 3).
  // Aborts if the RNG fails, as BoringSSL does: a key that is not random
  // must never be used.
  static SecretBytes Random(size_t size);

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // A view for passing to APIs; must not outlive this object or be copied
  // into a long-lived std::string.
  absl::string_view view() const {
    return absl::string_view(reinterpret_cast<const char*>(data_), size_);
  }
  // Whether mlock() succeeded for this buffer.
  bool locked() const { return locked_; }

  // Constant-time equality (sizes are not secret).
  bool Equals(const SecretBytes& other) const;
  bool Equals(absl::string_view other) const;

  // Wipes and frees; afterwards empty().
  void Clear();

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;  // allocated bytes (a multiple of the page size)
  bool locked_ = false;
};

// How many SecretBytes buffers, since the process started, could not be
// mlock()ed (RLIMIT_MEMLOCK reached, or EPERM) and so live in ordinary,
// swappable memory. Such a buffer works as any other (locked() is false);
// this count is the warning, for the host to log or export. Each buffer
// locks whole pages, one at least: a process holding many keys at once
// needs RLIMIT_MEMLOCK of (page size x buffers) to lock them all. The
// long-lived ones are few: a page per barrier keyring term, unseal
// progress, the audit salt. Transit key versions hold none once loaded
// (an expanded provider context each, not locked); their key bytes pass
// through a SecretBytes only while a version is made or decoded.
uint64_t SecretBytesLockFailures();

// Overwrites all of a std::string's buffer, up to its capacity (a wipe the
// compiler cannot elide), and clears it.
void WipeString(std::string& s);

// Overwrites data[0..size) with zeros (a wipe the compiler cannot elide):
// for a host's own buffers that carried shares or secret values.
void WipeMemory(void* data, size_t size);

}  // namespace strongbox

#endif  // STRONGBOX_SECRET_BYTES_H_
