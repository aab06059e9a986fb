#include "engine/client_core.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "cache/cache_key.hpp"
#include "client/stream_channel.hpp"
#include "core/intern.hpp"
#include "core/text.hpp"
#include "flexllm/version.hpp"
#include "transport/native.hpp"

namespace flexllm::detail {
namespace {

// The most a non-streamed reply (or an error body) may have: it is kept whole in memory.
constexpr uint64_t kMaxReplyBytes = uint64_t{64} << 20;
// The most a stream may send in all: it is decoded as it comes, but a server that never stops
// would otherwise keep a request (and its connection) forever.
constexpr uint64_t kMaxStreamBytes = uint64_t{256} << 20;

bool iequals_prefix(std::string_view line, std::string_view lower_name) {
  if (line.size() <= lower_name.size() || line[lower_name.size()] != ':') return false;
  for (size_t i = 0; i < lower_name.size(); ++i) {
    char c = line[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower_name[i]) return false;
  }
  return true;
}

std::string seconds_text(std::chrono::milliseconds ms) {
  return fmt::format("{:g} s", static_cast<double>(ms.count()) / 1000.0);
}

constexpr const char* kUserAgent = "flexllm/" FLEXLLM_VERSION_STRING;

// The native transports carry what goes without a proxy (HTTP/1.1 for http://, TLS + HTTP/2 for
// https://); curl does the rest.
bool use_native(const ClientConfig& c, std::string_view base_url) {
  if (c.transport != Transport::automatic) return c.transport == Transport::native;
  const bool https = base_url.starts_with("https://");
  if (!https && !base_url.starts_with("http://")) return false;
  if (c.proxy) return c.proxy->empty();
  const char* const http_vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};
  const char* const https_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  for (const char* var : https ? https_vars : http_vars) {
    const char* v = std::getenv(var);
    if (v && *v) return false;  // curl applies the proxy (and NO_PROXY)
  }
  return true;
}

// The system's hashed CA directory, as OpenSSL finds it (SSL_CERT_DIR overrides it).
const std::string& system_ca_dir() {
  static const std::string dir = [] {
    const char* env = std::getenv(X509_get_default_cert_dir_env());
    return std::string(env && *env ? env : X509_get_default_cert_dir());
  }();
  return dir;
}

// "Name: value" lines as HTTP/2 headers (lowercase names).
void add_h2_header(std::vector<H2Header>& out, std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return;
  std::string name(line.substr(0, colon));
  for (char& c : name)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  if (name.empty() || value.empty()) return;  // e.g. "Expect:", which only curl needs
  out.push_back({std::move(name), std::string(value)});
}

std::optional<double> effective_max_qps(const ClientConfig& c, Provider provider) {
  if (c.max_qps) return c.max_qps;
  if (provider == Provider::gemini || provider == Provider::claude) return 60.0;
  return std::nullopt;
}

Provider resolve_provider(const ClientConfig& c) {
  return c.provider == Provider::automatic ? detect_provider(c.base_url) : c.provider;
}

}  // namespace

Job::Job(Mode m, std::string u, std::string b) : mode(m), url(std::move(u)), body(std::move(b)) {}

