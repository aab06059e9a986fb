// The event loop behind flexllm::Runtime: one thread and one epoll set driving two transports —
// libcurl's multi interface (through curl_multi_socket_action) and the native HTTP/1.1 transport
// for cleartext endpoints (transport/http1.hpp) — so thousands of transfers cost nothing while
// idle. Other threads hand work over with post(); everything else runs on the loop thread only.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "transport/http1.hpp"

namespace flexllm::detail {

// Initialises libcurl once per process. Called from the thread creating a client that will use
// libcurl, never first from the I/O thread: the TLS library keeps per-thread state for the thread
// that initialises it, which would outlive nothing and be reported as leaked.
void curl_setup();

using Clock = std::chrono::steady_clock;

// Something with a descriptor in the loop's epoll set. Handlers are destroyed only between two
// epoll batches (Loop::retire), so an event already read for a closed one is simply dropped.
class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void on_io(uint32_t events) = 0;
  bool dead = false;
};

class Http1Connection;
class H2Pool;
class H2Connection;
struct H2Target;
struct H2Request;

// What a native transfer sends: the request line and headers (CRLF-terminated, without
// Content-Length and the blank line, which the transport adds) and the body.
struct NativeRequest {
  const Http1Target* target = nullptr;
  std::string_view head;
  std::string_view body;
  bool has_body = true;
  std::chrono::milliseconds connect_timeout{10000};
};

// One HTTP transfer on the loop, over libcurl (`easy` set up by the owner with its options) or
// the native transport (Loop::start_native). Either way the loop calls on_data/on_header as the
// reply arrives and on_complete once the transfer is over (or aborted).
class Transfer {
 public:
  virtual ~Transfer() = default;
  // Body bytes. Return false to abort the transfer (it completes with CURLE_WRITE_ERROR).
  virtual bool on_data(std::string_view bytes) = 0;
  // One response header line (status lines included), CRLF stripped. Return false to abort the
  // transfer (as from on_data).
  virtual bool on_header(std::string_view line) = 0;
  // The transfer is over (a native failure is reported with the nearest CURLcode and a sentence
  // in error_buffer); `easy`, for curl transfers, is still valid.
  virtual void on_complete(CURLcode code) = 0;

  CURL* easy = nullptr;
  Http1Connection* native = nullptr;  // the connection a native transfer runs on
  H2Pool* h2 = nullptr;               // an HTTPS transfer: its pool (queued, or on a connection)
  H2Connection* h2_connection = nullptr;
  // Set by the HTTPS transport when the server turned out to speak HTTP/1.1 only: the owner
  // sends this (and what follows) through libcurl instead.
  bool use_curl = false;
  bool running = false;
  long status = 0;               // HTTP status, once the reply's headers are in
  char* error_buffer = nullptr;  // CURL_ERROR_SIZE bytes: why a transfer failed
};

class Loop {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  Loop();
  ~Loop();  // stops the thread; pending tasks are dropped, running transfers aborted
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // From any thread: runs `task` on the loop thread soon, in posting order.
  void post(Task task);
  bool in_loop_thread() const { return std::this_thread::get_id() == thread_id_; }

  // ---- loop thread only ----
  CURL* acquire_easy();  // a reset easy handle (reused from a free list)
  void release_easy(CURL* easy);
  void start(Transfer* t);  // installs the callbacks and attaches it to curl's multi
  // Sends `request` over a pooled keep-alive connection to its target (or a new one). The views
  // in `request` must stay valid until the transfer completes.
  void start_native(Transfer* t, const NativeRequest& request);
  // Sends `request` over HTTP/2 + TLS to `target`, on a pooled connection with a free stream
  // (waiting for one, or for a new connection). The views in `request` must stay valid until the
  // transfer completes.
  void start_h2(Transfer* t, const H2Target& target, const H2Request& request);
  // Detaches a running transfer and calls its on_complete(code). Not from inside its callbacks
  // (return false from on_data there instead).
  void abort(Transfer* t, CURLcode code);
  // Runs `task` once this turn's events are all handled, just before the loop waits again:
  // results finished in one turn are handed over together.
  void defer(Task task);
  TimerId add_timer(Clock::time_point at, Task task);
  void cancel_timer(TimerId id);
  // Raises the connection caches so `n` more concurrent connections stay reusable.
  void reserve_connections(long n);

