#include "transport/h2.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace flexllm::detail {
namespace {

// Streams one connection takes at most, whatever the server allows.
constexpr uint32_t kMaxStreams = 1000;
// Receive windows: a long streamed answer never waits for a WINDOW_UPDATE round trip.
constexpr int32_t kStreamWindow = 4 << 20;
constexpr int32_t kConnectionWindow = 64 << 20;
// An idle connection is checked with a PING this often, and dropped when the answer takes
// longer than kPingTimeout, or when it has been idle for kIdleClose.
constexpr auto kIdlePing = std::chrono::seconds(30);
constexpr auto kPingTimeout = std::chrono::seconds(10);
constexpr auto kIdleClose = std::chrono::minutes(5);
// A connection idle this long may have died unnoticed: a request that finds it dead before any
// reply moves once to a fresh connection.
constexpr auto kMaybeStale = std::chrono::seconds(15);
// A server refusing the same request this many times (REFUSED_STREAM, GOAWAY) fails it.
constexpr int kMaxRequeues = 10;

void set_error(Transfer* t, const std::string& why) {
  if (t->error_buffer && !why.empty())
    std::snprintf(t->error_buffer, CURL_ERROR_SIZE, "%s", why.c_str());
}

// Completes a transfer that no connection carries (any more).
void complete_transfer(Transfer* t, CURLcode code, const std::string& why) {
  t->h2 = nullptr;
  t->h2_connection = nullptr;
  t->running = false;
  set_error(t, why);
  t->on_complete(code);
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::optional<H2Target> resolve_h2_target(std::string_view url, std::shared_ptr<TlsContext> tls) {
  auto resolved = resolve_url_host(url, "https://", "443");
  if (!resolved) return std::nullopt;
  H2Target t;
  t.addr = resolved->addr;
  t.addr_len = resolved->addr_len;
  t.host = resolved->host;
  t.authority = resolved->authority;
  t.key = fmt::format("{}:{}#{}", resolved->host, resolved->port, tls->id());
  t.tls = std::move(tls);
  return t;
}

// ---- H2Pool -------------------------------------------------------------------------------------

H2Pool::~H2Pool() = default;

void H2Pool::start(Transfer* t, const H2Request& request) {
  t->running = true;
  t->h2 = this;
  t->h2_connection = nullptr;
  if (http1_) {
    t->use_curl = true;
    return complete_transfer(t, CURLE_UNSUPPORTED_PROTOCOL, "the server speaks HTTP/1.1 only");
  }
  queue_.push_back({t, request});
  schedule();
}

void H2Pool::schedule() {
  if (scheduled_) return;
  scheduled_ = true;
  loop_.defer([this] {
    scheduled_ = false;
    dispatch();
  });
}

void H2Pool::requeue(Transfer* t, const H2Request& request) {
  t->h2_connection = nullptr;
  H2Request again = request;
  if (++again.requeues > kMaxRequeues)
    return complete_transfer(
        t, CURLE_HTTP2_STREAM,
        fmt::format("{} refused the request {} times (REFUSED_STREAM or GOAWAY)", target_.authority,
                    kMaxRequeues));
  queue_.push_front({t, again});
}

void H2Pool::dispatch() {
  std::vector<H2Connection*> touched;
  dispatch_into(touched);
  for (H2Connection* c : touched) c->flush();
}

void H2Pool::dispatch_into(std::vector<H2Connection*>& touched) {
  while (!queue_.empty()) {
    H2Connection* take = nullptr;
    bool warming = false;
    for (H2Connection* c : connections_) {
      if (c->can_take()) {
        take = c;
        break;
      }
      warming = warming || c->warming();
    }
    if (take) {
      Queued q = queue_.front();
      queue_.pop_front();
      take->submit(q.t, q.request);
      if (std::find(touched.begin(), touched.end(), take) == touched.end()) touched.push_back(take);
      continue;
    }
    if (warming) return;  // it takes them once it is up
    // Every connection is full (or there is none): one more.
    auto owned = std::make_unique<H2Connection>(*this, queue_.front().request.connect_timeout);
    std::string error;
    if (!owned->open(error)) {
      std::deque<Queued> failed;
      failed.swap(queue_);
      for (Queued& q : failed) complete_transfer(q.t, CURLE_COULDNT_CONNECT, error);
      return;
    }
    connections_.push_back(owned.get());
    loop_.adopt(std::move(owned));
    return;
  }
}

void H2Pool::abort(Transfer* t, CURLcode code) {
  if (t->h2_connection) return t->h2_connection->cancel(t, code);
  auto it = std::find_if(queue_.begin(), queue_.end(), [t](const Queued& q) { return q.t == t; });
  if (it != queue_.end()) queue_.erase(it);
  complete_transfer(t, code, {});
}

void H2Pool::connection_failed(H2Connection* c, CURLcode code, const std::string& why) {
  // With no other connection up or coming, what waits would wait for nothing: it fails with the
  // reason (each request then follows its retry policy).
  for (H2Connection* other : connections_)
    if (other != c && (other->can_take() || other->warming() || other->streams() > 0)) return;
  std::deque<Queued> failed;
  failed.swap(queue_);
  for (Queued& q : failed) complete_transfer(q.t, code, why);
}

void H2Pool::closed(H2Connection* c) {
  connections_.erase(std::remove(connections_.begin(), connections_.end(), c), connections_.end());
  if (!queue_.empty()) schedule();
}

void H2Pool::speaks_http1(H2Connection*) {
  http1_ = true;
  std::deque<Queued> moved;
  moved.swap(queue_);
  for (Queued& q : moved) {
    q.t->use_curl = true;
    complete_transfer(q.t, CURLE_UNSUPPORTED_PROTOCOL, "the server speaks HTTP/1.1 only");
  }
}

// ---- H2Connection ------------------------------------------------------------------------------

H2Connection::H2Connection(H2Pool& pool, std::chrono::milliseconds connect_timeout)
    : pool_(pool), loop_(pool.loop()), connect_timeout_(connect_timeout) {
  const std::string& key = pool.target().key;
  session_key_ = key.substr(0, key.find('#'));
}

H2Connection::~H2Connection() {
  if (session_) nghttp2_session_del(session_);
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

bool H2Connection::open(std::string& error) {
  const H2Target& target = pool_.target();
  fd_ = ::socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error = std::string("cannot create a socket: ") + std::strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&target.addr), target.addr_len) != 0 &&
      errno != EINPROGRESS) {
    error = fmt::format("Failed to connect to {}: {}", target.authority, std::strerror(errno));
    return false;
  }
  state_ = State::connecting;
  watch(EPOLLOUT);
  // Connecting, the TLS handshake and the server's first SETTINGS, together.
  connect_timer_ = loop_.add_timer(Clock::now() + connect_timeout_, [this] {
    connect_timer_ = 0;
    fail(CURLE_OPERATION_TIMEDOUT,
         fmt::format("Connection to {} timed out after {} ms ({})", pool_.target().authority,
                     connect_timeout_.count(),
                     state_ == State::connecting    ? "connecting"
                     : state_ == State::handshaking ? "TLS handshake"
                                                    : "waiting for the server's HTTP/2 settings"));
  });
  return true;
}

