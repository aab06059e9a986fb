// TLS for the native HTTPS transport: one OpenSSL context per trust configuration (shared by every
// client that asks for the same), verification of the peer's chain and name, ALPN offering h2 and
// http/1.1, and session resumption per host (a new connection to a host resumes the last one's
// session: one round trip and no certificate check saved on every connection after the first).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace flexllm::detail {

struct TlsOptions {
  bool verify = true;       // the peer's chain and host name
  std::string ca_file{};    // extra trusted CAs (PEM), besides the system store
  std::string client_cert;  // PEM certificate (chain) for servers that ask for one (mTLS)
  std::string client_key;   // its private key (PEM; the certificate file when empty)
};

class TlsContext {
 public:
  // The context for `options`: made once per distinct options, then shared. The system's trust
  // store is OpenSSL's default (SSL_CERT_FILE / SSL_CERT_DIR override it). Throws
  // InvalidRequestError naming the file when a CA, certificate or key cannot be loaded.
  static std::shared_ptr<TlsContext> get(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  bool verify() const { return verify_; }
  const std::string& id() const { return id_; }  // tells contexts apart in pool keys

  // A new client SSL for `host` (SNI unless an IP address; name checked when verifying), resuming
  // the last session of `session_key` when there is one. nullptr on failure.
  SSL* new_ssl(const std::string& host, const std::string& session_key);
  // Why the handshake of `ssl` failed, in words (verification result, alert, or OpenSSL's
  // error queue).
  static std::string handshake_error(SSL* ssl, int ssl_error);

 private:
  explicit TlsContext(const TlsOptions& options);
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

  SSL_CTX* ctx_ = nullptr;
  bool verify_ = true;
  std::string id_;
  std::mutex sessions_mu_;  // clients on several runtimes may share a context
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
};

}  // namespace flexllm::detail
