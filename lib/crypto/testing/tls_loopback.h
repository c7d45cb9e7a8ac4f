// A TLS echo server on 127.0.0.1 and a TLS client, on OpenSSL 3's libssl,
// with a self-signed EC P-256 certificate generated at start-up: for tests
// that play a host using OpenSSL's TLS in the same process as strongbox
// (tests/crypto:coexistence_test). testonly; OpenSSL provider builds only.
//
// Thread-safe: TlsRoundTrip may run on many threads at once against one
// server; the server serves each connection on a thread of its own.
#ifndef STRONGBOX_LIB_CRYPTO_TESTING_TLS_LOOPBACK_H_
#define STRONGBOX_LIB_CRYPTO_TESTING_TLS_LOOPBACK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox::crypto::testing {

class TlsEchoServer {
 public:
  // Generates a key and a self-signed certificate (CN "strongbox-test"),
  // listens on an ephemeral loopback port and starts serving: each
  // connection gets a TLS handshake, then every message is echoed back
  // until the client closes.
  static absl::StatusOr<std::unique_ptr<TlsEchoServer>> Start();
  ~TlsEchoServer();  // stops accepting and joins every connection
  TlsEchoServer(const TlsEchoServer&) = delete;
  TlsEchoServer& operator=(const TlsEchoServer&) = delete;

  int port() const;
  // The certificate, PEM: the one trust anchor a client needs.
  const std::string& certificate_pem() const;
  // Connections whose handshake completed.
  int handshakes() const;

  struct State;

 private:
  explicit TlsEchoServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Connects to 127.0.0.1:`port`, verifies the server's certificate against
// `trusted_pem` and its name ("strongbox-test"), sends `message` (at most
// 16 KiB) and returns what comes back. UNAVAILABLE on connection or TLS
// failure (with OpenSSL's error text).
absl::StatusOr<std::string> TlsRoundTrip(int port,
                                         const std::string& trusted_pem,
                                         absl::string_view message);

}  // namespace strongbox::crypto::testing

#endif  // STRONGBOX_LIB_CRYPTO_TESTING_TLS_LOOPBACK_H_
