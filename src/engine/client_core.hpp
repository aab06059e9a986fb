// The engine behind one client endpoint: admission (concurrency slots, rate controller), the
// request state machine (attempts, retries with backoff, stream timeouts), cancellation. Runs on
// the loop thread; submit() and close() are the only entry points from other threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cache/cache_front.hpp"
#include "engine/policy.hpp"
#include "flexllm/client.hpp"
#include "providers/provider.hpp"
#include "transport/h2.hpp"
#include "transport/loop.hpp"

namespace flexllm::detail {

class ClientCore;

// One logical request: its attempts, its reply buffers and where its outcome goes. Subclasses
// deliver the outcome (a promise, a stream channel, a batch queue).
class Job : public Transfer {
 public:
  enum class Mode { chat, stream, raw };
  enum class State { submitted, queued, running, retry_wait, done };

  Job(Mode mode, std::string url, std::string body);
  ~Job() override = default;

  // ---- outcome delivery: called once, on the loop thread ----
  virtual void succeed(ChatResult&& result) = 0;
  virtual void succeed_raw(std::string&& /*body*/) {}
  virtual void fail(Error&& error) = 0;
  // Stream events as they are decoded. Return false when nobody wants them any more.
  virtual bool deliver(std::vector<StreamEvent>& /*events*/) { return true; }
  // Whether whoever waits for this job has stopped wanting it (a stopped batch): 0 go on; 1 do
  // not start or retry it (a start or retry ends it as cancelled); 2 cancel it even while it runs
  // (at the next sweep_stopped()). Loop thread.
  virtual int stop_level() const { return 0; }
  // A retry of this job was scheduled (loop thread): batches count retries as they happen.
  virtual void on_retry() {}

  int attempts() const { return attempts_; }                  // HTTP attempts so far
  Clock::time_point submitted() const { return submitted_; }  // when submit() took it

  const Mode mode;
  const std::string url;
  // Serialised once, handed to the transport as is; moved out by the job's own outcome delivery
  // (a batch record takes its input text from it).
  std::string body;
  bool return_raw = false;
  bool thinking_requested = false;  // for the hint on a 400
  std::optional<std::chrono::milliseconds> timeout{};
  uint64_t id = 0;
  CacheTicket cache{};  // where the outcome goes in the response cache
  // Retries of this job on this endpoint instead of ClientConfig::retry_times (a pool retries
  // across endpoints itself and gives its attempts 0).
  std::optional<int> max_retries{};

 private:
  friend class ClientCore;
  bool on_data(std::string_view bytes) override;
  bool on_header(std::string_view line) override;
  void on_complete(CURLcode code) override;

  ClientCore* core_ = nullptr;
  State state_ = State::submitted;
  Clock::time_point submitted_{};
  Clock::time_point attempt_start_{};
  Clock::time_point last_data_{};  // a stream's last data event (or its first byte)
  uint64_t stream_bytes_ = 0;      // this attempt's stream body so far
  int attempts_ = 0;
  bool got_data_ = false;
  bool events_delivered_ = false;
  std::string response_;
  std::vector<std::pair<std::string, std::string>> hint_headers_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::string native_head_;  // request line + headers of a native non-chat request (model list)
  std::optional<Error> abort_error_;
  Loop::TimerId timer_ = 0;
  char curl_error_[CURL_ERROR_SIZE] = {};
};

class ClientCore {
 public:
  ClientCore(ClientConfig config, std::shared_ptr<Runtime> runtime);
  ~ClientCore();  // close()

  const ClientConfig& config() const { return config_; }
  const Endpoint& endpoint() const { return endpoint_; }
  const ProviderAdapter& adapter() const { return *adapter_; }
  Loop& loop() { return runtime_->loop(); }