void H2Connection::watch(uint32_t events) {
  if (events == watched_ || fd_ < 0) return;
  loop_.watch(fd_, this, events, watched_ != 0);
  watched_ = events;
}

int H2Connection::stream_capacity() const {
  if (!settings_received_) return 0;
  uint32_t limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return static_cast<int>(std::min(limit, kMaxStreams));
}

bool H2Connection::can_take() const {
  return state_ == State::ready && static_cast<int>(streams_.size()) < stream_capacity() &&
         nghttp2_session_check_request_allowed(session_) != 0;
}

void H2Connection::on_io(uint32_t events) {
  if (state_ == State::closed) return;
  if (state_ == State::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      if (err == 0) err = ECONNREFUSED;
      return fail(CURLE_COULDNT_CONNECT, fmt::format("Failed to connect to {}: {}",
                                                     pool_.target().authority, std::strerror(err)));
    }
    ssl_ = pool_.target().tls->new_ssl(pool_.target().host, session_key_);
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1)
      return fail(CURLE_SSL_CONNECT_ERROR, "cannot set up TLS");
    state_ = State::handshaking;
    return handshake();
  }
  if (state_ == State::handshaking) return handshake();
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) read_some();
  if (state_ != State::closed) flush();
  finish_done();
}

void H2Connection::handshake() {
  ERR_clear_error();
  const int rc = SSL_connect(ssl_);
  if (rc != 1) {
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ) return watch(EPOLLIN);
    if (e == SSL_ERROR_WANT_WRITE) return watch(EPOLLIN | EPOLLOUT);
    const bool untrusted = SSL_get_verify_result(ssl_) != X509_V_OK;
    return fail(untrusted ? CURLE_PEER_FAILED_VERIFICATION : CURLE_SSL_CONNECT_ERROR,
                fmt::format("TLS handshake with {} failed: {}", pool_.target().authority,
                            TlsContext::handshake_error(ssl_, e)));
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0) {
    pool_.speaks_http1(this);
    return close();
  }
  session_start();
}

