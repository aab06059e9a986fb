#include "tls_fixture.hpp"

#include "files.hpp"
#include "spawn.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace flexllm::test {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void openssl_failure(const std::string& what) {
  char buf[256] = {};
  unsigned long e = ERR_get_error();
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  throw std::runtime_error("test PKI: " + what + (e ? std::string(": ") + buf : std::string()));
}

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

Key new_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) openssl_failure("cannot generate an EC key");
  return key;
}

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (!ext) openssl_failure("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

struct CertSpec {
  std::string common_name;
  long not_before = -3600;     // seconds from now
  long not_after = 7 * 86400;  // seconds from now
  bool ca = false;
  std::string san{};             // subjectAltName, e.g. "DNS:localhost,IP:127.0.0.1"
  std::string extended_usage{};  // "serverAuth" / "clientAuth"
};

// Signed by `issuer` (with `issuer_key`), or self-signed when issuer is null.
Cert make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert) openssl_failure("X509_new");
  X509_set_version(cert.get(), 2);
  BIGNUM* serial = BN_new();
  BN_rand(serial, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get()));
  BN_free(serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("flexllm tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  add_ext(cert.get(), &ctx, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE");
  add_ext(cert.get(), &ctx, NID_key_usage,
          spec.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  if (!spec.san.empty()) add_ext(cert.get(), &ctx, NID_subject_alt_name, spec.san);
  if (!spec.extended_usage.empty())
    add_ext(cert.get(), &ctx, NID_ext_key_usage, spec.extended_usage);
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0)
    openssl_failure("cannot sign " + spec.common_name);
  return cert;
}

void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("test PKI: cannot write " + path + ": " + std::strerror(errno));
  const bool ok = cert ? PEM_write_X509(f, cert) == 1
                       : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  if (!ok) openssl_failure("cannot write " + path);
  if (key) ::chmod(path.c_str(), 0600);
}

CertFiles write_pair(const std::string& dir, const std::string& stem, X509* cert, EVP_PKEY* key) {
  CertFiles files{dir + "/" + stem + ".pem", dir + "/" + stem + ".key"};
  write_pem(files.cert, cert, nullptr);
  write_pem(files.key, nullptr, key);
  return files;
}

bool port_accepts(const char* address, int family, uint16_t port) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, address, &a->sin_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, address, &a->sin6_addr);
    len = sizeof *a;
  }
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  ::close(fd);
  return ok;
}

// A port nothing listens on right now (the kernel's pick), on both loopback addresses when
// `both` (so nginx can take it on [::1] too).
uint16_t free_port(bool both) {
  for (int tries = 0; tries < 50; ++tries) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) ::close(fd);
      throw std::runtime_error(std::string("cannot find a free port: ") + std::strerror(errno));
    }
    const uint16_t port = ntohs(addr.sin_port);
    ::close(fd);
    if (!both) return port;
    int fd6 = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 a6{};
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_loopback;
    a6.sin6_port = htons(port);
    const bool free6 = fd6 >= 0 && ::bind(fd6, reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0;
    if (fd6 >= 0) ::close(fd6);
    if (free6) return port;
  }
  throw std::runtime_error("cannot find a port free on both 127.0.0.1 and ::1");
}

}  // namespace

// ---- TempDir --------------------------------------------------------------------------------

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = (fs::temp_directory_path() / (prefix + "_XXXXXX")).string();
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  ::chmod(pattern.c_str(), 0755);  // nginx's worker may run as another user
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

// ---- TestPki --------------------------------------------------------------------------------

TestPki::TestPki(const std::string& dir) {
  // A name of its own: CAs of different tests never pass for one another.
  unsigned char tag[4];
  RAND_bytes(tag, sizeof tag);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", tag[0], tag[1], tag[2], tag[3]);

  Key ca_key = new_key();
  Cert ca_cert = make_cert(
      {.common_name = std::string("flexllm test CA ") + hex, .not_after = 30 * 86400, .ca = true},
      ca_key.get(), nullptr, nullptr);
  ca = write_pair(dir, "ca", ca_cert.get(), ca_key.get());
  ca_pem = ca.cert;

  const std::string local_names = "DNS:localhost,IP:127.0.0.1,IP:::1";
  auto leaf = [&](const std::string& stem, CertSpec spec) {
    Key key = new_key();
    Cert cert = make_cert(spec, key.get(), ca_cert.get(), ca_key.get());
    return write_pair(dir, stem, cert.get(), key.get());
  };
  server = leaf("server",
                {.common_name = "localhost", .san = local_names, .extended_usage = "serverAuth"});
  expired = leaf("expired", {.common_name = "localhost",
                             .not_before = -3 * 86400,
                             .not_after = -86400,
                             .san = local_names,
                             .extended_usage = "serverAuth"});
  wrong_name = leaf("wrong_name", {.common_name = "example.invalid",
                                   .san = "DNS:example.invalid",
                                   .extended_usage = "serverAuth"});
  client = leaf("client", {.common_name = "flexllm test client", .extended_usage = "clientAuth"});
}

bool ipv6_loopback_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0;
  ::close(fd);
  return ok;
}

// ---- NginxTls -------------------------------------------------------------------------------