  // From any thread: takes ownership and runs the job. After close() the job fails at once with
  // CancelledError.
  void submit(std::unique_ptr<Job> job);
  uint64_t new_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  // From any thread: aborts the job with that id if it is still live (a stream's consumer left).
  void cancel(uint64_t job_id);
  // From any thread: ends the jobs whose stop_level() asks for it (1: those queued or waiting to
  // retry; 2: those running too) as cancelled.
  void sweep_stopped();
  // Cancels everything queued, waiting or in flight, and waits until all of it has completed.
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // Where a free slot pulls work when this endpoint's own queue is empty (a pool's shared queue
  // for a distributed batch); returns nullptr when there is none. Loop thread only.
  using Feeder = std::function<std::unique_ptr<Job>()>;
  void set_feeder(Feeder feeder) { feeder_ = std::move(feeder); }
  // Loop thread: lets free slots take queued or fed work now (after the feeder has some).
  void poke() { pump(); }
  int in_flight() const { return in_flight_; }  // loop thread

  // Current rate cap in requests/s (infinity when unlimited); any thread.
  double current_rate() const { return rate_snapshot_.load(std::memory_order_relaxed); }

  // The response cache when ClientConfig::cache enables it, else nullptr.
  CacheFront* cache() { return cache_->enabled() ? &cache_->front() : nullptr; }
  ResponseCache& response_cache() { return *cache_; }
  // The cache key of a chat request (caller's thread): this endpoint, the effective model.
  CacheKey cache_key(const json& messages, const RequestOptions& options) const;
  // The base URL results carry (interned: never dangles).
  std::string_view endpoint_name() const { return endpoint_name_; }

  // Throws InvalidRequestError for messages or options that cannot make a request.
  void check_chat(const json& messages, const RequestOptions& options) const;
  // Builds a chat job's URL and body (caller's thread), after check_chat() unless `checked`.
  std::pair<std::string, std::string> chat_request(const json& messages,
                                                   const RequestOptions& options, bool stream,
                                                   bool checked = false) const;

 private:
  friend class Job;

  void admit(Job* job);
  void pump();
  void start_attempt(Job* job);
  void complete_attempt(Job* job, CURLcode code);
  void retry_or_fail(Job* job, Error error);
  void finish(Job* job, std::optional<ChatResult> result, std::optional<Error> error);
  void deliver();
  void watch_attempt(Job* job);
  enum class Limit { timeout, stream_idle_timeout, stream_timeout };
  // When the running attempt of `job` times out, and which setting says so.
  std::pair<Clock::time_point, Limit> attempt_deadline(const Job& job) const;
  void start_native(Job* job);
  void start_h2(Job* job);
  std::string native_head(std::string_view method, std::string_view url) const;
  Error transport_error(const Job& job, CURLcode code) const;
  Error http_error(const Job& job) const;
  void cancel_job(Job* job, const char* why);
  void cancel_all();
  // Work close() waits for: submitted jobs and tasks posted with `this`.
  void hold();
  void release(uint64_t n = 1);

  ClientConfig config_;
  std::shared_ptr<Runtime> runtime_;
  Endpoint endpoint_;
  // display_url(base_url), interned: what results and errors carry (never the user info).
  std::string_view endpoint_name_;
  const ProviderAdapter* adapter_;
  struct SlistFree {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  };
  std::unique_ptr<curl_slist, SlistFree> headers_;  // curl's request headers, built once
  bool https_ = false;
  std::optional<Http1Target> native_;  // set when requests go over the native transport
  std::string native_chat_head_;       // its request line and headers for chat requests
  std::optional<H2Target> h2_;         // set when https:// requests go over the native transport
  std::vector<H2Header> h2_headers_;   // their headers (besides pseudo-headers and length)
  bool h2_http1_ = false;  // the server answered ALPN with http/1.1: libcurl carries it (loop)
  std::unique_ptr<ResponseCache> cache_;

  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> next_id_{1};
  std::mutex outstanding_mu_;
  std::condition_variable outstanding_cv_;
  uint64_t outstanding_ = 0;  // submitted and not finished

  // Loop thread only.
  std::unordered_set<Job*> live_;
  std::deque<Job*> queue_;
  int in_flight_ = 0;
  RateController rate_;
  std::atomic<double> rate_snapshot_;  // rate_.rate(), readable from any thread
  Loop::TimerId pump_timer_ = 0;
  Clock::time_point pump_at_{};
  Jitter jitter_;
  struct Delivery {
    Job* job;
    std::optional<ChatResult> result;
    std::optional<Error> error;
  };
  std::vector<Delivery> deliveries_;  // finished this turn, handed over by deliver()
  Feeder feeder_;
};

}  // namespace flexllm::detail