  // ---- for transports (loop thread) ----
  void watch(int fd, IoHandler* handler, uint32_t events, bool added);  // epoll add or modify
  void unwatch(int fd);
  void retire(std::unique_ptr<IoHandler> handler);     // destroyed after the current epoll batch
  void adopt(std::unique_ptr<H2Connection> c);         // the loop owns HTTPS connections
  void release(H2Connection* c);                       // retires one
  std::string& read_buffer() { return read_buffer_; }  // shared: reads are handled at once
  // Idle keep-alive connections per target, most recently used last.
  std::vector<Http1Connection*>& idle_connections(const std::string& key) { return idle_[key]; }
  long max_idle_per_target() const { return std::max(max_connections_, 16L); }

 private:
  friend class Http1Connection;  // registers itself in connections_
  struct TimerEntry {
    Clock::time_point at;
    TimerId id;
    bool operator>(const TimerEntry& o) const { return at > o.at || (at == o.at && id > o.id); }
  };

  CURLM* multi();  // created on first use
  void run();
  void drain_posted();
  void run_deferred();
  void run_timers();
  void check_multi();
  int poll_timeout_ms() const;
  void flush_sockets();
  static int socket_cb(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp);
  static int close_socket_cb(void* userp, curl_socket_t s);
  static int timer_cb(CURLM* multi, long timeout_ms, void* userp);
  static size_t write_cb(char* data, size_t size, size_t n, void* userp);
  static size_t header_cb(char* data, size_t size, size_t n, void* userp);

  CURLM* multi_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::thread::id thread_id_;
  std::atomic<bool> stopping_{false};

  std::mutex posted_mu_;
  std::vector<Task> posted_;
  std::atomic<bool> wake_pending_{false};

  // Loop thread only.
  // What curl wants watched per socket, applied to epoll just before waiting: a connection that
  // finishes one request and starts the next in the same turn (keep-alive reuse) then costs no
  // epoll_ctl at all, instead of a remove and an add.
  struct Socket final : IoHandler {
    Loop* loop = nullptr;
    curl_socket_t fd = -1;
    uint32_t want = 0;  // EPOLLIN/EPOLLOUT curl asked for (0 = none)
    uint32_t have = 0;  // what epoll has now (0 = not registered)
    bool dirty = false;
    void on_io(uint32_t events) override;
  };
  struct Wake final : IoHandler {
    Loop* loop = nullptr;
    void on_io(uint32_t events) override;
  };
  std::unordered_map<curl_socket_t, std::unique_ptr<Socket>> sockets_;
  Wake wake_;
  std::vector<std::unique_ptr<IoHandler>> retired_;
  std::unordered_map<std::string, std::vector<Http1Connection*>> idle_;
  std::unordered_map<Http1Connection*, std::unique_ptr<Http1Connection>> connections_;
  std::unordered_map<std::string, std::unique_ptr<H2Pool>> h2_pools_;
  std::unordered_map<H2Connection*, std::unique_ptr<H2Connection>> h2_connections_;
  std::string read_buffer_;
  std::vector<curl_socket_t> dirty_;
  std::vector<CURL*> free_easy_;
  std::vector<Task> deferred_;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  std::unordered_map<TimerId, Task> timer_tasks_;
  TimerId next_timer_ = 1;
  size_t cancelled_timers_ = 0;  // cancelled entries still in timers_
  bool curl_timer_armed_ = false;
  Clock::time_point curl_deadline_{};
  long max_connections_ = 0;
};

}  // namespace flexllm::detail
