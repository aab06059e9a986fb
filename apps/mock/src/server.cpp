// The mock server's event loop: libevent bufferevents with our own HTTP/1.x framing (rather than
// evhttp), because fault injection needs exact control of the bytes: replies cut mid-body, streams
// that stop without a terminator, connections dropped or held open, and pending replies that are
// cancelled cleanly when the client goes away.
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>

#include "chat.hpp"
#include "faults.hpp"
#include "flexllm/mock/server.hpp"
#include "http.hpp"
#include "json_out.hpp"
#include "openai.hpp"

namespace flexllm::mock {

using Clock = std::chrono::steady_clock;
using namespace detail;

namespace {

// One chat request being answered.
struct Exchange {
  Outcome outcome = Outcome::ok;
  int error_status = 500;
  std::string authorization;  // quoted back by 401 replies
  ChatRequest request;
  ChatReply reply;
  ReplyIdentity ident;
  std::unique_ptr<StreamRenderer> stream;
  size_t next_event = 0;
  size_t stop_after = SIZE_MAX;  // truncated streams end after this many events
  double token_rate = 0;
  Clock::time_point stream_start;
};

enum class ConnState { reading, waiting, streaming, hung, closing };

timeval to_timeval(Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  if (us < 0) us = 0;
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

// Retry hints in OpenAI's x-ratelimit-reset-* style: "20ms", "1s", "1.5s".
std::string reset_hint(std::chrono::milliseconds ms) {
  if (ms.count() < 1000) return fmt::format("{}ms", ms.count());
  return fmt::format("{:g}s", static_cast<double>(ms.count()) / 1000.0);
}

}  // namespace

struct Conn;

struct detail::ServerState {
  event_base* base = nullptr;
  evconnlistener* listener = nullptr;
  event* wake = nullptr;
  event* log_flush = nullptr;
  int wake_fd = -1;
  std::thread thread;
  std::once_flag stop_once;
  std::string host;
  uint16_t port = 0;
  Clock::time_point epoch = Clock::now();

  mutable std::mutex mu;                    // guards everything below up to the loop-only section
  mutable std::condition_variable changed;  // notified after every stats change
  std::shared_ptr<const MockConfig> config;
  MockStats stats;
  std::deque<Arrival> arrivals;
  uint64_t seq = 0;
  // MockStats::bytes_parsed, counted by the loop without the lock (it changes on every read).
  std::atomic<uint64_t> bytes_parsed{0};
  std::atomic<uint64_t> max_buffered{0};  // MockStats::max_buffered_bytes, likewise
  // MockConfig's bounds, read by the loop on every read without the lock.
  std::atomic<size_t> max_body{kMaxBodyBytes};
  std::atomic<int64_t> header_timeout_ms{0};
  std::atomic<int64_t> body_timeout_ms{0};

  // Loop thread only.
  simdjson::dom::parser parser;
  std::unordered_set<Conn*> conns;
  double bucket_tokens = 0;
  double bucket_rate = -1;
  Clock::time_point bucket_at;
  std::FILE* log = nullptr;

