#include "transport/loop.hpp"

#include <openssl/ssl.h>

#include "transport/h2.hpp"
#include "transport/native.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <stdexcept>
#include <system_error>

namespace flexllm::detail {
void curl_setup() {
  static std::once_flag once;
  std::call_once(once, [] {
    // OpenSSL without its atexit cleanup: that would run before the process-wide runtime is
    // destroyed, and the I/O thread's OpenSSL state would leak (as on the native HTTPS path).
    OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, nullptr);
    curl_global_init(CURL_GLOBAL_DEFAULT);
  });
}

Loop::Loop() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    int err = errno;
    if (epoll_fd_ >= 0) close(epoll_fd_);
    if (wake_fd_ >= 0) close(wake_fd_);
    throw std::system_error(err, std::generic_category(), "flexllm: cannot create the I/O loop");
  }
  wake_.loop = this;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = static_cast<IoHandler*>(&wake_);
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
}

// The multi handle is made on the first curl transfer only: a process whose clients all use the
// native transport never sets up libcurl (and its TLS library: a few MB of touched pages).
CURLM* Loop::multi() {
  if (multi_) return multi_;
  curl_setup();
  multi_ = curl_multi_init();
  if (!multi_) return nullptr;
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Loop::socket_cb);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Loop::timer_cb);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, std::max(max_connections_, 16L));
  return multi_;
}

Loop::~Loop() {
  stopping_ = true;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof one) < 0) { /* the loop polls at least every second */
  }
  thread_.join();
  idle_.clear();
  connections_.clear();  // closes the native connections
  h2_connections_.clear();
  retired_.clear();
  h2_pools_.clear();  // last: connections point at their pool
  for (CURL* e : free_easy_) curl_easy_cleanup(e);
  if (multi_) curl_multi_cleanup(multi_);
  close(epoll_fd_);
  close(wake_fd_);
}

void Loop::post(Task task) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(task));
  }
  // One wake-up per batch of posts: the loop clears the flag before it drains.
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof one) < 0) { /* counter saturated: a wake is pending */
    }
  }
}

CURL* Loop::acquire_easy() {
  if (free_easy_.empty()) {
    curl_setup();
    return curl_easy_init();
  }
  CURL* e = free_easy_.back();
  free_easy_.pop_back();
  curl_easy_reset(e);
  return e;
}

void Loop::release_easy(CURL* easy) {
  if (easy) free_easy_.push_back(easy);
}

void Loop::start(Transfer* t) {
  curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, &Loop::write_cb);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, &Loop::header_cb);
  curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION, &Loop::close_socket_cb);
  curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETDATA, this);
  t->running = true;
  CURLM* m = multi();
  if (!m || curl_multi_add_handle(m, t->easy) != CURLM_OK) {
    t->running = false;
    t->on_complete(CURLE_FAILED_INIT);
  }
}

void Loop::start_native(Transfer* t, const NativeRequest& request) {
  std::string error;
  Http1Connection* c = Http1Connection::acquire(*this, *request.target, request.connect_timeout,
                                                /*fresh=*/false, error);
  t->running = true;
  if (!c) {
    if (t->error_buffer) std::snprintf(t->error_buffer, CURL_ERROR_SIZE, "%s", error.c_str());
    t->running = false;
    return t->on_complete(CURLE_COULDNT_CONNECT);
  }
  c->start(t, request);
}

void Loop::start_h2(Transfer* t, const H2Target& target, const H2Request& request) {
  std::unique_ptr<H2Pool>& pool = h2_pools_[target.key];
  if (!pool) pool = std::make_unique<H2Pool>(*this, target);
  pool->start(t, request);
}

void Loop::adopt(std::unique_ptr<H2Connection> c) {
  H2Connection* raw = c.get();
  h2_connections_.emplace(raw, std::move(c));
}

void Loop::release(H2Connection* c) {
  auto it = h2_connections_.find(c);
  if (it == h2_connections_.end()) return;
  retire(std::move(it->second));
  h2_connections_.erase(it);
}

void Loop::watch(int fd, IoHandler* handler, uint32_t events, bool added) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  epoll_ctl(epoll_fd_, added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
}

void Loop::unwatch(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void Loop::retire(std::unique_ptr<IoHandler> handler) {
  handler->dead = true;
  retired_.push_back(std::move(handler));
}

void Loop::abort(Transfer* t, CURLcode code) {
  if (!t->running) return;
  if (t->native) return t->native->abort(code);
  if (t->h2) return t->h2->abort(t, code);
  curl_multi_remove_handle(multi_, t->easy);
  t->running = false;
  t->on_complete(code);
}

Loop::TimerId Loop::add_timer(Clock::time_point at, Task task) {
  TimerId id = next_timer_++;
  timer_tasks_.emplace(id, std::move(task));
  timers_.push({at, id});
  return id;
}

void Loop::cancel_timer(TimerId id) {
  if (timer_tasks_.erase(id) == 0) return;
  // Cancelled entries stay in the heap until they come due; per-request timeouts are cancelled
  // almost always, so without this purge a long batch would pile up one entry per request for
  // the whole timeout (millions of them).
  if (++cancelled_timers_ > 1024 && cancelled_timers_ > timers_.size() / 2) {
    std::vector<TimerEntry> live;
    live.reserve(timer_tasks_.size());
    while (!timers_.empty()) {
      if (timer_tasks_.count(timers_.top().id)) live.push_back(timers_.top());
      timers_.pop();
    }
    timers_ = decltype(timers_)(std::greater<>(), std::move(live));
    cancelled_timers_ = 0;
  }
}

void Loop::reserve_connections(long n) {
  max_connections_ += n;
  if (multi_) curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, std::max(max_connections_, 16L));
}