bool Job::on_data(std::string_view bytes) {
  if (mode == Mode::stream && status >= 200 && status < 300) {
    stream_bytes_ += bytes.size();
    if (stream_bytes_ > kMaxStreamBytes) {
      abort_error_ = Error(ErrorKind::parse,
                           fmt::format("stream from {} went past {} MiB", core_->endpoint_name(),
                                       kMaxStreamBytes >> 20),
                           std::string(core_->endpoint_name()));
      return false;
    }
    thread_local std::vector<StreamEvent> events;
    events.clear();
    const uint64_t seen = decoder_->data_events();
    if (auto error = decoder_->feed(bytes, events)) {
      abort_error_ = std::move(error);
      return false;
    }
    // Only data events hold the stream open (stream_idle_timeout); the idle clock starts with
    // the first byte of the body.
    if (!got_data_ || decoder_->data_events() != seen) last_data_ = Clock::now();
    if (!got_data_) {
      got_data_ = true;
      core_->watch_attempt(this);  // the idle deadline may come before the first byte's
    }
    if (events.empty()) return true;
    events_delivered_ = true;
    if (!deliver(events)) {
      abort_error_ = Error(ErrorKind::cancelled, "stream abandoned by its consumer",
                           std::string(core_->endpoint_name()));
      return false;
    }
    return true;
  }
  got_data_ = true;
  if (response_.size() + bytes.size() > kMaxReplyBytes) {
    abort_error_ = Error(ErrorKind::parse,
                         fmt::format("reply from {} is larger than {} MiB", core_->endpoint_name(),
                                     kMaxReplyBytes >> 20),
                         std::string(core_->endpoint_name()));
    return false;
  }
  response_.append(bytes);
  return true;
}

