#include "h2_test_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace flexllm::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kCompletion =
    R"({"id":"chatcmpl-h2test","object":"chat.completion","created":1764700000,)"
    R"("model":"mock-model","choices":[{"index":0,"message":{"role":"assistant",)"
    R"("content":"ok"},"finish_reason":"stop"}],)"
    R"("usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})";

constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};

nghttp2_nv header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned int inlen, void*) {
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, kAlpnH2, sizeof kAlpnH2, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // h2 only
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

struct H2TestConnection;

struct H2TestServer::Impl {
  H2TestServerOptions options;
  SSL_CTX* ctx = nullptr;
  int listen_fd = -1;
  int wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> streams{0}, answered{0}, refused{0}, reset{0}, connections{0};
  std::vector<std::unique_ptr<H2TestConnection>> open;
  std::unordered_set<std::string> faulted;  // bodies of requests refused or reset once

  // Whether the request with `body` meets the fault that its ordinal draws.
  bool fault(const std::string& body) {
    if (options.repeat_faults) return true;
    return faulted.insert(body).second;
  }

  ~Impl();
  void run();
  void accept_all();
};

namespace {

struct StreamState {
  uint64_t ordinal = 0;  // over all connections, 1-based
  std::string request_body;
  bool reset = false;  // INTERNAL_ERROR once its HEADERS are out
  size_t body_sent = 0;
};

}  // namespace

// One client connection: TLS handshake, then an HTTP/2 session; at the end a graceful close
// (close_notify, FIN, then what the client still sends is read and dropped until it closes).
struct H2TestConnection {
  enum class State { handshaking, open, lingering, closed };

  H2TestServer::Impl* server;
  int fd;
  SSL* ssl = nullptr;
  nghttp2_session* session = nullptr;
  State state = State::handshaking;
  bool want_write = false;
  std::string out;
  size_t out_pos = 0;
  int streams_seen = 0;     // on this connection
  int32_t goaway_last = 0;  // 0: no GOAWAY sent
  std::unordered_map<int32_t, StreamState> streams;
  Clock::time_point linger_until{};

  H2TestConnection(H2TestServer::Impl* s, int f) : server(s), fd(f) {
    ssl = SSL_new(server->ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl);
  }
  ~H2TestConnection() {
    if (session) nghttp2_session_del(session);
    if (ssl) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }

  void close_now() { state = State::closed; }

  void step() {
    if (state == State::handshaking) {
      ERR_clear_error();
      const int rc = SSL_do_handshake(ssl);
      if (rc != 1) {
        const int e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ) {
          want_write = false;
          return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
          want_write = true;
          return;
        }
        return close_now();  // e.g. the client did not trust us: its alert ends it
      }
      const unsigned char* alpn = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
      if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0) return close_now();
      if (!start_session()) return close_now();
      state = State::open;
    }
    read_some();
    if (state == State::open) {
      flush();
      if (state == State::open && !nghttp2_session_want_read(session) &&
          !nghttp2_session_want_write(session) && out_pos >= out.size())
        linger();
    }
  }

  bool start_session() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2TestConnection::on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, &H2TestConnection::on_frame_send);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2TestConnection::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2TestConnection::on_stream_close);
    // Header blocks as large as a test asks for (the client is what is under test).
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_max_send_header_block_length(opt, 1u << 20);
    const int rc = nghttp2_session_server_new2(&session, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) return false;
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server->options.max_concurrent_streams}};
    return nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, 1) == 0;
  }

  void read_some() {
    uint8_t buf[16384];
    for (;;) {
      ERR_clear_error();
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) {
        const int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_WANT_WRITE) {
          want_write = true;
          return;
        }
        return close_now();  // closed by the client (or broken)
      }
      if (state != State::open) continue;  // lingering: dropped
      const ssize_t rv = nghttp2_session_mem_recv(session, buf, static_cast<size_t>(n));
      if (rv < 0) return close_now();
    }
  }

  void flush() {
    for (;;) {
      while (out_pos < out.size()) {
        ERR_clear_error();
        const int n = SSL_write(ssl, out.data() + out_pos, static_cast<int>(out.size() - out_pos));
        if (n <= 0) {
          const int e = SSL_get_error(ssl, n);
          if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            want_write = true;
            return;
          }
          return close_now();
        }
        out_pos += static_cast<size_t>(n);
      }
      out.clear();
      out_pos = 0;
      while (out.size() < (64 << 10)) {
        const uint8_t* data = nullptr;
        const ssize_t n = nghttp2_session_mem_send(session, &data);
        if (n < 0) return close_now();
        if (n == 0) break;
        out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      }
      if (out.empty()) break;
    }
    want_write = false;
  }

  // Everything answered after a GOAWAY: close_notify and FIN, then wait (bounded) for the
  // client's close, reading what it still sends, so the close never turns into a reset that
  // could destroy replies the client has not read yet.
  void linger() {
    ERR_clear_error();
    SSL_shutdown(ssl);
    ::shutdown(fd, SHUT_WR);
    state = State::lingering;
    want_write = false;
    linger_until = Clock::now() + std::chrono::seconds(2);
  }

  // ---- the streams ----

  void on_request_headers(int32_t id) {
    if (goaway_last != 0 && id > goaway_last) return;  // past the GOAWAY: not processed
    ++streams_seen;
    streams[id].ordinal = ++server->streams;
    const H2TestServerOptions& o = server->options;
    if (o.goaway_after > 0 && streams_seen == o.goaway_after) {
      goaway_last = id;
      nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, nullptr, 0);
    }
  }

  // The whole request is in (its body tells a resent request apart): refused, answered, or
  // answered with headers and then reset.
  void on_request_end(int32_t id) {
    auto it = streams.find(id);
    if (it == streams.end()) return;  // past the GOAWAY
    const H2TestServerOptions& o = server->options;
    const uint64_t n = it->second.ordinal;
    if (o.refuse_every > 0 && n % static_cast<uint64_t>(o.refuse_every) == 0 &&
        server->fault(it->second.request_body)) {
      ++server->refused;
      streams.erase(it);
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
      return;
    }
    it->second.reset = o.reset_every > 0 && n % static_cast<uint64_t>(o.reset_every) == 0 &&
                       server->fault(it->second.request_body);
    if (it->second.reset) {
      // HEADERS without END_STREAM; the reset follows once they are out (on_frame_send).
      const nghttp2_nv nva[] = {header(":status", "200"),
                                header("content-type", "application/json")};
      nghttp2_submit_headers(session, NGHTTP2_FLAG_NONE, id, nullptr, nva, 2, nullptr);
      return;
    }
    static const std::string length = std::to_string(kCompletion.size());
    std::vector<nghttp2_nv> nva = {header(":status", "200"),
                                   header("content-type", "application/json"),
                                   header("content-length", length)};
    for (const auto& [name, value] : o.extra_headers) nva.push_back(header(name, value));
    nghttp2_data_provider provider{};
    provider.read_callback = &H2TestConnection::read_body;
    nghttp2_submit_response(session, id, nva.data(), nva.size(), &provider);
    ++server->answered;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<H2TestConnection*>(user);
    const int32_t id = frame->hd.stream_id;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) self->on_request_headers(id);
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) self->on_request_end(id);
        break;
      case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) self->on_request_end(id);
        break;
      default: break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* user) {
    auto* self = static_cast<H2TestConnection*>(user);
    auto it = self->streams.find(id);
    if (it != self->streams.end())
      it->second.request_body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<H2TestConnection*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto it = self->streams.find(frame->hd.stream_id);
    if (it == self->streams.end() || !it->second.reset) return 0;
    it->second.reset = false;
    ++self->server->reset;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_INTERNAL_ERROR);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t, void* user) {
    static_cast<H2TestConnection*>(user)->streams.erase(id);
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* user) {
    auto* self = static_cast<H2TestConnection*>(user);
    auto it = self->streams.find(id);
    if (it == self->streams.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t& sent = it->second.body_sent;
    const size_t n = std::min(length, kCompletion.size() - sent);
    std::memcpy(buf, kCompletion.data() + sent, n);
    sent += n;
    if (sent == kCompletion.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

// ---- the server ---------------------------------------------------------------------------

H2TestServer::Impl::~Impl() {
  open.clear();
  if (listen_fd >= 0) ::close(listen_fd);
  if (wake_fd >= 0) ::close(wake_fd);
  if (ctx) SSL_CTX_free(ctx);
}

void H2TestServer::Impl::accept_all() {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: all taken
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++connections;
    open.push_back(std::make_unique<H2TestConnection>(this, fd));
    open.back()->step();
  }
}

void H2TestServer::Impl::run() {
  std::vector<pollfd> fds;
  while (!stopping.load()) {
    fds.clear();
    fds.push_back({wake_fd, POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    for (const auto& c : open)
      fds.push_back({c->fd, static_cast<short>(POLLIN | (c->want_write ? POLLOUT : 0)), 0});
    // The timeout only bounds how late a lingering connection is given up.
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) accept_all();
    const size_t polled = fds.size() - 2;  // connections accepted just now were stepped already
    for (size_t i = 0; i < polled && i < open.size(); ++i)
      if (fds[i + 2].revents) open[i]->step();
    const auto now = Clock::now();
    for (auto& c : open)
      if (c->state == H2TestConnection::State::lingering && now > c->linger_until) c->close_now();
    open.erase(std::remove_if(open.begin(), open.end(),
                              [](const std::unique_ptr<H2TestConnection>& c) {
                                return c->state == H2TestConnection::State::closed;
                              }),
               open.end());
  }
}

H2TestServer::H2TestServer(H2TestServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  impl_->ctx = ctx;
  if (!ctx) throw std::runtime_error("H2TestServer: SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, impl_->options.cert.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, impl_->options.cert.key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw std::runtime_error("H2TestServer: cannot load " + impl_->options.cert.cert + " / " +
                             impl_->options.cert.key);
  SSL_CTX_set_alpn_select_cb(ctx, &select_h2, nullptr);

  impl_->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (impl_->listen_fd < 0 ||
      ::bind(impl_->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(impl_->listen_fd, 1024) != 0 ||
      ::getsockname(impl_->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error(std::string("H2TestServer: cannot listen: ") + std::strerror(errno));
  port_ = ntohs(addr.sin_port);
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->wake_fd < 0)
    throw std::runtime_error(std::string("H2TestServer: eventfd: ") + std::strerror(errno));
  thread_ = std::thread([impl = impl_.get()] { impl->run(); });
}

H2TestServer::~H2TestServer() {
  impl_->stopping = true;
  const uint64_t one = 1;
  if (::write(impl_->wake_fd, &one, sizeof one) < 0) {
    // The flag is set: the loop sees it within its poll timeout anyway.
  }
  if (thread_.joinable()) thread_.join();
}

std::string H2TestServer::base_url() const {
  return "https://127.0.0.1:" + std::to_string(port_) + "/v1";
}

H2TestServerCounters H2TestServer::counters() const {
  return {impl_->streams.load(), impl_->answered.load(), impl_->refused.load(), impl_->reset.load(),
          impl_->connections.load()};
}

}  // namespace flexllm::test
