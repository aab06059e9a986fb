// conn_storm: connection-storm load generator for HTTP/1.1 servers (Linux, epoll, no deps).
//
// Opens N non-blocking connections as fast as possible, sends `POST <path>` on each as soon as it
// is connected, reads the full response (Content-Length, chunked, or until close), optionally
// repeats K times per connection (keep-alive), and prints one JSON line with the results.
// Exit status: 0 if every request got a 2xx response, 1 otherwise, 2 on usage errors.
//
// Connections are closed with an RST (SO_LINGER 0) once done, so back-to-back runs do not leave
// tens of thousands of client TIME_WAIT sockets behind: with them, connect() spends long in the
// ephemeral-port search and later rounds measured ~2x slower. --graceful-close sends a FIN instead.
// A server that closes a keep-alive connection before all K requests are sent is counted as
// errors for the requests left (no reconnect). peak_open counts established connections.
//
// Build: g++ -std=c++20 -O2 -Wall -Wextra -Werror -o conn_storm bench/conn_storm.cpp
// Run:   conn_storm --port 18080 --connections 10000 [--requests-per-conn 5] [--timeout 30]

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kDefaultBody[] =
    R"({"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise )"
    R"(assistant that summarises business documents."},{"role":"user","content":"Summarise )"
    R"(the attached quarterly report in two sentences, focusing on revenue growth and margins. )"
    R"(Report id: 000000"}],"temperature":0.2,"max_tokens":256})";