bool Job::on_header(std::string_view line) {
  if (line.starts_with("HTTP/")) {  // a new response (after 100 Continue or a redirect)
    hint_headers_.clear();
    if (decoder_) decoder_->content_type({});
    return true;
  }
  if (iequals_prefix(line, "content-length")) {
    // A body announced beyond what would be kept fails now, not after it has been read.
    const std::string_view value = trim(line.substr(sizeof "content-length"));
    const uint64_t cap = mode == Mode::stream ? kMaxStreamBytes : kMaxReplyBytes;
    uint64_t length = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (ec == std::errc() && end == value.data() + value.size() && length > cap) {
      abort_error_ = Error(ErrorKind::parse,
                           fmt::format("reply from {} announces {} bytes (Content-Length), more "
                                       "than the {} MiB a {} may have",
                                       core_->endpoint_name(), length, cap >> 20,
                                       mode == Mode::stream ? "stream" : "reply"),
                           std::string(core_->endpoint_name()));
      return false;
    }
    return true;
  }
  if (decoder_ && iequals_prefix(line, "content-type")) {
    decoder_->content_type(trim(line.substr(sizeof "content-type")));
    return true;
  }
  for (std::string_view name : {"retry-after", "retry-after-ms", "x-ratelimit-reset-requests",
                                "x-ratelimit-reset-tokens"}) {
    if (iequals_prefix(line, name)) {
      std::string_view value = line.substr(name.size() + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      hint_headers_.emplace_back(std::string(name), std::string(value));
      return true;
    }
  }
  return true;
}

void Job::on_complete(CURLcode code) {
  core_->complete_attempt(this, code);
}

ClientCore::ClientCore(ClientConfig config, std::shared_ptr<Runtime> runtime)
    : config_(std::move(config)),
      runtime_(runtime ? std::move(runtime) : Runtime::shared()),
      rate_(effective_max_qps(config_, resolve_provider(config_)), config_.adaptive,
            config_.min_qps),
      rate_snapshot_(rate_.rate()),
      jitter_(std::random_device{}() * 0x9E3779B97F4A7C15ull + 1) {
  endpoint_.base_url = config_.base_url;
  while (!endpoint_.base_url.empty() && endpoint_.base_url.back() == '/')
    endpoint_.base_url.pop_back();
  endpoint_name_ = intern(display_url(endpoint_.base_url));
  https_ = endpoint_.base_url.starts_with("https://");
  endpoint_.api_key = config_.api_key;
  endpoint_.model = config_.model;
  endpoint_.provider = resolve_provider(config_);
  endpoint_.thinking_style = config_.thinking_style == ThinkingStyle::automatic
                                 ? detect_thinking_style(endpoint_.base_url)
                                 : config_.thinking_style;
  adapter_ = &provider_adapter(endpoint_.provider);
  cache_ = std::make_unique<ResponseCache>(config_.cache);
  curl_slist* headers = nullptr;
  for (const std::string& h : adapter_->headers(endpoint_))
    headers = curl_slist_append(headers, h.c_str());
  for (const auto& [name, value] : config_.headers)
    headers = curl_slist_append(headers, (name + ": " + value).c_str());
  headers = curl_slist_append(headers, "Expect:");  // never wait for 100-continue
  headers_.reset(headers);
  if (https_ && use_native(config_, endpoint_.base_url)) {
    auto tls = TlsContext::get({.verify = config_.verify_tls,
                                .ca_file = config_.ca_cert,
                                .client_cert = config_.client_cert,
                                .client_key = config_.client_key});
    h2_ = resolve_h2_target(endpoint_.base_url, std::move(tls));
    if (!h2_ && config_.transport == Transport::native)
      throw InvalidRequestError(Error(ErrorKind::invalid_request,
                                      "ClientConfig.transport: native needs a base_url whose host "
                                      "resolves (got " +
                                          endpoint_.shown() + ")"));
    for (const std::string& h : adapter_->headers(endpoint_)) add_h2_header(h2_headers_, h);
    for (const auto& [name, value] : config_.headers)
      add_h2_header(h2_headers_, name + ": " + value);
    add_h2_header(h2_headers_, std::string("User-Agent: ") + kUserAgent);
  } else if (use_native(config_, endpoint_.base_url)) {
    native_ = resolve_http1_target(endpoint_.base_url);
    if (!native_ && config_.transport == Transport::native)
      throw InvalidRequestError(Error(ErrorKind::invalid_request,
                                      "ClientConfig.transport: native needs an http:// base_url "
                                      "whose host resolves (got " +
                                          endpoint_.shown() + ")"));
    if (native_)
      native_chat_head_ =
          native_head("POST", adapter_->chat_url(endpoint_, endpoint_.model, false));
  }
  // Here, on the creating thread (see curl_setup); an HTTPS endpoint may be handed to libcurl.
  if (!native_) curl_setup();
  // Raw Loop pointers in these tasks: a task that held the Runtime could drop its last reference
  // on the loop thread, which cannot join itself.
  long connections = config_.concurrency_limit;
  loop().post([loop = &loop(), connections] { loop->reserve_connections(connections); });
}

ClientCore::~ClientCore() {
  close();
  long connections = config_.concurrency_limit;
  loop().post([loop = &loop(), connections] { loop->reserve_connections(-connections); });
}

void ClientCore::check_chat(const json& messages, const RequestOptions& options) const {
  validate_messages(messages);
  if (options.model ? options.model->empty() : endpoint_.model.empty())
    throw InvalidRequestError(Error(ErrorKind::invalid_request,
                                    "no model: set ClientConfig::model or RequestOptions::model",
                                    std::string(endpoint_name_)));
}

std::pair<std::string, std::string> ClientCore::chat_request(const json& messages,
                                                             const RequestOptions& options,
                                                             bool stream, bool checked) const {
  if (!checked) check_chat(messages, options);
  const std::string& model = options.model ? *options.model : endpoint_.model;
  return {adapter_->chat_url(endpoint_, model, stream),
          adapter_->build_chat_body(endpoint_, model, messages, options, stream)};
}

CacheKey ClientCore::cache_key(const json& messages, const RequestOptions& options) const {
  return detail::cache_key(endpoint_.provider, endpoint_.base_url,
                           options.model ? *options.model : endpoint_.model, messages, options);
}

void ClientCore::submit(std::unique_ptr<Job> job) {
  hold();
  job->core_ = this;
  if (job->id == 0) job->id = new_id();
  job->submitted_ = Clock::now();
  Job* raw = job.release();
  // On the loop thread (a pool's next attempt) it goes in at once, without a round trip.
  if (loop().in_loop_thread()) return admit(raw);
  loop().post([this, raw] { admit(raw); });
}

void ClientCore::admit(Job* job) {
  if (closed()) {
    return finish(job, std::nullopt,
                  Error(ErrorKind::cancelled, "client closed", std::string(endpoint_name_)));
  }
  live_.insert(job);
  job->state_ = Job::State::queued;
  queue_.push_back(job);
  pump();
}

void ClientCore::pump() {
  if (closed()) return;  // close() is cancelling what is left
  while (in_flight_ < config_.concurrency_limit) {
    if (queue_.empty()) {
      // A free slot pulls from the feeder (a pool's shared queue), when the rate allows a start.
      if (!feeder_) return;
      const auto now = Clock::now();
      if (const auto at = rate_.next_start(now); at > now) {
        if (!pump_timer_) {
          pump_at_ = at;
          pump_timer_ = loop().add_timer(pump_at_, [this] {
            pump_timer_ = 0;
            pump();
          });
        }
        return;
      }
      std::unique_ptr<Job> fed = feeder_();
      if (!fed) return;
      hold();
      fed->core_ = this;
      if (fed->id == 0) fed->id = new_id();
      fed->submitted_ = Clock::now();
      Job* job = fed.release();
      live_.insert(job);
      job->state_ = Job::State::queued;
      queue_.push_back(job);
    }
    const auto now = Clock::now();
    const auto at = rate_.next_start(now);
    if (at > now) {
      if (pump_timer_ == 0 || at < pump_at_) {
        if (pump_timer_) loop().cancel_timer(pump_timer_);
        pump_at_ = at;
        pump_timer_ = loop().add_timer(at, [this] {
          pump_timer_ = 0;
          pump();
        });
      }
      return;
    }
    Job* job = queue_.front();
    queue_.pop_front();
    if (job->stop_level() > 0) {  // its batch stopped while it waited: it never starts
      finish(job, std::nullopt,
             Error(ErrorKind::cancelled, "not sent: the batch was stopped",
                   std::string(endpoint_name_)));
      continue;
    }
    rate_.on_start(now);
    ++in_flight_;
    start_attempt(job);
  }
}

void ClientCore::start_attempt(Job* job) {
  job->state_ = Job::State::running;
  ++job->attempts_;
  job->attempt_start_ = Clock::now();
  job->status = 0;
  job->error_buffer = job->curl_error_;
  job->got_data_ = false;
  job->stream_bytes_ = 0;
  job->response_.clear();
  job->hint_headers_.clear();
  job->abort_error_.reset();
  job->curl_error_[0] = '\0';
  if (job->mode == Job::Mode::stream) job->decoder_ = adapter_->make_stream_decoder(endpoint_);
  if (h2_ && !h2_http1_) return start_h2(job);
  if (native_) return start_native(job);

  CURL* e = loop().acquire_easy();
  job->easy = e;
  curl_easy_setopt(e, CURLOPT_URL, job->url.c_str());
  if (job->mode == Job::Mode::raw) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(job->body.size()));
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_.get());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  // Over TLS, ALPN settles HTTP/2 at the handshake: waiting for it lets requests share one
  // multiplexed connection. Over cleartext the answer would only come with the first reply, so
  // every request would queue behind it (a slow or hung first reply stalls them all): no wait.
  if (https_) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, job->curl_error_);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(config_.connect_timeout.count()));
  if (job->mode != Job::Mode::stream) {
    auto timeout = job->timeout.value_or(config_.timeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  }
  if (!config_.verify_tls) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.ca_cert.empty()) {
    // The file, and the system's CA directory besides it (as on the native path). Set as
    // options, not added in a callback: curl shares a connection only between transfers whose
    // trust settings are equal, which it cannot tell of what a callback adds.
    curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_cert.c_str());
    curl_easy_setopt(e, CURLOPT_CAPATH, system_ca_dir().c_str());
  }
  if (!config_.client_cert.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, config_.client_cert.c_str());
    curl_easy_setopt(
        e, CURLOPT_SSLKEY,
        config_.client_key.empty() ? config_.client_cert.c_str() : config_.client_key.c_str());
  }
  if (config_.proxy) curl_easy_setopt(e, CURLOPT_PROXY, config_.proxy->c_str());
  curl_easy_setopt(e, CURLOPT_USERAGENT, kUserAgent);
  if (job->mode == Job::Mode::stream) watch_attempt(job);
  loop().start(job);
}

