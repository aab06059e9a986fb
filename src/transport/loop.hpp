// The event loop behind flexllm::Runtime: one thread, libcurl's multi interface driven through
// curl_multi_socket_action and epoll, so thousands of transfers cost nothing while idle. Other
// threads hand work over with post(); everything else here runs on the loop thread only.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace flexllm::detail {

using Clock = std::chrono::steady_clock;

// One HTTP transfer on the loop. The owner sets up `easy` (from Loop::acquire_easy) with its
// options; the loop installs the write/header callbacks that call on_data/on_header and calls
// on_complete once curl is done with it (or it was aborted).
class Transfer {
 public:
  virtual ~Transfer() = default;
  // Body bytes. Return false to abort the transfer (it completes with CURLE_WRITE_ERROR).
  virtual bool on_data(std::string_view bytes) = 0;
  // One response header line (status lines included), CRLF stripped.
  virtual void on_header(std::string_view line) = 0;
  // The transfer is over and detached from the multi; `easy` is still valid.
  virtual void on_complete(CURLcode code) = 0;

  CURL* easy = nullptr;
  bool running = false;  // attached to the multi
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
  void start(Transfer* t);  // installs the callbacks and attaches it
  // Detaches a running transfer and calls its on_complete(code). Not from inside its callbacks
  // (return false from on_data there instead).
  void abort(Transfer* t, CURLcode code);
  // Runs `task` once this turn's events are all handled, just before the loop waits again:
  // results finished in one turn are handed over together.
  void defer(Task task);
  TimerId add_timer(Clock::time_point at, Task task);
  void cancel_timer(TimerId id);
  // Raises the connection cache so `n` more concurrent connections stay reusable.
  void reserve_connections(long n);

 private:
  struct TimerEntry {
    Clock::time_point at;
    TimerId id;
    bool operator>(const TimerEntry& o) const { return at > o.at || (at == o.at && id > o.id); }
  };

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
  struct Socket {
    uint32_t want = 0;  // EPOLLIN/EPOLLOUT curl asked for (0 = none)
    uint32_t have = 0;  // what epoll has now (0 = not registered)
    bool dirty = false;
  };
  std::unordered_map<curl_socket_t, Socket> sockets_;
  std::vector<curl_socket_t> dirty_;
  std::vector<CURL*> free_easy_;
  std::vector<Task> deferred_;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  std::unordered_map<TimerId, Task> timer_tasks_;
  TimerId next_timer_ = 1;
  bool curl_timer_armed_ = false;
  Clock::time_point curl_deadline_{};
  long max_connections_ = 0;
};

}  // namespace flexllm::detail