  void run();
  void close_all();
  void reset_stats();  // callers hold `mu`
  MockStats snapshot(bool with_arrivals) const;
  // Runs `f` on the stats under the lock, then wakes wait_for() callers.
  template <class F>
  void update_stats(F&& f) {
    {
      std::lock_guard lock(mu);
      f(stats);
    }
    changed.notify_all();
  }
  void set_bounds(const MockConfig& cfg) {
    max_body.store(cfg.max_body_bytes, std::memory_order_relaxed);
    header_timeout_ms.store(cfg.header_timeout.count(), std::memory_order_relaxed);
    body_timeout_ms.store(cfg.body_timeout.count(), std::memory_order_relaxed);
  }
  void count_parsed(size_t n) { bytes_parsed.fetch_add(n, std::memory_order_relaxed); }
  bool take_token(const MockConfig& cfg, Clock::time_point now, double& wait_s);
  void write_log(uint64_t seq_no, Clock::time_point at, Outcome outcome, bool stream,
                 uint32_t latency_ms, std::string_view body);
};

// How much of the next request has come (while ConnState::reading).
enum class Receiving : uint8_t { nothing, head, body };

struct Conn {
  ServerState* srv = nullptr;
  bufferevent* bev = nullptr;
  event* timer = nullptr;     // the reply's latency, a stream's pacing
  event* deadline = nullptr;  // the header or body timeout of the request being received
  ConnState state = ConnState::reading;
  Receiving receiving = Receiving::nothing;
  bool deadline_armed = false;
  bool keep_alive = true;
  bool http11 = true;
  bool continue_sent = false;
  bool output_full = false;  // requests wait until the client has read the replies queued
  size_t head_scanned = 0;   // input bytes searched for the head's end so far
  RequestHead head;          // the request whose body is being received
  size_t body_left = 0;      // its Content-Length bytes still to come
  ChunkedDecoder chunked;
  std::unique_ptr<Exchange> ex;
  std::string body;
};

namespace {

void on_read(bufferevent* bev, void* arg);
void on_write(bufferevent* bev, void* arg);
void on_event(bufferevent* bev, short events, void* arg);
void on_timer(evutil_socket_t, short, void* arg);
void on_deadline(evutil_socket_t, short, void* arg);

void end_exchange(Conn* c) {
  if (!c->ex) return;
  c->ex.reset();
  c->srv->update_stats([](MockStats& st) { --st.in_flight; });
}

void close_conn(Conn* c) {
  ServerState* srv = c->srv;
  end_exchange(c);
  if (c->timer) event_free(c->timer);
  if (c->deadline) event_free(c->deadline);
  bufferevent_free(c->bev);
  srv->conns.erase(c);
  srv->update_stats([](MockStats& st) { --st.connections_open; });
  delete c;
}

// After a reply is queued: read the next request, or close once the output has drained.
void reply_done(Conn* c) {
  c->state = c->keep_alive ? ConnState::reading : ConnState::closing;
}

void send_response(Conn* c, int status, std::string_view content_type, std::string_view body,
                   std::string_view extra_headers = {}) {
  std::string out;
  out.reserve(160 + extra_headers.size() + body.size());
  out.append(c->http11 ? "HTTP/1.1 " : "HTTP/1.0 ");
  append_uint(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(status_reason(status));
  out.append("\r\nContent-Type: ");
  out.append(content_type);
  out.append("\r\nContent-Length: ");
  append_uint(out, body.size());
  out.append("\r\n");
  out.append(extra_headers);
  if (!c->keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
  out.append(body);
  bufferevent_write(c->bev, out.data(), out.size());
  reply_done(c);
}

void send_json(Conn* c, int status, std::string_view body, std::string_view extra = {}) {
  send_response(c, status, "application/json", body, extra);
}

void send_error(Conn* c, int status, std::string_view message, std::string_view type,
                std::string_view code = {}) {
  send_json(c, status, render_error(message, type, code));
}

// Queues `data` as one HTTP/1.1 chunk (or raw bytes on HTTP/1.0, where the close ends the body).
void write_chunk(Conn* c, std::string_view data) {
  if (data.empty()) return;
  if (!c->http11) {
    bufferevent_write(c->bev, data.data(), data.size());
    return;
  }
  std::string framed = fmt::format("{:x}\r\n", data.size());
  framed.append(data);
  framed.append("\r\n");
  bufferevent_write(c->bev, framed.data(), framed.size());
}

void start_stream_headers(Conn* c) {
  std::string_view head =
      c->http11 ? "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                  "no-cache\r\nTransfer-Encoding: chunked\r\n"
                : "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                  "no-cache\r\n";
  std::string out(head);
  if (!c->http11) c->keep_alive = false;
  if (!c->keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
  bufferevent_write(c->bev, out.data(), out.size());
}

void finish_stream(Conn* c) {
  if (c->http11) bufferevent_write(c->bev, "0\r\n\r\n", 5);
  end_exchange(c);
  reply_done(c);
}

// Cuts the connection once what is queued has been sent (truncation faults).
void cut_after_flush(Conn* c) {
  end_exchange(c);
  c->keep_alive = false;
  c->state = ConnState::closing;
}

// Sends the stream events that are due; re-arms the timer for the next one. Returns false when
// the connection is gone.
void advance_stream(Conn* c) {
  Exchange& ex = *c->ex;
  const size_t total = ex.stream->event_count();
  const size_t tokens = ex.stream->token_events();
  size_t due = total;
  if (ex.token_rate > 0) {
    double elapsed = std::chrono::duration<double>(Clock::now() - ex.stream_start).count();
    size_t tokens_due = static_cast<size_t>(elapsed * ex.token_rate) + 1;
    due = 1 + tokens_due > tokens ? total : 1 + tokens_due;
  }
  size_t limit = std::min(due, ex.stop_after);
  std::string out;
  for (; ex.next_event < limit; ++ex.next_event) ex.stream->append_event(out, ex.next_event);
  write_chunk(c, out);
  if (ex.next_event == ex.stop_after) return cut_after_flush(c);
  if (ex.next_event == total) return finish_stream(c);
  auto at =
      ex.stream_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                            static_cast<double>(ex.next_event - 1) / ex.token_rate));
  timeval tv = to_timeval(at - Clock::now());
  evtimer_add(c->timer, &tv);
}

void send_rate_limited(Conn* c, std::chrono::milliseconds wait, double limit_per_s,
                       std::string_view message) {
  auto secs = static_cast<long long>((wait.count() + 999) / 1000);
  std::string headers = fmt::format(
      "Retry-After: {}\r\nretry-after-ms: {}\r\nx-ratelimit-limit-requests: {}\r\n"
      "x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: {}\r\n",
      secs, wait.count(), static_cast<long long>(std::ceil(limit_per_s * 60)), reset_hint(wait));
  send_json(c, 429, render_error(message, "requests", "rate_limit_exceeded"), headers);
}

// The reply once the latency has passed. Returns false when it closed (and freed) the connection.
bool respond(Conn* c) {
  Exchange& ex = *c->ex;
  switch (ex.outcome) {
    case Outcome::ok:
    case Outcome::truncated:
      if (ex.request.stream) {
        start_stream_headers(c);
        ex.stream = std::make_unique<StreamRenderer>(ex.ident, ex.reply, ex.request.include_usage);
        if (ex.outcome == Outcome::truncated)
          ex.stop_after = 1 + std::max<size_t>(1, ex.stream->token_events() / 2);
        ex.stream_start = Clock::now();
        c->state = ConnState::streaming;
        advance_stream(c);
        return true;
      }
      if (ex.outcome == Outcome::truncated) {
        std::string body = render_completion(ex.ident, ex.reply);
        std::string out = fmt::format(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.size());
        out.append(body, 0, body.size() / 2);
        bufferevent_write(c->bev, out.data(), out.size());
        cut_after_flush(c);
        return true;
      }
      send_json(c, 200, render_completion(ex.ident, ex.reply));
      end_exchange(c);
      return true;
    case Outcome::http_error:
      if (ex.error_status == 401) {
        std::string token =
            ex.authorization.starts_with("Bearer ") ? ex.authorization.substr(7) : ex.authorization;
        send_error(c, 401, fmt::format("Incorrect API key provided: {}.", token),
                   "invalid_request_error", "invalid_api_key");
      } else {
        send_error(c, ex.error_status, fmt::format("mock: injected HTTP {}", ex.error_status),
                   ex.error_status >= 500 ? "server_error" : "invalid_request_error");
      }
      end_exchange(c);
      return true;
    case Outcome::malformed:
      if (ex.request.stream) {
        start_stream_headers(c);
        StreamRenderer stream(ex.ident, ex.reply, ex.request.include_usage);
        std::string out;
        stream.append_event(out, 0);
        StreamRenderer::append_malformed_event(out);
        out.append("data: [DONE]\n\n");
        write_chunk(c, out);
        finish_stream(c);
        return true;
      }
      send_json(c, 200, render_malformed_completion(ex.ident));
      end_exchange(c);
      return true;
    case Outcome::dropped: close_conn(c); return false;
    default:
      // 429s, 400s and hangs never wait for the latency.
      end_exchange(c);
      return true;
  }
}

void handle_chat(Conn* c, const RequestHead& h) {
  ServerState& s = *c->srv;
  const auto now = Clock::now();
  std::shared_ptr<const MockConfig> cfg;
  uint64_t seq;
  {
    std::lock_guard lock(s.mu);
    cfg = s.config;
    seq = ++s.seq;
  }
  std::string error;
  std::optional<ChatRequest> request = parse_chat_request(s.parser, c->body, cfg->seed, error);
  Outcome outcome = Outcome::bad_request;
  double wait_s = 0;
  if (request) {
    if (cfg->max_qps > 0 && !s.take_token(*cfg, now, wait_s)) {
      outcome = Outcome::qps_limited;
    } else {
      outcome = draw_fault(cfg->faults, cfg->fault_draws, cfg->seed, seq);
    }
  }
  const bool immediate = outcome == Outcome::bad_request || outcome == Outcome::qps_limited ||
                         outcome == Outcome::rate_limited;
  uint32_t latency = 0;
  if (!immediate && outcome != Outcome::hung)
    latency = Rng(mix64(cfg->seed ^ mix64(seq))).in(cfg->latency_ms);
  s.update_stats([&](MockStats& st) {
    ++st.requests;
    ++st.by_outcome[static_cast<size_t>(outcome)];
    st.max_in_flight = std::max(st.max_in_flight, st.in_flight + 1);
    if (!immediate) ++st.in_flight;
    if (cfg->max_arrivals > 0) {
      if (s.arrivals.size() >= cfg->max_arrivals) {
        s.arrivals.pop_front();
        ++st.arrivals_dropped;
      }
      Arrival& a = s.arrivals.emplace_back();
      a.seq = seq;
      a.at = now;
      a.outcome = outcome;
      a.stream = request && request->stream;
      if (request) a.last_user = request->last_user.substr(0, 256);
      if (cfg->record_bodies) a.body = c->body;
    }
  });
  if (s.log) s.write_log(seq, now, outcome, request && request->stream, latency, c->body);

  switch (outcome) {
    case Outcome::bad_request: return send_error(c, 400, error, "invalid_request_error");
    case Outcome::qps_limited:
      return send_rate_limited(
          c, std::chrono::milliseconds(static_cast<int64_t>(std::ceil(wait_s * 1000))),
          cfg->max_qps,
          fmt::format("mock: rate limit of {:g} requests/s reached; retry later", cfg->max_qps));
    case Outcome::rate_limited:
      return send_rate_limited(c, cfg->retry_after, cfg->max_qps > 0 ? cfg->max_qps : 1,
                               "mock: injected rate limit; retry later");
    default: break;
  }
  auto ex = std::make_unique<Exchange>();
  ex->outcome = outcome;
  ex->error_status = cfg->error_status;
  if (outcome == Outcome::http_error) ex->authorization = h.authorization;
  ex->reply = plan_reply(*request, *cfg);
  ex->ident.id = fmt::format("chatcmpl-mock-{}", seq);
  ex->ident.model = request->model.empty() ? cfg->models.front() : request->model;
  ex->ident.created = static_cast<int64_t>(std::time(nullptr));
  ex->token_rate = cfg->token_rate;
  ex->request = std::move(*request);
  c->ex = std::move(ex);
  if (outcome == Outcome::hung) {
    c->state = ConnState::hung;
    return;
  }
  // A zero-latency reply is sent at once, except a drop: closing here would free the connection
  // under process(), so it goes through the timer like any delayed reply.
  if (latency == 0 && outcome != Outcome::dropped) {
    respond(c);
    return;
  }
  c->state = ConnState::waiting;
  timeval tv{static_cast<time_t>(latency / 1000), static_cast<suseconds_t>(latency % 1000 * 1000)};
  evtimer_add(c->timer, &tv);
}

void handle_request(Conn* c, const RequestHead& h) {
  ServerState& s = *c->srv;
  const std::string& p = h.path;
  if (p == "/v1/chat/completions" || p == "/chat/completions") {
    if (h.method != "POST") return send_error(c, 405, "use POST", "invalid_request_error");
    return handle_chat(c, h);
  }
  std::shared_ptr<const MockConfig> cfg;
  s.update_stats([&](MockStats& st) {
    ++st.other_requests;
    cfg = s.config;
  });
  if (p == "/v1/models" || p == "/models") {
    if (h.method != "GET") return send_error(c, 405, "use GET", "invalid_request_error");
    return send_json(c, 200, render_models(cfg->models));
  }
  if (p == "/mock/stats") {
    bool arrivals = query_param(h.query, "arrivals").value_or("0") != "0";
    return send_json(c, 200, s.snapshot(arrivals).to_json(s.epoch, arrivals));
  }
  if (p == "/mock/reset") {
    if (h.method != "POST") return send_error(c, 405, "use POST", "invalid_request_error");
    s.update_stats([&](MockStats&) { s.reset_stats(); });
    return send_json(c, 200, R"({"reset":true})");
  }
  if (p == "/health") return send_json(c, 200, R"({"status":"ok"})");
  send_error(c, 404, fmt::format("mock: no route for {} {}", h.method, h.path),
             "invalid_request_error", "not_found");
}

// Replies queued beyond this stop the reading of pipelined requests until the client reads them.
constexpr size_t kMaxQueuedReplies = 1 << 20;

void note_buffered(Conn* c) {
  uint64_t held = evbuffer_get_length(bufferevent_get_input(c->bev)) +
                  evbuffer_get_length(bufferevent_get_output(c->bev));
  if (held > c->srv->max_buffered.load(std::memory_order_relaxed))
    c->srv->max_buffered.store(held, std::memory_order_relaxed);
}

void arm_deadline(Conn* c, int64_t ms) {
  timeval tv = to_timeval(std::chrono::milliseconds(ms));
  evtimer_add(c->deadline, &tv);
  c->deadline_armed = true;
}

// Takes what has come of the head; false until it is whole (or answered with an error).
bool receive_head(Conn* c, evbuffer* in) {
  ServerState& s = *c->srv;
  const size_t avail = evbuffer_get_length(in);
  // Only the bytes not searched yet, and the 3 before them: the end may straddle two reads.
  const size_t from = c->head_scanned > 3 ? c->head_scanned - 3 : 0;
  evbuffer_ptr start;
  evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET);
  evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, &start);
  if (end.pos < 0) {
    s.count_parsed(avail - from);
    c->head_scanned = avail;
    if (avail <= kMaxHeaderBytes) {
      // The header timeout counts from the first byte: a head that trickles in is still cut.
      if (!c->deadline_armed) arm_deadline(c, s.header_timeout_ms.load(std::memory_order_relaxed));
      return false;
    }
  }
  const size_t head_len = end.pos < 0 ? kMaxHeaderBytes + 1 : static_cast<size_t>(end.pos) + 4;
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(in, head_len));
  HeadResult hr = parse_request_head(std::string_view(data, head_len),
                                     s.max_body.load(std::memory_order_relaxed));
  s.count_parsed(head_len);
  if (hr.status == ParseStatus::error) {
    c->keep_alive = false;
    send_error(c, hr.error_status, hr.error, "invalid_request_error");
    return false;
  }
  evbuffer_drain(in, head_len);
  c->head = std::move(hr.head);
  c->keep_alive = c->head.keep_alive;
  c->http11 = c->head.http11;
  c->body.clear();
  if (c->head.chunked) {
    c->chunked = ChunkedDecoder(s.max_body.load(std::memory_order_relaxed));
  } else {
    c->body_left = c->head.content_length;
    // What a head announces is not allocated before it comes.
    c->body.reserve(std::min<size_t>(c->body_left, 1 << 20) + simdjson::SIMDJSON_PADDING);
  }
  c->receiving = Receiving::body;
  return true;
}

// Takes what has come of the body; true once it is whole. `moved` tells whether any came.
bool receive_body(Conn* c, evbuffer* in, bool& moved) {
  if (!c->head.chunked) {
    const size_t take = std::min(c->body_left, evbuffer_get_length(in));
    if (take > 0) {
      const size_t had = c->body.size();
      c->body.resize(had + take);
      evbuffer_remove(in, c->body.data() + had, take);
      c->body_left -= take;
      moved = true;
    }
    return c->body_left == 0;
  }
  // Decoded from the input's own segments, each byte once, and drained as it goes.
  ChunkedResult cr;
  while (cr.status == ParseStatus::incomplete) {
    evbuffer_iovec vec[8];
    const int n = std::min(evbuffer_peek(in, -1, nullptr, vec, 8), 8);
    size_t taken = 0;
    for (int i = 0; i < n && cr.status == ParseStatus::incomplete; ++i) {
      cr = c->chunked.feed(
          std::string_view(static_cast<const char*>(vec[i].iov_base), vec[i].iov_len), c->body);
      taken += cr.consumed;
    }
    if (taken == 0) break;
    evbuffer_drain(in, taken);
    c->srv->count_parsed(taken);
    moved = true;
  }
  if (cr.status == ParseStatus::error) {
    c->keep_alive = false;
    send_error(c, cr.error_status, cr.error, "invalid_request_error");
    return false;
  }
  return cr.status == ParseStatus::complete;
}

// Parses and answers every complete request in the input buffer while the connection is idle.
void process(Conn* c) {
  ServerState& s = *c->srv;
  evbuffer* in = bufferevent_get_input(c->bev);
  evbuffer* out = bufferevent_get_output(c->bev);
  while (c->state == ConnState::reading) {
    if (evbuffer_get_length(out) > kMaxQueuedReplies) {
      c->output_full = true;  // on_write goes on once they are sent
      return;
    }
    bool moved = false;
    if (c->receiving != Receiving::body) {
      if (evbuffer_get_length(in) == 0) return;
      if (c->receiving == Receiving::nothing) {
        c->receiving = Receiving::head;
        c->head_scanned = 0;
      }
      if (!receive_head(c, in)) break;  // incomplete, or answered with an error
      moved = true;
    }
    if (!receive_body(c, in, moved)) {
      if (c->state != ConnState::reading) break;  // answered with an error
      if (c->head.expect_continue && !c->continue_sent) {
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->continue_sent = true;
      }
      // The body timeout is for a pause: it starts again whenever bytes come.
      if (moved) arm_deadline(c, s.body_timeout_ms.load(std::memory_order_relaxed));
      return;
    }
    if (c->deadline_armed) {
      evtimer_del(c->deadline);
      c->deadline_armed = false;
    }
    c->receiving = Receiving::nothing;
    c->continue_sent = false;
    c->body.reserve(c->body.size() + simdjson::SIMDJSON_PADDING);
    handle_request(c, c->head);
    note_buffered(c);
  }
  if (c->state == ConnState::closing && evbuffer_get_length(out) == 0) close_conn(c);
}

void on_read(bufferevent*, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  note_buffered(c);
  if (c->state == ConnState::hung) {
    // Never answered, so nothing after it is either: dropped, still reading to see the close.
    evbuffer* in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  process(c);
}

void on_write(bufferevent* bev, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (c->state == ConnState::closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    return close_conn(c);
  if (c->output_full && c->state == ConnState::reading) {
    c->output_full = false;
    process(c);
  }
}

void on_event(bufferevent*, short events, void* arg) {
  if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) close_conn(static_cast<Conn*>(arg));
}

void on_timer(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (c->state == ConnState::waiting) {
    if (!respond(c)) return;
  } else if (c->state == ConnState::streaming) {
    advance_stream(c);
  } else {
    return;
  }
  if (c->state == ConnState::closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
    return close_conn(c);
  if (c->state == ConnState::reading) process(c);
}

// A request that did not come in time: 408 (it is not answered otherwise), then the close.
void on_deadline(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  c->deadline_armed = false;
  if (c->state != ConnState::reading || c->receiving == Receiving::nothing) return;
  const bool head = c->receiving == Receiving::head;
  const int64_t ms = head ? c->srv->header_timeout_ms.load(std::memory_order_relaxed)
                          : c->srv->body_timeout_ms.load(std::memory_order_relaxed);
  c->keep_alive = false;
  send_error(c, 408,
             head ? fmt::format("mock: the request head did not come whole within {} ms", ms)
                  : fmt::format("mock: no byte of the request body came for {} ms", ms),
             "invalid_request_error", "timeout");
}

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto* s = static_cast<ServerState*>(arg);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto* c = new Conn;
  c->srv = s;
  c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
  c->timer = evtimer_new(s->base, on_timer, c);
  c->deadline = evtimer_new(s->base, on_deadline, c);
  if (c->bev == nullptr || c->timer == nullptr || c->deadline == nullptr) {
    if (c->bev)
      bufferevent_free(c->bev);
    else
      evutil_closesocket(fd);
    if (c->timer) event_free(c->timer);
    if (c->deadline) event_free(c->deadline);
    delete c;
    return;
  }
  bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
  // Input stops being read at a head's worth (the client's sends block) while the connection
  // does not take requests: a reply pending or being sent, or replies queued. Bodies are moved
  // out as they come, so this never holds a request back.
  bufferevent_setwatermark(c->bev, EV_READ, 0, kMaxHeaderBytes + 1);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  s->conns.insert(c);
  s->update_stats([](MockStats& st) {
    ++st.connections_total;
    ++st.connections_open;
    st.max_connections_open = std::max(st.max_connections_open, st.connections_open);
  });
}

void on_accept_error(evconnlistener*, void*) {
  // EMFILE and the like: the connection stays in the backlog until a descriptor frees up.
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    std::fprintf(stderr, "flexllm mock: accept failed: %s (raise `ulimit -n`?)\n",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

}  // namespace

bool ServerState::take_token(const MockConfig& cfg, Clock::time_point now, double& wait_s) {
  const double cap = cfg.qps_burst > 0 ? cfg.qps_burst : std::max(1.0, cfg.max_qps);
  if (bucket_rate != cfg.max_qps) {  // first use, or the limit was changed by update()
    bucket_rate = cfg.max_qps;
    bucket_tokens = cap;
    bucket_at = now;
  }
  bucket_tokens = std::min(
      cap, bucket_tokens + std::chrono::duration<double>(now - bucket_at).count() * bucket_rate);
  bucket_at = now;
  if (bucket_tokens >= 1) {
    bucket_tokens -= 1;
    return true;
  }
  wait_s = (1 - bucket_tokens) / bucket_rate;
  return false;
}

void ServerState::write_log(uint64_t seq_no, Clock::time_point at, Outcome outcome, bool stream,
                            uint32_t latency_ms, std::string_view body) {
  std::string line = R"({"seq":)";
  append_uint(line, seq_no);
  line.append(
      fmt::format(R"(,"t":{:.6f},"outcome":")", std::chrono::duration<double>(at - epoch).count()));
  line.append(to_string(outcome));
  line.append(stream ? R"(","stream":true,"latency_ms":)" : R"(","stream":false,"latency_ms":)");
  append_uint(line, latency_ms);
  line.append(R"(,"body":)");
  if (outcome == Outcome::bad_request) {
    append_json_string(line, body);  // not JSON (or not a chat request): kept as text
  } else {
    line.append(body);
  }
  line.append("}\n");
  std::fwrite(line.data(), 1, line.size(), log);
}

void ServerState::reset_stats() {
  // What is open or in flight now stays counted, so the gauges stay true after a reset.
  uint64_t in_flight = stats.in_flight, open = stats.connections_open;
  stats = MockStats{};
  stats.in_flight = stats.max_in_flight = in_flight;
  stats.connections_open = stats.max_connections_open = open;
  arrivals.clear();
  bytes_parsed.store(0, std::memory_order_relaxed);
  max_buffered.store(0, std::memory_order_relaxed);
}

void ServerState::run() {
  // A write to a socket the client closed must fail with EPIPE, not kill the process.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  event_base_dispatch(base);
  // Stopped: refuse new connections and end the open ones now. The shutdown makes each client see
  // the close at once (libevent finishes closing a freed bufferevent from its loop, which is over).
  evconnlistener_free(listener);
  listener = nullptr;
  close_all();
  event_base_loop(base, EVLOOP_NONBLOCK);  // runs the bufferevents' deferred finalizers
}

void ServerState::close_all() {
  while (!conns.empty()) {
    Conn* c = *conns.begin();
    shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
    close_conn(c);
  }
  if (log) {
    std::fclose(log);
    log = nullptr;
  }
}

MockServer::MockServer(MockConfig config) : impl_(std::make_unique<ServerState>()) {
  config.validate();
  ServerState& s = *impl_;
  s.host = config.host;
  s.base = event_base_new();
  if (!s.base) throw std::runtime_error("flexllm mock: event_base_new failed");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port_str = std::to_string(config.port);
  if (int rc = getaddrinfo(config.host.c_str(), port_str.c_str(), &hints, &res); rc != 0) {
    event_base_free(s.base);
    throw std::system_error(
        std::make_error_code(std::errc::invalid_argument),
        "flexllm mock: cannot resolve host '" + config.host + "': " + gai_strerror(rc));
  }
  s.listener = evconnlistener_new_bind(
      s.base, on_accept, &s, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
      4096, res->ai_addr, static_cast<int>(res->ai_addrlen));
  freeaddrinfo(res);
  if (!s.listener) {
    int err = errno;
    event_base_free(s.base);
    throw std::system_error(
        err, std::generic_category(),
        fmt::format("flexllm mock: cannot listen on {}:{}", config.host, config.port));
  }
  evconnlistener_set_error_cb(s.listener, on_accept_error);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(evconnlistener_get_fd(s.listener), reinterpret_cast<sockaddr*>(&addr), &len);
  s.port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);

  if (!config.log_file.empty()) {
    s.log = std::fopen(config.log_file.c_str(), "a");
    if (!s.log) {
      int err = errno;
      evconnlistener_free(s.listener);
      event_base_free(s.base);
      throw std::system_error(err, std::generic_category(),
                              "flexllm mock: cannot open log file " + config.log_file);
    }
    s.log_flush = event_new(
        s.base, -1, EV_PERSIST,
        [](evutil_socket_t, short, void* f) { std::fflush(static_cast<std::FILE*>(f)); }, s.log);
    timeval second{1, 0};
    event_add(s.log_flush, &second);
  }

  s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  s.wake = event_new(
      s.base, s.wake_fd, EV_READ | EV_PERSIST,
      [](evutil_socket_t fd, short, void* b) {
        uint64_t v;
        if (read(fd, &v, sizeof v) < 0) { /* nothing to drain */
        }
        event_base_loopbreak(static_cast<event_base*>(b));
      },
      s.base);
  event_add(s.wake, nullptr);
  s.set_bounds(config);
  s.config = std::make_shared<const MockConfig>(std::move(config));
  s.thread = std::thread([&s] { s.run(); });
}

MockServer::~MockServer() {
  stop();
  ServerState& s = *impl_;
  if (s.log_flush) event_free(s.log_flush);
  event_free(s.wake);
  close(s.wake_fd);
  event_base_free(s.base);
}

void MockServer::stop() {
  std::call_once(impl_->stop_once, [this] {
    uint64_t one = 1;
    if (write(impl_->wake_fd, &one, sizeof one) < 0) { /* the loop still sees the flag */
    }
    impl_->thread.join();
  });
}

uint16_t MockServer::port() const {
  return impl_->port;
}

std::string MockServer::base_url() const {
  const std::string& h = impl_->host;
  bool v6 = h.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/v1", v6 ? "[" : "", h, v6 ? "]" : "", impl_->port);
}

MockStats ServerState::snapshot(bool with_arrivals) const {
  std::lock_guard lock(mu);
  MockStats st = stats;
  st.bytes_parsed = bytes_parsed.load(std::memory_order_relaxed);
  st.max_buffered_bytes = max_buffered.load(std::memory_order_relaxed);
  if (with_arrivals) st.arrivals.assign(arrivals.begin(), arrivals.end());
  return st;
}

MockStats MockServer::stats(bool with_arrivals) const {
  return impl_->snapshot(with_arrivals);
}

void MockServer::reset_stats() {
  impl_->update_stats([this](MockStats&) { impl_->reset_stats(); });
}

bool MockServer::wait_for(const std::function<bool(const MockStats&)>& done,
                          std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->changed.wait_for(lock, timeout, [&] { return done(impl_->stats); });
}

void MockServer::update(MockConfig config) {
  config.validate();
  std::lock_guard lock(impl_->mu);
  config.host = impl_->config->host;
  config.port = impl_->port;
  config.log_file = impl_->config->log_file;
  impl_->set_bounds(config);
  impl_->config = std::make_shared<const MockConfig>(std::move(config));
}

std::chrono::steady_clock::time_point MockServer::epoch() const {
  return impl_->epoch;
}

}  // namespace flexllm::mock