void ClientCore::start_native(Job* job) {
  NativeRequest request;
  request.target = &*native_;
  if (job->mode == Job::Mode::raw) {
    job->native_head_ = native_head("GET", job->url);
    request.head = job->native_head_;
    request.has_body = false;
  } else {
    request.head = native_chat_head_;
    request.body = job->body;
  }
  request.connect_timeout = config_.connect_timeout;
  watch_attempt(job);  // the native transport has no total timeout of its own
  loop().start_native(job, request);
}

void ClientCore::start_h2(Job* job) {
  H2Request request;
  request.method = job->mode == Job::Mode::raw ? "GET" : "POST";
  request.path = url_request_target(job->url);
  request.headers = &h2_headers_;
  request.body = job->body;
  request.has_body = job->mode != Job::Mode::raw;
  request.connect_timeout = config_.connect_timeout;
  watch_attempt(job);  // the transport has no total timeout of its own
  loop().start_h2(job, *h2_, request);
}

std::string ClientCore::native_head(std::string_view method, std::string_view url) const {
  std::string head;
  head.append(method).append(" ").append(url_request_target(url)).append(" HTTP/1.1\r\nHost: ");
  head.append(native_->key).append("\r\nUser-Agent: ").append(kUserAgent).append("\r\n");
  for (const std::string& h : adapter_->headers(endpoint_)) head.append(h).append("\r\n");
  for (const auto& [name, value] : config_.headers)
    head.append(name).append(": ").append(value).append("\r\n");
  return head;
}

