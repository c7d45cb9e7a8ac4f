#include "lib/crypto/testing/tls_loopback.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/util/mutex.h"

namespace strongbox::crypto::testing {
namespace {

constexpr char kName[] = "strongbox-test";

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

absl::Status TlsError(absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", OpenSslErrors()));
}

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

}  // namespace

struct TlsEchoServer::State {
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  std::unique_ptr<X509, X509Free> cert;
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx;
  std::string cert_pem;
  int listen_fd = -1;
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> handshakes{0};
  std::thread acceptor;
  Mutex mu;
  std::vector<std::thread> connections ABSL_GUARDED_BY(mu);

  void Serve(int fd) {
    SSL* ssl = SSL_new(ctx.get());
    if (ssl != nullptr && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
      ++handshakes;
      char buf[16 * 1024];
      for (;;) {
        const int n = SSL_read(ssl, buf, sizeof(buf));
        if (n <= 0) break;
        if (SSL_write(ssl, buf, n) != n) break;
      }
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
  }

  void Accept() {
    for (;;) {
      const int fd = accept(listen_fd, nullptr, nullptr);
      if (stopping.load()) {
        if (fd >= 0) close(fd);
        return;
      }
      if (fd < 0) continue;
      MutexLock lock(&mu);
      connections.emplace_back([this, fd] { Serve(fd); });
    }
  }
};

TlsEchoServer::TlsEchoServer(std::unique_ptr<State> state)
    : state_(std::move(state)) {}

TlsEchoServer::~TlsEchoServer() {
  state_->stopping = true;
  shutdown(state_->listen_fd, SHUT_RDWR);
  if (state_->acceptor.joinable()) state_->acceptor.join();
  close(state_->listen_fd);
  std::vector<std::thread> connections;
  {
    MutexLock lock(&state_->mu);
    connections.swap(state_->connections);
  }
  for (std::thread& t : connections) t.join();
}

int TlsEchoServer::port() const { return state_->port; }
const std::string& TlsEchoServer::certificate_pem() const {
  return state_->cert_pem;
}
int TlsEchoServer::handshakes() const { return state_->handshakes.load(); }

absl::StatusOr<std::unique_ptr<TlsEchoServer>> TlsEchoServer::Start() {
  // A peer that goes away must not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  auto state = std::make_unique<State>();

  state->key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (state->key == nullptr) return TlsError("key generation");
  state->cert.reset(X509_new());
  X509* x = state->cert.get();
  X509_NAME* name = X509_get_subject_name(x);
  if (x == nullptr || X509_set_version(x, 2) != 1 ||
      ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(x), -60) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(x), 3600) == nullptr ||
      X509_set_pubkey(x, state->key.get()) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const uint8_t*>(kName), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(x, name) != 1 ||
      X509_sign(x, state->key.get(), EVP_sha256()) <= 0) {
    return TlsError("self-signed certificate");
  }
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr || PEM_write_bio_X509(bio, x) != 1) {
    BIO_free(bio);
    return TlsError("certificate PEM");
  }
  char* pem = nullptr;
  const long pem_len = BIO_get_mem_data(bio, &pem);
  state->cert_pem.assign(pem, static_cast<size_t>(pem_len));
  BIO_free(bio);

  state->ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (state->ctx == nullptr ||
      SSL_CTX_set_min_proto_version(state->ctx.get(), TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate(state->ctx.get(), x) != 1 ||
      SSL_CTX_use_PrivateKey(state->ctx.get(), state->key.get()) != 1) {
    return TlsError("server context");
  }

  state->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (state->listen_fd < 0 ||
      bind(state->listen_fd, reinterpret_cast<sockaddr*>(&addr),
           sizeof(addr)) != 0 ||
      listen(state->listen_fd, 64) != 0 ||
      getsockname(state->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) !=
          0) {
    if (state->listen_fd >= 0) close(state->listen_fd);
    return absl::UnavailableError("cannot listen on a loopback port");
  }
  state->port = ntohs(addr.sin_port);
  State* s = state.get();
  state->acceptor = std::thread([s] { s->Accept(); });
  return std::unique_ptr<TlsEchoServer>(new TlsEchoServer(std::move(state)));
}

absl::StatusOr<std::string> TlsRoundTrip(int port,
                                         const std::string& trusted_pem,
                                         absl::string_view message) {
  if (message.size() > 16 * 1024) {
    return absl::InvalidArgumentError("message over 16 KiB");
  }
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) return TlsError("client context");
  BIO* bio =
      BIO_new_mem_buf(trusted_pem.data(), static_cast<int>(trusted_pem.size()));
  std::unique_ptr<X509, X509Free> anchor(
      bio == nullptr ? nullptr
                     : PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (anchor == nullptr ||
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), anchor.get()) !=
          1) {
    return TlsError("trust anchor");
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);

  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError("socket() failed");
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError("cannot connect to the TLS server");
  }
  SSL* ssl = SSL_new(ctx.get());
  absl::StatusOr<std::string> result;
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1 ||
      SSL_set1_host(ssl, kName) != 1 || SSL_connect(ssl) != 1) {
    result = TlsError("TLS handshake");
  } else if (SSL_write(ssl, message.data(), static_cast<int>(message.size())) !=
             static_cast<int>(message.size())) {
    result = TlsError("TLS write");
  } else {
    std::string echo;
    char buf[16 * 1024];
    while (echo.size() < message.size()) {
      const int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0) break;
      echo.append(buf, static_cast<size_t>(n));
    }
    if (echo.size() == message.size()) {
      result = std::move(echo);
    } else {
      result = TlsError("TLS read");
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();
  close(fd);
  return result;
}

}  // namespace strongbox::crypto::testing
