// The native HTTPS transport: TLS (OpenSSL, non-blocking) and HTTP/2 (libnghttp2) on the loop's
// epoll set, for https:// endpoints reached without a proxy. Why not libcurl (bench/RESULTS.md,
// issue 13): with more requests in flight than a connection has streams, libcurl 7.88 opened a
// connection per waiting request (101 for 200 in flight; handshakes timing out at 1 000), and spent
// ~100 µs of CPU per request where this path spends a fraction of it.
//
// Per target (host, port, TLS settings) an H2Pool keeps the connections and a queue of requests
// waiting for a stream. A connection takes as many streams as the server's
// SETTINGS_MAX_CONCURRENT_STREAMS allows; a new connection is opened only when every one is full
// and none is still being set up (so ⌈in flight ÷ streams⌉ connections, plus one warming up).
// Streams the server did not process — refused (REFUSED_STREAM) or beyond a GOAWAY's last stream —
// go back to the front of the queue at once: they are not attempts. A server that answers ALPN
// with http/1.1 is handed back to libcurl (Transfer::use_curl).
#pragma once

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "transport/loop.hpp"
#include "transport/tls.hpp"

namespace flexllm::detail {

// Where HTTPS requests go: resolved when the client is made (never on the I/O thread).
struct H2Target {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host;       // SNI and the name the certificate must carry
  std::string authority;  // :authority ("host" or "host:port")
  std::string key;        // pool key: host:port and the TLS context
  std::shared_ptr<TlsContext> tls;
};

// Resolves an https:// URL's host; nullopt when it is not one or does not resolve.
std::optional<H2Target> resolve_h2_target(std::string_view url, std::shared_ptr<TlsContext> tls);

struct H2Header {
  std::string name;  // lowercase
  std::string value;
};

// What an HTTPS transfer sends. The views and `headers` must stay valid until it completes.
struct H2Request {
  const H2Target* target = nullptr;
  std::string_view method = "POST";
  std::string_view path;
  const std::vector<H2Header>* headers = nullptr;  // besides the pseudo-headers
  std::string_view body;
  bool has_body = true;
  std::chrono::milliseconds connect_timeout{10000};
  // Bookkeeping of the transport: times the server turned it away unprocessed, and whether it
  // already moved off a connection that died while idle.
  int requeues = 0;
  bool moved = false;
};

class H2Connection;

// The requests and connections of one target. Owned by the Loop; loop thread only.
class H2Pool {
 public:
  H2Pool(Loop& loop, const H2Target& target) : loop_(loop), target_(target) {}
  ~H2Pool();

  void start(Transfer* t, const H2Request& request);
  void abort(Transfer* t, CURLcode code);  // queued or on a connection

  // ---- from the connections ----
  void requeue(Transfer* t, const H2Request& request);  // not processed: again, first
  // Fills free streams (opening a connection when all are full), soon: once per loop turn, so
  // the requests started in one turn go out together, one TLS write per connection.
  void schedule();
  void dispatch();
  void connection_failed(H2Connection* c, CURLcode code, const std::string& why);
  void closed(H2Connection* c);        // it is gone (retired by the loop)
  void speaks_http1(H2Connection* c);  // ALPN chose http/1.1: the target goes to libcurl
  const H2Target& target() const { return target_; }
  Loop& loop() { return loop_; }

 private:
  struct Queued {
    Transfer* t;
    H2Request request;
  };
  void dispatch_into(std::vector<H2Connection*>& touched);

  Loop& loop_;
  H2Target target_;  // a copy: connections outlive the clients that opened them
  std::deque<Queued> queue_;
  std::vector<H2Connection*> connections_;
  bool http1_ = false;
  bool scheduled_ = false;
};

class H2Connection final : public IoHandler {
 public:
  H2Connection(H2Pool& pool, std::chrono::milliseconds connect_timeout);
  ~H2Connection() override;

  bool open(std::string& error);
  // Ready, not draining, and a stream free.
  bool can_take() const;
  // Being set up: connecting, in the TLS handshake, or waiting for the server's SETTINGS.
  bool warming() const {
    return state_ == State::connecting || state_ == State::handshaking ||
           (state_ == State::ready && !settings_received_);
  }
  void submit(Transfer* t, const H2Request& request);
  // Ends that transfer's stream (RST_STREAM CANCEL) and completes it with `code`.
  void cancel(Transfer* t, CURLcode code);
  void on_io(uint32_t events) override;
  size_t streams() const { return streams_.size(); }
  // Writes what nghttp2 has queued (requests submitted, WINDOW_UPDATEs, …); false when the
  // connection failed (or is closed).
  bool flush();

 private:
  enum class State { connecting, handshaking, ready, draining, closed };
  struct Stream {
    Transfer* t = nullptr;
    H2Request request;
    size_t body_sent = 0;
    bool response_started = false;  // any frame of the reply came
    bool ended = false;             // the reply's END_STREAM came
    bool consumer_stopped = false;  // on_data or on_header returned false
    size_t head_fields = 0;         // header fields received (kMaxHeaderFields)
    size_t head_bytes = 0;          // and their bytes, as HTTP/1.1 lines (kMaxHeaderBytes)
    std::string failure;            // why the stream was reset on our side (a bound was exceeded)
  };
  // A stream that is over, its transfer completed after nghttp2 returns (never from inside it).
  struct Done {
    Transfer* t;
    H2Request request;
    CURLcode code;
    std::string why;
    bool requeue;
  };

  void handshake();
  void session_start();
  void read_some();
  void fail(CURLcode code, const std::string& why);
  void finish_done();
  void close_when_idle();
  void close();
  void watch(uint32_t events);
  void arm_idle_check();
  int stream_capacity() const;

  static ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);

  H2Pool& pool_;
  Loop& loop_;
  std::chrono::milliseconds connect_timeout_;
  std::string session_key_;  // host:port for TLS session resumption
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  nghttp2_session* session_ = nullptr;
  State state_ = State::closed;
  bool settings_received_ = false;  // the server's first SETTINGS: its stream limit is known
  uint32_t watched_ = 0;
  std::string out_;  // bytes nghttp2 produced that TLS has not taken yet
  size_t out_pos_ = 0;
  std::unordered_map<int32_t, Stream> streams_;
  std::vector<Done> done_;
  bool in_session_ = false;  // inside nghttp2 (callbacks may run)
  Loop::TimerId connect_timer_ = 0;
  Loop::TimerId idle_timer_ = 0;
  Clock::time_point idle_since_{};
  bool ping_outstanding_ = false;
  bool reused_after_idle_ = false;  // taken up again after sitting idle: may have died meanwhile
};

}  // namespace flexllm::detail