// A stream's first byte must come within `timeout`; after that no more than
// stream_idle_timeout may pass without a data event (docs/transport.md says which bytes count),
// and with stream_timeout set, the whole stream must be over within it. Native non-stream
// transfers get their per-attempt timeout here too (curl enforces it itself for the others).
std::pair<Clock::time_point, ClientCore::Limit> ClientCore::attempt_deadline(const Job& job) const {
  const auto timeout = job.timeout.value_or(config_.timeout);
  if (job.mode != Job::Mode::stream) return {job.attempt_start_ + timeout, Limit::timeout};
  std::pair<Clock::time_point, Limit> d =
      job.got_data_
          ? std::pair{job.last_data_ + config_.stream_idle_timeout, Limit::stream_idle_timeout}
          : std::pair{job.attempt_start_ + timeout, Limit::timeout};
  if (config_.stream_timeout && job.attempt_start_ + *config_.stream_timeout < d.first)
    d = {job.attempt_start_ + *config_.stream_timeout, Limit::stream_timeout};
  return d;
}

void ClientCore::watch_attempt(Job* job) {
  if (job->timer_) loop().cancel_timer(job->timer_);
  job->timer_ = loop().add_timer(attempt_deadline(*job).first, [this, job] {
    job->timer_ = 0;
    if (!job->running) return;
    const auto [deadline, limit] = attempt_deadline(*job);
    if (Clock::now() < deadline) return watch_attempt(job);
    const bool stream = job->mode == Job::Mode::stream;
    std::string what;
    switch (limit) {
      case Limit::timeout:
        what = fmt::format("no {} from {} within {} (timeout)", stream ? "reply" : "complete reply",
                           endpoint_name_, seconds_text(job->timeout.value_or(config_.timeout)));
        break;
      case Limit::stream_idle_timeout:
        what = fmt::format(
            "stream from {} was silent for {} (stream_idle_timeout; comments and keep-alives "
            "are not data)",
            endpoint_name_, seconds_text(config_.stream_idle_timeout));
        break;
      case Limit::stream_timeout:
        what = fmt::format("stream from {} did not end within {} (stream_timeout)", endpoint_name_,
                           seconds_text(*config_.stream_timeout));
        break;
    }
    job->abort_error_ = Error(ErrorKind::timeout, std::move(what), std::string(endpoint_name_), 0,
                              {}, /*retryable=*/true);
    loop().abort(job, CURLE_OPERATION_TIMEDOUT);
  });
}

