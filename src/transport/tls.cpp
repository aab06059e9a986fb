#include "transport/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

// ALPN: HTTP/2 first, HTTP/1.1 for servers without it.
constexpr unsigned char kAlpn[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int session_key_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

[[noreturn]] void invalid(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {};
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  throw InvalidRequestError(
      Error(ErrorKind::invalid_request, e ? fmt::format("{}: {}", what, buf) : what));
}

bool is_ip(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::get(const TlsOptions& options) {
  // OpenSSL without its atexit cleanup, which would run before the process-wide runtime (made
  // before OpenSSL is first set up) is destroyed: after it, the runtime would free contexts and
  // connections of an OpenSSL already torn down, and its I/O thread's OpenSSL state would leak.
  static const bool openssl_ready = OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, nullptr) == 1;
  if (!openssl_ready) invalid("cannot initialise OpenSSL");
  static std::mutex mu;
  static std::unordered_map<std::string, std::weak_ptr<TlsContext>> made;
  // Ids are never reused: a context made again after its predecessor died must not take the id
  // (and with it the connection pools) of another live context, e.g. one that does not verify.
  static uint64_t contexts_made = 0;
  const std::string id = fmt::format("{}|{}|{}|{}", options.verify ? 1 : 0, options.ca_file,
                                     options.client_cert, options.client_key);
  std::lock_guard lock(mu);
  if (auto existing = made[id].lock()) return existing;
  std::shared_ptr<TlsContext> ctx(new TlsContext(options));
  ctx->id_ = std::to_string(++contexts_made);
  made[id] = ctx;
  return ctx;
}

TlsContext::TlsContext(const TlsOptions& options) : verify_(options.verify) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) invalid("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof kAlpn);
  if (verify_) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(ctx_) != 1) invalid("cannot load the system's CAs");
    if (!options.ca_file.empty() &&
        SSL_CTX_load_verify_locations(ctx_, options.ca_file.c_str(), nullptr) != 1)
      invalid(fmt::format("ca_cert {}: cannot load it as PEM certificates", options.ca_file));
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  if (!options.client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, options.client_cert.c_str()) != 1)
      invalid(fmt::format("client_cert {}: cannot load it", options.client_cert));
    const std::string& key = options.client_key.empty() ? options.client_cert : options.client_key;
    if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)
      invalid(fmt::format("client_key {}: cannot load it", key));
    if (SSL_CTX_check_private_key(ctx_) != 1)
      invalid(
          fmt::format("client_key {}: does not match client_cert {}", key, options.client_cert));
  }
  // Sessions are kept here, per host, not in OpenSSL's cache (which a client does not search).
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_, &TlsContext::on_new_session);
  SSL_CTX_set_app_data(ctx_, this);
}

TlsContext::~TlsContext() {
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  SSL_CTX_free(ctx_);
}

SSL* TlsContext::new_ssl(const std::string& host, const std::string& session_key) {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  SSL_set_ex_data(ssl, session_key_index(), const_cast<std::string*>(&session_key));
  if (!is_ip(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (verify_) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip(host)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, host.c_str());
    }
  }
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(session_key);
  if (it != sessions_.end()) SSL_set_session(ssl, it->second);
  return ssl;
}

int TlsContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, session_key_index()));
  if (!self || !key) return 0;
  std::lock_guard lock(self->sessions_mu_);
  SSL_SESSION*& slot = self->sessions_[*key];
  if (slot) SSL_SESSION_free(slot);
  slot = session;
  return 1;  // the session is ours now
}

std::string TlsContext::handshake_error(SSL* ssl, int ssl_error) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) return X509_verify_cert_error_string(verify);
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e) {
    char buf[256] = {};
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
  }
  if (ssl_error == SSL_ERROR_SYSCALL) return errno ? std::strerror(errno) : "connection closed";
  return fmt::format("TLS error {}", ssl_error);
}

}  // namespace flexllm::detail
