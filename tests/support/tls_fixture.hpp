// TLS fixtures for the HTTPS tests: a throw-away PKI generated with OpenSSL's API (a CA; server
// certificates that are valid, expired, or for the wrong name; a client certificate for mTLS),
// written as PEM files into a fresh temporary directory, and Debian's nginx started in the
// foreground as a TLS (+ HTTP/2) front of an in-process mock server.
//
// Nothing here skips: a missing nginx, a certificate that cannot be made or a server that does not
// come up throws std::runtime_error saying why, which fails the test that asked.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace flexllm::test {

// A directory of its own under the system's temp directory, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "flexllm_tls");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A certificate and its key, as PEM files.
struct CertFiles {
  std::string cert{};
  std::string key{};
};

// The test PKI, generated when made (EC P-256 keys, SHA-256 signatures). Every leaf is signed by
// `ca`; the CA itself is in no system store, so only a client told to trust `ca_pem` accepts them.
struct TestPki {
  explicit TestPki(const std::string& dir);

  std::string ca_pem;    // the CA certificate (trust this)
  CertFiles ca;          // the CA and its key
  CertFiles server;      // localhost, 127.0.0.1 and ::1; valid now
  CertFiles expired;     // the same names, but notAfter yesterday
  CertFiles wrong_name;  // valid now, but only for example.invalid
  CertFiles client;      // clientAuth, for mTLS
};

// Whether the IPv6 loopback address can be bound here (some CI containers have no IPv6).
bool ipv6_loopback_available();

struct NginxOptions {
  CertFiles cert{};                  // what the server presents
  uint16_t upstream_port = 0;        // everything is proxied to http://127.0.0.1:upstream_port
  bool http2 = true;                 // false: `listen ... ssl` only (an HTTP/1.1-only server)
  int max_concurrent_streams = 128;  // http2_max_concurrent_streams
  int keepalive_requests = 100000;   // requests per connection, then GOAWAY / Connection: close
  std::string client_ca{};           // non-empty: ssl_verify_client on, trusting this CA (mTLS)
  bool ipv6_loopback = false;        // also listen on [::1] (same port), for "localhost" URLs
};

// /usr/sbin/nginx in the foreground (daemon off, one worker) on a free loopback port, with its
// configuration, pid file, temp directories, access log and stderr in a directory of its own.
// The access log has one line per request:
//   "$connection $connection_requests $ssl_session_reused $status $request"
// ($ssl_session_reused: "r" when the connection resumed a TLS session, "." after a full handshake).
class NginxTls {
 public:
  static constexpr const char* kBinary = "/usr/sbin/nginx";

  // Starts it and returns once its port accepts connections; throws std::runtime_error (with
  // nginx's own error output) when it cannot.
  explicit NginxTls(NginxOptions options);
  ~NginxTls();  // stop()
  NginxTls(const NginxTls&) = delete;
  NginxTls& operator=(const NginxTls&) = delete;

  // SIGTERM, then waits for it to exit. Idempotent.
  void stop();

  uint16_t port() const { return port_; }
  std::string base_url(const std::string& host = "127.0.0.1") const;  // "https://HOST:PORT/v1"

  // The access log's lines so far.
  std::vector<std::string> access_log() const;
  // Distinct connections that carried a request (the access log's first field).
  size_t connections() const;
  // Waits (bounded) until the access log has at least `lines` lines; nginx writes a line once a
  // request is over, which may be a moment after the client has its answer. Returns whether it
  // got there.
  bool wait_for_log_lines(size_t lines,
                          std::chrono::milliseconds limit = std::chrono::seconds(5)) const;
  // What nginx wrote on stderr (for failure messages).
  std::string errors() const;

 private:
  bool start_on(uint16_t port, std::string& why);

  NginxOptions options_;
  TempDir dir_{"flexllm_nginx"};
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace flexllm::test