void ClientCore::complete_attempt(Job* job, CURLcode code) {
  if (job->timer_) {
    loop().cancel_timer(job->timer_);
    job->timer_ = 0;
  }
  if (job->easy) {
    loop().release_easy(job->easy);
    job->easy = nullptr;
  }
  --in_flight_;
  if (job->use_curl) {
    // The server speaks HTTP/1.1 only: libcurl carries this endpoint from now on. The attempt
    // never reached the server, so it does not count.
    job->use_curl = false;
    h2_http1_ = true;
    --job->attempts_;
    job->state_ = Job::State::queued;
    queue_.push_front(job);
    return pump();
  }

  std::optional<Error> error;
  std::optional<ChatResult> result;
  const bool ok_status = job->status >= 200 && job->status < 300;
  auto finish_stream = [&] {
    auto outcome = job->decoder_->finish();
    if (auto* e = std::get_if<Error>(&outcome)) {
      error = std::move(*e);
      return;
    }
    result = std::move(std::get<ChatResult>(outcome));
    if (!job->decoder_->whole_reply()) return;
    // A plain JSON reply to a stream request: the stream shows it as the events it would have
    // had (all at once), then done.
    std::vector<StreamEvent> events = replay_events(*result);
    if (events.empty()) return;
    job->events_delivered_ = true;
    if (!job->deliver(events)) {
      result.reset();
      error.emplace(ErrorKind::cancelled, "stream abandoned by its consumer",
                    std::string(endpoint_name_));
    }
  };
  if (job->abort_error_) {
    error = std::move(job->abort_error_);
  } else if (code != CURLE_OK && job->mode == Job::Mode::stream && ok_status && job->got_data_ &&
             !job->decoder_->whole_reply()) {
    // The connection broke inside a stream: the decoder knows whether it had ended (a [DONE]
    // right before the cut) or was truncated.
    finish_stream();
  } else if (code != CURLE_OK) {
    error = transport_error(*job, code);
  } else if (!ok_status) {
    error = http_error(*job);
  } else if (job->mode == Job::Mode::raw) {
    result.emplace();  // the body itself is the outcome (finish hands it over)
  } else if (job->mode == Job::Mode::stream) {
    finish_stream();
  } else {
    result.emplace();
    if (auto e = adapter_->parse_chat_response(endpoint_, job->response_, *result)) {
      error = std::move(e);
      result.reset();
    }
  }
  if (result) {
    rate_.on_success();
    rate_snapshot_.store(rate_.rate(), std::memory_order_relaxed);
    finish(job, std::move(result), std::nullopt);
  } else {
    retry_or_fail(job, std::move(*error));
  }
  pump();
}