constexpr size_t kMaxLine = 16 * 1024;  // longest status/header/chunk-size line accepted
constexpr int kOpenBatch = 256;         // connects per loop turn before polling events

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  long connections = 10000;
  std::string path = "/v1/chat/completions";
  std::string body_file;
  double timeout_s = 30;
  long requests_per_conn = 1;
  bool graceful_close = false;
};

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool IContains(std::string_view hay, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (IEquals(hay.substr(i, needle.size()), needle)) return true;
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Incremental HTTP/1.1 response parser. Body bytes are counted, never stored.
class Parser {
 public:
  enum class St { kStatus, kHeader, kBody, kChunkSize, kChunk, kChunkEnd, kTrailer, kEof, kDone };
  St st = St::kStatus;
  int status = 0;

  void Reset() { *this = Parser(); }

  // Consumes bytes from [p, end). Returns false on a protocol error. Stops at the end of a
  // response (st == kDone) and advances p past what was consumed.
  bool Feed(const char*& p, const char* end) {
    while (p < end && st != St::kDone) {
      if (st == St::kBody || st == St::kChunk || st == St::kEof) {
        size_t n = static_cast<size_t>(end - p);
        if (st != St::kEof) n = std::min<uint64_t>(n, remaining_);
        p += n;
        if (st != St::kEof && (remaining_ -= n) == 0)
          st = st == St::kBody ? St::kDone : St::kChunkEnd;
        continue;
      }
      const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      const char* stop = nl ? nl + 1 : end;
      line_.append(p, stop);
      p = stop;
      if (line_.size() > kMaxLine) return false;
      if (!nl) return true;  // line continues in the next read
      std::string_view line = Trim(std::string_view(line_).substr(0, line_.size() - 1));
      bool ok = OnLine(line);
      line_.clear();
      if (!ok) return false;
    }
    return true;
  }

 private:
  bool OnLine(std::string_view line) {
    switch (st) {
      case St::kStatus:  // "HTTP/1.1 200 OK"
        if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return false;
        status = 0;
        for (char c : line.substr(9, 3)) {
          if (c < '0' || c > '9') return false;
          status = status * 10 + (c - '0');
        }
        st = St::kHeader;
        return true;
      case St::kHeader: {
        if (line.empty()) return EndOfHead();
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return false;
        std::string_view name = Trim(line.substr(0, colon)), value = Trim(line.substr(colon + 1));
        if (IEquals(name, "content-length")) {
          char* e = nullptr;
          std::string v(value);
          content_length_ = static_cast<int64_t>(std::strtoull(v.c_str(), &e, 10));
          if (v.empty() || *e != '\0') return false;
        } else if (IEquals(name, "transfer-encoding") && IContains(value, "chunked")) {
          chunked_ = true;
        }
        return true;
      }
      case St::kChunkSize: {  // "1a3f;ext=1"
        std::string v(Trim(line.substr(0, line.find(';'))));
        char* e = nullptr;
        remaining_ = std::strtoull(v.c_str(), &e, 16);
        if (v.empty() || *e != '\0') return false;
        st = remaining_ == 0 ? St::kTrailer : St::kChunk;
        return true;
      }
      case St::kChunkEnd:  // CRLF after chunk data
        st = St::kChunkSize;
        return line.empty();
      case St::kTrailer:
        if (line.empty()) st = St::kDone;
        return true;
      default: return false;
    }
  }

  bool EndOfHead() {
    if (status >= 100 && status < 200 && status != 101) {  // interim response: read the next
      Reset();
      return true;
    }
    if (status == 204 || status == 304) {
      st = St::kDone;
    } else if (chunked_) {
      st = St::kChunkSize;
    } else if (content_length_ >= 0) {
      remaining_ = static_cast<uint64_t>(content_length_);
      st = remaining_ == 0 ? St::kDone : St::kBody;
    } else {
      st = St::kEof;  // body delimited by connection close
    }
    return true;
  }

  std::string line_;
  int64_t content_length_ = -1;
  bool chunked_ = false;
  uint64_t remaining_ = 0;
};

enum class ConnState { kIdle, kConnecting, kWriting, kReading, kClosed };

struct Conn {
  int fd = -1;
  ConnState state = ConnState::kIdle;
  size_t sent = 0;
  long done_reqs = 0;
  Clock::time_point started;
  Parser parser;
};

struct Stats {
  long completed = 0, errors = 0, connect_errors = 0, open = 0, peak_open = 0, closed = 0;
  std::array<long, 1000> status{};
  std::vector<double> latencies_ms;
  Clock::time_point last_response;
};

class Storm {
 public:
  Storm(const Options& o, const sockaddr_storage& addr, socklen_t addr_len, std::string request)
      : opt_(o), addr_(addr), addr_len_(addr_len), req_(std::move(request)), conns_(o.connections) {
    stats_.latencies_ms.reserve(static_cast<size_t>(o.connections * o.requests_per_conn));
  }

  // Runs until every connection is finished or the deadline passes. Returns the wall start (t0).
  Clock::time_point Run() {
    t0_ = Clock::now();  // replaced by the time of the first connect() call
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) Die("epoll_create1");
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(opt_.timeout_s));
    std::vector<epoll_event> events(1024);
    Clock::time_point backoff_until{};
    while (stats_.closed < opt_.connections) {
      const auto now = Clock::now();
      if (now >= deadline) break;
      bool opening = next_ < opt_.connections && now >= backoff_until;
      if (opening && !OpenSome()) backoff_until = Clock::now() + std::chrono::milliseconds(5);
      opening = next_ < opt_.connections && Clock::now() >= backoff_until;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      long wait_ms = opening ? 0 : next_ < opt_.connections ? 5 : 100;
      wait_ms = std::clamp<long>(left.count(), 0, wait_ms);
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(wait_ms));
      if (n < 0 && errno != EINTR) Die("epoll_wait");
      for (int i = 0; i < n; ++i) OnEvent(conns_[events[i].data.u64], events[i].events);
    }
    timed_out_ = stats_.closed < opt_.connections;
    for (auto& c : conns_) {  // deadline hit: whatever is unfinished counts as errors
      if (c.state == ConnState::kConnecting) ++stats_.connect_errors;
      if (c.state != ConnState::kClosed) Fail(c);
    }
    close(ep_);
    return t0_;
  }

  const Stats& stats() const { return stats_; }
  bool timed_out() const { return timed_out_; }

 private:
  // Opens up to kOpenBatch connections. Returns false if connect() asked us to retry later.
  bool OpenSome() {
    for (int i = 0; i < kOpenBatch && next_ < opt_.connections; ++i) {
      Conn& c = conns_[static_cast<size_t>(next_)];
      c.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) return false;
        Die("socket");
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (!started_) {
        started_ = true;
        t0_ = Clock::now();
      }
      int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
      if (rc < 0 && (errno == EAGAIN || errno == EADDRNOTAVAIL)) {  // out of ports/cache: later
        close(c.fd);
        c.fd = -1;
        return false;
      }
      ++next_;
      if (rc < 0 && errno != EINPROGRESS && errno != EINTR) {
        ++stats_.connect_errors;
        Fail(c);
        continue;
      }
      c.state = ConnState::kConnecting;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
      if (epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) < 0) Die("epoll_ctl");
      if (rc == 0) OnEvent(c, EPOLLOUT);
    }
    return true;
  }

  void OnEvent(Conn& c, uint32_t ev) {
    if (c.state == ConnState::kConnecting) {
      if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        ++stats_.connect_errors;
        return Fail(c);
      }
      stats_.peak_open = std::max(stats_.peak_open, ++stats_.open);
      StartRequest(c);
    }
    if (c.state == ConnState::kWriting && !Flush(c)) return;
    if (c.state != ConnState::kClosed && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
      Read(c);
    }
  }

  void StartRequest(Conn& c) {
    c.parser.Reset();
    c.sent = 0;
    c.state = ConnState::kWriting;
    c.started = Clock::now();
  }

  // Writes the pending request bytes. Returns false if the connection was closed.
  bool Flush(Conn& c) {
    while (c.sent < req_.size()) {
      ssize_t n = send(c.fd, req_.data() + c.sent, req_.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;  // EPOLLOUT edge will resume
      if (n <= 0) return Fail(c), false;
      c.sent += static_cast<size_t>(n);
    }
    c.state = ConnState::kReading;
    return true;
  }

  void Read(Conn& c) {
    char buf[64 * 1024];
    for (;;) {  // edge-triggered: drain until EAGAIN
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0) return Fail(c);
      if (n == 0) {  // EOF: completes a close-delimited body, otherwise the request failed
        if (c.parser.st == Parser::St::kEof) {
          c.parser.st = Parser::St::kDone;
          Complete(c);
        }
        return Fail(c);
      }
      const char* p = buf;
      const char* end = buf + n;
      while (p < end) {
        if (!c.parser.Feed(p, end)) return Fail(c);
        if (c.parser.st != Parser::St::kDone) break;
        const bool was_writing = c.state == ConnState::kWriting;
        if (!Complete(c)) return;
        if (p < end || was_writing) return Fail(c);  // unsolicited bytes or early response
        StartRequest(c);
        if (!Flush(c)) return;
      }
    }
  }

  // Records a finished response. Returns false if the connection is done (all K requests).
  bool Complete(Conn& c) {
    const auto now = Clock::now();
    stats_.latencies_ms.push_back(Ms(now - c.started));
    stats_.last_response = now;
    ++stats_.completed;
    ++stats_.status[static_cast<size_t>(std::clamp(c.parser.status, 0, 999))];
    if (++c.done_reqs < opt_.requests_per_conn) return true;
    Close(c);
    return false;
  }

  void Fail(Conn& c) {
    if (c.state == ConnState::kClosed) return;
    stats_.errors += opt_.requests_per_conn - c.done_reqs;
    Close(c);
  }

  void Close(Conn& c) {
    if (c.state == ConnState::kWriting || c.state == ConnState::kReading) --stats_.open;
    if (c.fd >= 0 && !opt_.graceful_close) {  // RST: no client TIME_WAIT piles up across runs
      linger l{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    if (c.fd >= 0) close(c.fd);  // also removes it from the epoll set
    c.fd = -1;
    c.state = ConnState::kClosed;
    ++stats_.closed;
  }

  const Options& opt_;
  sockaddr_storage addr_;
  socklen_t addr_len_;
  std::string req_;
  std::vector<Conn> conns_;
  Stats stats_;
  int ep_ = -1;
  long next_ = 0;
  bool started_ = false;
  bool timed_out_ = false;
  Clock::time_point t0_{};
};

[[noreturn]] void Usage(const char* argv0, int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: %s --port P [--host 127.0.0.1] [--connections 10000]\n"
               "       [--path /v1/chat/completions] [--body-file F] [--timeout 30]\n"
               "       [--requests-per-conn 1] [--graceful-close]\n",
               argv0);
  std::exit(code);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], val;
    if (arg == "-h" || arg == "--help") Usage(argv[0], 0);
    if (arg == "--graceful-close") {
      o.graceful_close = true;
      continue;
    }
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      val = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      val = argv[++i];
    } else {
      std::fprintf(stderr, "missing value for %s\n", arg.c_str());
      Usage(argv[0], 2);
    }
    char* end = nullptr;
    errno = 0;
    if (arg == "--host") {
      o.host = val;
    } else if (arg == "--port") {
      o.port = static_cast<int>(std::strtol(val.c_str(), &end, 10));
    } else if (arg == "--connections") {
      o.connections = std::strtol(val.c_str(), &end, 10);
    } else if (arg == "--path") {
      o.path = val;
    } else if (arg == "--body-file") {
      o.body_file = val;
    } else if (arg == "--timeout") {
      o.timeout_s = std::strtod(val.c_str(), &end);
    } else if (arg == "--requests-per-conn") {
      o.requests_per_conn = std::strtol(val.c_str(), &end, 10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      Usage(argv[0], 2);
    }
    if (end && (*end != '\0' || errno != 0 || val.empty())) {
      std::fprintf(stderr, "bad value for %s: '%s'\n", arg.c_str(), val.c_str());
      Usage(argv[0], 2);
    }
  }
  if (o.port <= 0 || o.port > 65535 || o.connections < 1 || o.requests_per_conn < 1 ||
      !(o.timeout_s > 0) || o.path.empty() || o.path[0] != '/') {
    std::fprintf(stderr,
                 "need --port 1..65535, --connections >= 1, --requests-per-conn >= 1, "
                 "--timeout > 0, --path starting with '/'\n");
    Usage(argv[0], 2);
  }
  return o;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) std::perror("setrlimit(RLIMIT_NOFILE)");
  }
  if (rl.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(opt.connections) + 16 > rl.rlim_cur) {
    std::fprintf(stderr, "warning: RLIMIT_NOFILE %llu is below --connections %ld + 16\n",
                 static_cast<unsigned long long>(rl.rlim_cur), opt.connections);
  }

  std::string body = kDefaultBody;
  if (!opt.body_file.empty()) {
    std::ifstream in(opt.body_file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", opt.body_file.c_str());
      return 2;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    body = ss.str();
  }

  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port_str = std::to_string(opt.port);
  if (int rc = getaddrinfo(opt.host.c_str(), port_str.c_str(), &hints, &res); rc != 0 || !res) {
    std::fprintf(stderr, "cannot resolve %s: %s\n", opt.host.c_str(), gai_strerror(rc));
    return 2;
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  const socklen_t addr_len = res->ai_addrlen;
  const bool v6 = res->ai_family == AF_INET6;
  freeaddrinfo(res);

  const std::string host_header = (v6 ? "[" + opt.host + "]" : opt.host) + ":" + port_str;
  std::string request = "POST " + opt.path + " HTTP/1.1\r\n";
  request += "Host: " + host_header + "\r\n";
  request += "Content-Type: application/json\r\n";
  request += "Authorization: Bearer sk-bench\r\n";
  request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  request += body;

  Storm storm(opt, addr, addr_len, std::move(request));
  const Clock::time_point t0 = storm.Run();
  const Stats& s = storm.stats();

  std::vector<double> lat = s.latencies_ms;
  std::sort(lat.begin(), lat.end());
  const double wall_s =
      s.completed > 0 ? Ms(s.last_response - t0) / 1000 : Ms(Clock::now() - t0) / 1000;

  std::string status_json;
  long non_2xx = 0;
  for (size_t code = 0; code < s.status.size(); ++code) {
    if (s.status[code] == 0) continue;
    if (code < 200 || code > 299) non_2xx += s.status[code];
    status_json += (status_json.empty() ? "\"" : ",\"") + std::to_string(code) +
                   "\":" + std::to_string(s.status[code]);
  }
  std::printf(
      "{\"connections\":%ld,\"completed\":%ld,\"errors\":%ld,\"status\":{%s},\"wall_s\":%.3f,"
      "\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"max_latency_ms\":%.3f,"
      "\"connect_errors\":%ld,\"peak_open\":%ld,\"requests\":%ld,\"timed_out\":%s}\n",
      opt.connections, s.completed, s.errors, status_json.c_str(), wall_s, Percentile(lat, 0.50),
      Percentile(lat, 0.99), lat.empty() ? 0.0 : lat.back(), s.connect_errors, s.peak_open,
      opt.connections * opt.requests_per_conn, storm.timed_out() ? "true" : "false");
  std::fflush(stdout);
  const bool ok = s.completed == opt.connections * opt.requests_per_conn && non_2xx == 0;
  return ok ? 0 : 1;
}
