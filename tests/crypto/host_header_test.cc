// A host that links strongbox and writes `#include <openssl/evp.h>` for its
// own OpenSSL code must get the system's OpenSSL 3 header, whichever
// provider strongbox was built with: strongbox's provider include path
// (BoringSSL's /usr/include/android) is private to lib/crypto.
//
// This file plays such a host, so it is exempt from tools/test's "only
// lib/crypto includes <openssl/" check. It only compiles against the
// headers (nothing of OpenSSL is called or linked): the test is that it
// builds.
#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include "gtest/gtest.h"
#include "strongbox/barrier.h"
#include "strongbox/secret_store.h"

#ifdef OPENSSL_IS_BORINGSSL
#error "a strongbox dependent got BoringSSL's <openssl/evp.h>"
#endif
static_assert(OPENSSL_VERSION_MAJOR >= 3, "expected the system OpenSSL 3");

namespace {

// Declared only by OpenSSL 3's evp.h (undeclared under BoringSSL's).
using KeygenFn = decltype(&EVP_PKEY_Q_keygen);

TEST(HostHeaderTest, OpenSslHeadersAreTheSystemOnes) {
  EXPECT_GE(OPENSSL_VERSION_MAJOR, 3);
  EXPECT_TRUE(sizeof(KeygenFn) > 0);
}

}  // namespace