void Loop::run() {
  epoll_event events[256];
  while (!stopping_.load(std::memory_order_acquire)) {
    drain_posted();
    run_timers();
    check_multi();
    run_deferred();
    flush_sockets();
    int n = epoll_wait(epoll_fd_, events, 256, poll_timeout_ms());
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<IoHandler*>(events[i].data.ptr);
      if (!handler->dead) handler->on_io(events[i].events);
    }
    check_multi();
    retired_.clear();  // nothing in this batch refers to them any more
  }
}

void Loop::drain_posted() {
  wake_pending_.store(false, std::memory_order_release);
  std::vector<Task> tasks;
  {
    std::lock_guard lock(posted_mu_);
    tasks.swap(posted_);
  }
  for (Task& t : tasks) t();
}

void Loop::defer(Task task) {
  deferred_.push_back(std::move(task));
}

void Loop::run_deferred() {
  // A deferred task may defer another (it then runs in this same pass).
  for (size_t i = 0; i < deferred_.size(); ++i) {
    Task task = std::move(deferred_[i]);
    task();
  }
  deferred_.clear();
}

void Loop::run_timers() {
  const auto now = Clock::now();
  if (curl_timer_armed_ && now >= curl_deadline_) {
    curl_timer_armed_ = false;
    int running = 0;
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  while (!timers_.empty() && timers_.top().at <= now) {
    TimerId id = timers_.top().id;
    timers_.pop();
    auto it = timer_tasks_.find(id);
    if (it == timer_tasks_.end()) {  // cancelled
      if (cancelled_timers_ > 0) --cancelled_timers_;
      continue;
    }
    Task task = std::move(it->second);
    timer_tasks_.erase(it);
    task();
  }
}

void Loop::check_multi() {
  if (!multi_) return;
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
    curl_multi_remove_handle(multi_, easy);
    if (!t) continue;
    t->running = false;
    if (t->status == 0) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->status);
    t->on_complete(code);
  }
}

int Loop::poll_timeout_ms() const {
  {
    std::lock_guard lock(const_cast<std::mutex&>(posted_mu_));
    if (!posted_.empty()) return 0;
  }
  if (!deferred_.empty()) return 0;
  auto now = Clock::now();
  auto next = now + std::chrono::seconds(1);
  if (curl_timer_armed_) next = std::min(next, curl_deadline_);
  // The heap may hold cancelled entries; waking for one is harmless.
  if (!timers_.empty()) next = std::min(next, timers_.top().at);
  if (next <= now) return 0;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(next - now).count();
  return static_cast<int>((us + 999) / 1000);  // round up: never wake before the deadline
}

void Loop::Wake::on_io(uint32_t) {
  uint64_t v;
  if (read(loop->wake_fd_, &v, sizeof v) < 0) { /* already drained */
  }
}

void Loop::Socket::on_io(uint32_t events) {
  int mask = 0;
  if (events & EPOLLIN) mask |= CURL_CSELECT_IN;
  if (events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
  if (events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
  int running = 0;
  curl_multi_socket_action(loop->multi_, fd, mask, &running);
}

int Loop::socket_cb(CURL*, curl_socket_t s, int what, void* userp, void*) {
  auto* self = static_cast<Loop*>(userp);
  std::unique_ptr<Socket>& slot = self->sockets_[s];
  if (!slot) {
    slot = std::make_unique<Socket>();
    slot->loop = self;
    slot->fd = s;
  }
  Socket& sock = *slot;
  sock.want = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) sock.want |= EPOLLIN;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) sock.want |= EPOLLOUT;
  if (!sock.dirty) {
    sock.dirty = true;
    self->dirty_.push_back(s);
  }
  return 0;
}

void Loop::flush_sockets() {
  for (curl_socket_t s : dirty_) {
    auto it = sockets_.find(s);
    if (it == sockets_.end() || !it->second->dirty) continue;  // closed meanwhile, or done
    Socket& sock = *it->second;
    sock.dirty = false;
    if (sock.want == sock.have) continue;
    epoll_event ev{};
    ev.events = sock.want;
    ev.data.ptr = static_cast<IoHandler*>(&sock);
    if (sock.want == 0) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s, nullptr);
    } else if (epoll_ctl(epoll_fd_, sock.have ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0) {
      // The kernel knows better than our record (a descriptor number reused): try the other op.
      epoll_ctl(epoll_fd_, sock.have ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev);
    }
    sock.have = sock.want;
  }
  dirty_.clear();
}

// curl closes a connection's socket: forget it, so a new socket that gets the same descriptor
// number starts unregistered (closing removed it from epoll).
int Loop::close_socket_cb(void* userp, curl_socket_t s) {
  auto* self = static_cast<Loop*>(userp);
  if (auto it = self->sockets_.find(s); it != self->sockets_.end()) {
    self->retire(std::move(it->second));  // an event for it may already be in this batch
    self->sockets_.erase(it);
  }
  return close(s);
}

int Loop::timer_cb(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<Loop*>(userp);
  if (timeout_ms < 0) {
    self->curl_timer_armed_ = false;
  } else {
    self->curl_timer_armed_ = true;
    self->curl_deadline_ = Clock::now() + std::chrono::milliseconds(timeout_ms);
  }
  return 0;
}

size_t Loop::write_cb(char* data, size_t, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
  return t->on_data(std::string_view(data, n)) ? n : 0;
}

size_t Loop::header_cb(char* data, size_t, size_t n, void* userp) {
  std::string_view line(data, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  return static_cast<Transfer*>(userp)->on_header(line) ? n : 0;
}

}  // namespace flexllm::detail