void H2Connection::session_start() {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, &H2Connection::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2Connection::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2Connection::on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2Connection::on_stream_close);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Stream ids and the server's limit are ours to respect: no queue inside nghttp2.
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  const int rc = nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rc != 0) return fail(CURLE_HTTP2, "cannot start an HTTP/2 session");
  // The header list bound is advertised too (in HTTP/2's own measure: 32 bytes more per field);
  // on_header enforces it whatever the server does.
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderBytes}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 3);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  state_ = State::ready;  // takes streams once the server's SETTINGS are in (stream_capacity)
  watch(EPOLLIN);
  read_some();  // the server's preface may have come with the end of the handshake
  if (state_ != State::closed) flush();
  finish_done();
}

void H2Connection::submit(Transfer* t, const H2Request& request) {
  if (idle_timer_) {
    loop_.cancel_timer(idle_timer_);
    idle_timer_ = 0;
  }
  if (streams_.empty() && idle_since_ != Clock::time_point{} &&
      Clock::now() - idle_since_ > kMaybeStale)
    reused_after_idle_ = true;
  const H2Target& target = pool_.target();
  std::vector<nghttp2_nv> nva;
  nva.reserve(6 + (request.headers ? request.headers->size() : 0));
  nva.push_back(header(":method", request.method));
  nva.push_back(header(":scheme", "https"));
  nva.push_back(header(":authority", target.authority));
  nva.push_back(header(":path", request.path));
  if (request.headers)
    for (const H2Header& h : *request.headers) nva.push_back(header(h.name, h.value));
  char length[24];
  if (request.has_body) {
    int n = std::snprintf(length, sizeof length, "%zu", request.body.size());
    nva.push_back(header("content-length", std::string_view(length, static_cast<size_t>(n))));
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Connection::read_body;
  in_session_ = true;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            request.has_body ? &provider : nullptr, nullptr);
  in_session_ = false;
  if (id < 0) {  // no stream id left, or the session is going away: elsewhere
    state_ = State::draining;
    pool_.requeue(t, request);
    pool_.schedule();
    if (streams_.empty()) close_when_idle();
    return;
  }
  Stream& s = streams_[id];
  s.t = t;
  s.request = request;
  t->h2_connection = this;  // written out by the pool's dispatch (one write for all it submits)
}

void H2Connection::cancel(Transfer* t, CURLcode code) {
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->second.t != t) continue;
    const int32_t id = it->first;
    streams_.erase(it);
    if (session_) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    complete_transfer(t, code, {});
    flush();
    if (streams_.empty()) close_when_idle();
    pool_.schedule();
    return;
  }
}

void H2Connection::read_some() {
  std::string& buffer = loop_.read_buffer();
  if (buffer.size() < 64 * 1024) buffer.resize(64 * 1024);
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buffer.data(), static_cast<int>(buffer.size()));
    if (n <= 0) {
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      const std::string why = e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)
                                  ? "closed by the server"
                                  : TlsContext::handshake_error(ssl_, e);
      return fail(CURLE_RECV_ERROR,
                  fmt::format("connection to {} failed: {}", pool_.target().authority, why));
    }
    in_session_ = true;
    const ssize_t rv = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(buffer.data()), static_cast<size_t>(n));
    in_session_ = false;
    if (rv < 0)
      return fail(CURLE_HTTP2, fmt::format("HTTP/2 error from {}: {}", pool_.target().authority,
                                           nghttp2_strerror(static_cast<int>(rv))));
  }
}