void ClientCore::retry_or_fail(Job* job, Error error) {
  const auto now = Clock::now();
  const int status = error.status();
  if (status == 429 || (status == 503 && error.retry_after())) {
    rate_.on_rate_limited(now, error.retry_after());
    rate_snapshot_.store(rate_.rate(), std::memory_order_relaxed);
  }
  const int retry_times = job->max_retries.value_or(config_.retry_times);
  const bool can_retry = error.retryable() && !closed() && job->attempts_ <= retry_times &&
                         !(job->mode == Job::Mode::stream && job->events_delivered_);
  if (!can_retry) return finish(job, std::nullopt, std::move(error));
  if (job->stop_level() > 0)  // a stopped batch sends nothing more: the rerun will
    return finish(job, std::nullopt,
                  Error(ErrorKind::cancelled,
                        fmt::format("not retried: the batch was stopped ({})", error.what()),
                        std::string(endpoint_name_)));

  std::chrono::milliseconds delay;
  if (auto hint = error.retry_after()) {
    if (*hint > config_.max_retry_delay) {
      Error limited(
          ErrorKind::rate_limited,
          fmt::format("{} (the server asks to wait {} before retrying, more than "
                      "max_retry_delay = {})",
                      error.what(), seconds_text(*hint), seconds_text(config_.max_retry_delay)),
          std::string(endpoint_name_), status, error.body(), false);
      limited.set_retry_after(hint);
      return finish(job, std::nullopt, std::move(limited));
    }
    // The hint plus a little jitter, so clients told the same moment do not return together.
    auto spread = std::min<int64_t>(hint->count() / 10, 1000) + 1;
    delay = *hint + std::chrono::milliseconds(static_cast<int64_t>(jitter_.next() % spread));
  } else {
    delay = backoff_delay(job->attempts_ - 1, config_.retry_delay, config_.max_retry_delay,
                          jitter_.next());
  }
  job->on_retry();
  job->state_ = Job::State::retry_wait;
  job->timer_ = loop().add_timer(now + delay, [this, job] {
    job->timer_ = 0;
    job->state_ = Job::State::queued;
    queue_.push_front(job);  // a retry goes before new work
    pump();
  });
}

void ClientCore::finish(Job* job, std::optional<ChatResult> result, std::optional<Error> error) {
  job->state_ = Job::State::done;
  live_.erase(job);
  if (result && job->mode != Job::Mode::raw) {
    result->latency = Clock::now() - job->submitted_;
    result->attempts = job->attempts_;
    result->endpoint = endpoint_name_;
    if (job->return_raw && job->mode == Job::Mode::chat) result->set_raw(std::move(job->response_));
  }
  // Outcomes are handed over at the end of the loop's turn, all together: a caller waiting on
  // many futures then wakes once per turn instead of once per reply.
  deliveries_.push_back({job, std::move(result), std::move(error)});
  if (deliveries_.size() == 1) loop().defer([this] { deliver(); });
}

void ClientCore::deliver() {
  std::vector<Delivery> batch;
  batch.swap(deliveries_);
  for (Delivery& d : batch) {
    Job* job = d.job;
    // The cache learns the outcome before the caller does: a caller that repeats the request at
    // once already finds it.
    job->cache.settle(d.result ? &*d.result : nullptr, d.error ? &*d.error : nullptr);
    if (d.result && job->mode == Job::Mode::raw) {
      job->succeed_raw(std::move(job->response_));
    } else if (d.result) {
      job->succeed(std::move(*d.result));
    } else {
      job->fail(std::move(*d.error));
    }
    delete job;
  }
  // One release for the whole batch, last: close() may return (and destroy this) right after.
  release(batch.size());
}

Error ClientCore::transport_error(const Job& job, CURLcode code) const {
  std::string detail = job.curl_error_[0] ? job.curl_error_ : curl_easy_strerror(code);
  ErrorKind kind = ErrorKind::connection;
  bool retryable = true;
  std::string what;
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      kind = ErrorKind::timeout;
      what = fmt::format("no complete reply from {} in time ({})", endpoint_name_, detail);
      break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      kind = ErrorKind::invalid_request;
      retryable = false;
      what = fmt::format("bad base_url {}: {}", endpoint_name_, detail);
      break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
      retryable = false;
      what = fmt::format("TLS failure talking to {}: {}", endpoint_name_, detail);
      break;
    case CURLE_GOT_NOTHING:
      what = fmt::format("{} closed the connection without a reply ({})", endpoint_name_, detail);
      break;
    default: what = fmt::format("request to {} failed: {}", endpoint_name_, detail);
  }
  return Error(kind, redact(std::move(what), endpoint_.api_key), std::string(endpoint_name_), 0, {},
               retryable);
}