NginxTls::NginxTls(NginxOptions options) : options_(std::move(options)) {
  if (::access(kBinary, X_OK) != 0)
    throw std::runtime_error(std::string(kBinary) +
                             " is missing: the HTTPS tests run against Debian's nginx "
                             "(scripts/install-deps installs it; CI has it)");
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {  // a port taken meanwhile: another one
    if (start_on(free_port(options_.ipv6_loopback), why)) return;
  }
  throw std::runtime_error("nginx did not start: " + why);
}

NginxTls::~NginxTls() {
  stop();
}

bool NginxTls::start_on(uint16_t port, std::string& why) {
  const std::string listen_flags = options_.http2 ? " ssl http2" : " ssl";
  std::ostringstream conf;
  conf << "# Generated by tests/support/tls_fixture.cpp\n"
       << "daemon off;\n"
       << "master_process on;\n"
       << "worker_processes 1;\n"
       << (::geteuid() == 0 ? "user root root;\n" : "") << "pid nginx.pid;\n"
       << "error_log stderr warn;\n"
       << "events { worker_connections 8192; }\n"
       << "http {\n"
       << "  log_format conn '$connection $connection_requests $ssl_session_reused $status "
          "$request';\n"
       << "  access_log access.log conn;\n"
       << "  client_body_temp_path client_body_temp;\n"
       << "  proxy_temp_path proxy_temp;\n"
       << "  fastcgi_temp_path fastcgi_temp;\n"
       << "  uwsgi_temp_path uwsgi_temp;\n"
       << "  scgi_temp_path scgi_temp;\n"
       << "  client_max_body_size 16m;\n"
       << "  client_body_buffer_size 1m;\n"
       << "  keepalive_timeout 75s;\n"
       << "  keepalive_requests " << options_.keepalive_requests << ";\n"
       << "  http2_max_concurrent_streams " << options_.max_concurrent_streams << ";\n"
       << "  upstream mock {\n"
       << "    server 127.0.0.1:" << options_.upstream_port << ";\n"
       << "    keepalive 128;\n"
       << "  }\n"
       << "  server {\n"
       << "    listen 127.0.0.1:" << port << listen_flags << " backlog=4096;\n";
  if (options_.ipv6_loopback) conf << "    listen [::1]:" << port << listen_flags << ";\n";
  conf << "    ssl_certificate " << options_.cert.cert << ";\n"
       << "    ssl_certificate_key " << options_.cert.key << ";\n"
       << "    ssl_protocols TLSv1.2 TLSv1.3;\n";
  if (!options_.client_ca.empty())
    conf << "    ssl_client_certificate " << options_.client_ca << ";\n"
         << "    ssl_verify_client on;\n";
  conf << "    location / {\n"
       << "      proxy_pass http://mock;\n"
       << "      proxy_http_version 1.1;\n"
       << "      proxy_set_header Connection \"\";\n"
       << "      proxy_buffering off;\n"
       << "      proxy_read_timeout 120s;\n"
       << "    }\n"
       << "  }\n"
       << "}\n";
  const std::string conf_path = dir_.file("nginx.conf");
  std::ofstream(conf_path) << conf.str();
  std::remove(dir_.file("nginx.stderr").c_str());

  std::vector<std::string> args = {kBinary,   "-p", dir_.path() + "/", "-c",
                                   conf_path, "-e", "stderr"};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, dir_.file("nginx.stderr").c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  pid_ = spawn_process(kBinary, std::move(args), std::move(env), "", &fa);
  posix_spawn_file_actions_destroy(&fa);
  const int rc = pid_ < 0 ? errno : 0;
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error(std::string("cannot start ") + kBinary + ": " + std::strerror(rc));
  }
  // Ready once its port accepts (the master binds before the worker starts; connections made
  // meanwhile wait in the backlog). Polled against a deadline; an early exit is a failure.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      why = "nginx exited at start (status " + std::to_string(status) + "): " + errors() +
            "\nconfiguration:\n" + conf.str();
      return false;
    }
    if (port_accepts("127.0.0.1", AF_INET, port) &&
        (!options_.ipv6_loopback || port_accepts("::1", AF_INET6, port))) {
      port_ = port;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling, bounded above
  }
  stop();
  why = "nginx did not accept connections on 127.0.0.1:" + std::to_string(port) +
        " within 15 s: " + errors();
  return false;
}

void NginxTls::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  // nginx's fast shutdown is quick; a hung one is killed rather than waited for forever.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pid_ = -1;
}

std::string NginxTls::base_url(const std::string& host) const {
  return "https://" + host + ":" + std::to_string(port_) + "/v1";
}

std::vector<std::string> NginxTls::access_log() const {
  std::vector<std::string> lines;
  std::ifstream in(dir_.file("access.log"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

size_t NginxTls::connections() const {
  std::set<std::string> ids;
  for (const std::string& line : access_log()) ids.insert(line.substr(0, line.find(' ')));
  return ids.size();
}

bool NginxTls::wait_for_log_lines(size_t lines, std::chrono::milliseconds limit) const {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (access_log().size() >= lines) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling, bounded above
  }
}

std::string NginxTls::errors() const {
  return read_whole_file(dir_.file("nginx.stderr"));
}

}  // namespace flexllm::test