bool H2Connection::flush() {
  if (state_ == State::closed || !session_) return false;
  for (;;) {
    if (out_pos_ < out_.size()) {
      ERR_clear_error();
      const int n =
          SSL_write(ssl_, out_.data() + out_pos_, static_cast<int>(out_.size() - out_pos_));
      if (n <= 0) {
        const int e = SSL_get_error(ssl_, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
          watch(EPOLLIN | EPOLLOUT);
          return true;
        }
        fail(CURLE_SEND_ERROR, fmt::format("connection to {} failed: {}", pool_.target().authority,
                                           TlsContext::handshake_error(ssl_, e)));
        return false;
      }
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    out_.clear();
    out_pos_ = 0;
    // Everything nghttp2 has to send, in one TLS write when it fits.
    in_session_ = true;
    while (out_.size() < (64 << 10)) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        in_session_ = false;
        fail(CURLE_HTTP2, nghttp2_strerror(static_cast<int>(n)));
        return false;
      }
      if (n == 0) break;
      out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    in_session_ = false;
    if (out_.empty()) break;
  }
  watch(EPOLLIN);
  if (streams_.empty()) close_when_idle();
  return true;
}

// A connection that fails takes its streams with it: those the server cannot have seen go back to
// the queue (requests on a connection that sat idle and turned out dead, once); the others fail
// with the reason, to be retried by their policy.
void H2Connection::fail(CURLcode code, const std::string& why) {
  if (state_ == State::closed) return;
  const bool warming = this->warming();
  state_ = State::closed;
  for (auto& [id, s] : streams_) {
    const bool unseen = !s.response_started && reused_after_idle_ && !s.request.moved;
    if (unseen) s.request.moved = true;
    done_.push_back({s.t, s.request, code, why, unseen});
  }
  streams_.clear();
  if (warming) pool_.connection_failed(this, code, why);
  close();
  finish_done();
}

// What nghttp2 ended is handed over once it has returned; then the pool fills what freed up (and
// a connection whose SETTINGS just came takes its first streams).
void H2Connection::finish_done() {
  if (in_session_) return;
  if (!done_.empty()) {
    std::vector<Done> done;
    done.swap(done_);
    for (Done& d : done) {
      if (d.requeue) {
        pool_.requeue(d.t, d.request);
      } else {
        complete_transfer(d.t, d.code, d.why);  // may start the next request at once
      }
    }
    if (streams_.empty() && state_ == State::ready) {
      idle_since_ = Clock::now();
      arm_idle_check();
    }
  }
  pool_.schedule();
}

void H2Connection::arm_idle_check() {
  if (idle_timer_ || state_ != State::ready) return;
  idle_timer_ = loop_.add_timer(Clock::now() + kIdlePing, [this] {
    idle_timer_ = 0;
    if (!streams_.empty() || state_ != State::ready) return;
    if (Clock::now() - idle_since_ >= kIdleClose) {
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      flush();
      return close();
    }
    if (ping_outstanding_) return close();  // the last PING was never answered: gone
    ping_outstanding_ = true;
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    flush();
    idle_timer_ = loop_.add_timer(Clock::now() + kPingTimeout, [this] {
      idle_timer_ = 0;
      if (ping_outstanding_ && streams_.empty()) return close();
      arm_idle_check();
    });
  });
}

void H2Connection::close_when_idle() {
  if (state_ == State::draining && streams_.empty() && out_pos_ >= out_.size()) close();
}

void H2Connection::close() {
  if (connect_timer_) {
    loop_.cancel_timer(connect_timer_);
    connect_timer_ = 0;
  }
  if (idle_timer_) {
    loop_.cancel_timer(idle_timer_);
    idle_timer_ = 0;
  }
  if (state_ != State::closed) {
    state_ = State::closed;
    for (auto& [id, s] : streams_) {
      const bool unseen = !s.response_started;
      done_.push_back({s.t, s.request, CURLE_RECV_ERROR,
                       fmt::format("connection to {} closed", pool_.target().authority), unseen});
    }
    streams_.clear();
  }
  if (fd_ >= 0 && watched_) loop_.unwatch(fd_);
  watched_ = 0;
  pool_.closed(this);
  loop_.release(this);  // destroyed after this epoll batch; the descriptor closes then
}