Error ClientCore::http_error(const Job& job) const {
  const int status = static_cast<int>(job.status);
  // The server's own words when its body has them, else an excerpt of whatever it sent (an HTML
  // page from a proxy, plain text): bounded, without the key, on one line.
  std::string message = adapter_->error_message(job.response_);
  message = message.empty() ? excerpt(job.response_, 300, endpoint_.api_key)
                            : excerpt(message, 2048, endpoint_.api_key);
  message = message.empty() ? "(empty body)" : escape_controls(message);
  std::string what = fmt::format("HTTP {} from {}: {}", status, endpoint_name_, message);
  if (status == 400 && job.thinking_requested)
    what += fmt::format(
        " (thinking was sent as thinking_style={}; if the server rejects that field, set "
        "ClientConfig::thinking_style to the style it understands)",
        to_string(endpoint_.thinking_style));
  Error e(status == 429 ? ErrorKind::rate_limited : ErrorKind::http,
          redact(std::move(what), endpoint_.api_key), std::string(endpoint_name_), status,
          excerpt(job.response_, 4096, endpoint_.api_key), retryable_status(status));
  if (retryable_status(status)) e.set_retry_after(retry_hint(job.hint_headers_));
  return e;
}

void ClientCore::hold() {
  std::lock_guard lock(outstanding_mu_);
  ++outstanding_;
}

void ClientCore::release(uint64_t n) {
  std::lock_guard lock(outstanding_mu_);
  outstanding_ -= n;
  if (outstanding_ == 0) outstanding_cv_.notify_all();
}

void ClientCore::cancel(uint64_t job_id) {
  hold();
  loop().post([this, job_id] {
    auto it = std::find_if(live_.begin(), live_.end(), [&](Job* j) { return j->id == job_id; });
    if (it != live_.end()) cancel_job(*it, "request cancelled");
    release();
  });
}

void ClientCore::sweep_stopped() {
  hold();
  loop().post([this] {
    std::vector<Job*> stopped;
    for (Job* job : live_) {
      const int level = job->stop_level();
      if (level >= 2 || (level == 1 && job->state_ != Job::State::running)) stopped.push_back(job);
    }
    // Cancelling one may end others on the way (its slot frees, and the pump drops the stopped
    // jobs it finds queued): only those still live are cancelled here.
    for (Job* job : stopped)
      if (live_.count(job)) cancel_job(job, "not finished: the batch was stopped");
    release();
  });
}

void ClientCore::cancel_job(Job* job, const char* why) {
  Error cancelled(ErrorKind::cancelled, why, std::string(endpoint_name_));
  if (job->state_ == Job::State::running) {
    job->abort_error_ = std::move(cancelled);
    loop().abort(job, CURLE_ABORTED_BY_CALLBACK);
    return;
  }
  if (job->timer_) loop().cancel_timer(job->timer_);
  queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
  finish(job, std::nullopt, std::move(cancelled));
}

void ClientCore::cancel_all() {
  if (pump_timer_) {
    loop().cancel_timer(pump_timer_);
    pump_timer_ = 0;
  }
  std::vector<Job*> jobs(live_.begin(), live_.end());
  queue_.clear();  // first: cancel_job's queue search is then free
  for (Job* job : jobs) cancel_job(job, "client closed");
}

void ClientCore::close() {
  if (loop().in_loop_thread())
    throw std::logic_error("flexllm: a client cannot be closed from its I/O thread");
  if (!closed_.exchange(true)) {
    hold();
    loop().post([this] {
      cancel_all();
      release();
    });
  }
  std::unique_lock lock(outstanding_mu_);
  outstanding_cv_.wait(lock, [this] { return outstanding_ == 0; });
}

}  // namespace flexllm::detail