// ---- nghttp2 callbacks (inside mem_recv / mem_send)
// ----------------------------------------------

ssize_t H2Connection::read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  Stream& s = it->second;
  const size_t n = std::min(length, s.request.body.size() - s.body_sent);
  std::memcpy(buf, s.request.body.data() + s.body_sent, n);
  s.body_sent += n;
  if (s.body_sent == s.request.body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                            size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                            void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(frame->hd.stream_id);
  if (it == self->streams_.end()) return 0;
  Stream& s = it->second;
  s.response_started = true;
  if (s.consumer_stopped || !s.failure.empty()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  // HPACK lets a few bytes on the wire stand for a long header list: bounded as over HTTP/1.1.
  s.head_bytes += namelen + valuelen + 4;
  if (++s.head_fields > kMaxHeaderFields) {
    s.failure = fmt::format("more than {} header fields", kMaxHeaderFields);
  } else if (s.head_bytes > kMaxHeaderBytes) {
    s.failure = fmt::format("reply head larger than {} KiB", kMaxHeaderBytes / 1024);
  }
  if (!s.failure.empty()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  bool go;
  if (n == ":status") {
    int status = 0;
    for (char c : v) status = status * 10 + (c - '0');
    if (status >= 200) s.t->status = status;
    go = s.t->on_header(fmt::format("HTTP/2 {}", v));  // a new response: the hints start over
  } else {
    std::string line;
    line.reserve(namelen + 2 + valuelen);
    line.append(n).append(": ").append(v);
    go = s.t->on_header(line);
  }
  if (go) return 0;
  s.consumer_stopped = true;
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int H2Connection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  Stream& s = it->second;
  s.response_started = true;
  if (s.consumer_stopped) return 0;
  if (!s.t->on_data(std::string_view(reinterpret_cast<const char*>(data), len))) {
    s.consumer_stopped = true;
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  }
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  self->reused_after_idle_ = false;  // it answers: alive
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !self->settings_received_) {
        self->settings_received_ = true;
        if (self->connect_timer_) {
          self->loop_.cancel_timer(self->connect_timer_);
          self->connect_timer_ = 0;
        }
        self->idle_since_ = Clock::now();
      }
      break;
    case NGHTTP2_GOAWAY:
      // No new streams here; those past its last stream id close as refused (requeued).
      if (self->state_ == State::ready) self->state_ = State::draining;
      break;
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) self->ping_outstanding_ = false;
      break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        auto it = self->streams_.find(frame->hd.stream_id);
        if (it != self->streams_.end()) it->second.ended = true;
      }
      break;
    default: break;
  }
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                  void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  Stream s = std::move(it->second);
  self->streams_.erase(it);
  const std::string& who = self->pool_.target().authority;
  if (!s.failure.empty()) {
    self->done_.push_back({s.t, s.request, CURLE_WEIRD_SERVER_REPLY,
                           fmt::format("bad HTTP/2 reply from {}: {}", who, s.failure), false});
  } else if (s.consumer_stopped) {
    self->done_.push_back(
        {s.t, s.request, CURLE_WRITE_ERROR, "the reply's consumer stopped it", false});
  } else if (error_code == NGHTTP2_NO_ERROR && s.ended) {
    self->done_.push_back({s.t, s.request, CURLE_OK, {}, false});
  } else if (error_code == NGHTTP2_REFUSED_STREAM) {
    // Not processed by the server (refused, or past a GOAWAY): again, and not an attempt.
    self->done_.push_back({s.t, s.request, CURLE_OK, {}, true});
  } else {
    self->done_.push_back(
        {s.t, s.request, s.response_started ? CURLE_PARTIAL_FILE : CURLE_HTTP2_STREAM,
         fmt::format("{} reset the stream{} ({})", who,
                     s.response_started ? " in the middle of the reply" : " before any reply",
                     nghttp2_http2_strerror(error_code)),
         false});
  }
  return 0;
}

}  // namespace flexllm::detail
