// What a batch runs on: one client's engine, or a pool of them. The runner decides what to send
// (checkpoint, cache, order); the target builds requests and carries them, and hands each outcome
// back through the inbox.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "batch/journal.hpp"
#include "cache/cache_front.hpp"
#include "engine/policy.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/types.hpp"

namespace flexllm::detail {

class ClientCore;

// A finished request, from the I/O thread.
struct BatchOutcome {
  size_t index = 0;
  RecordKey key{};
  // The input its record keeps: `input`, or when that is empty the bytes [input_at, +input_len)
  // of the request body (handed back with the outcome: no copy of the messages is made).
  std::string input;
  std::string body;
  uint32_t input_at = 0, input_len = 0;
  std::string_view record_input() const {
    return input.empty() ? std::string_view(body).substr(input_at, input_len)
                         : std::string_view(input);
  }
  json metadata;                  // from the source (null: BatchOptions::metadata_list's)
  Clock::time_point submitted{};  // a follower of an identical request: when it joined
  uint64_t seq = 0;               // the runner's dispatch order (records are written in it)
  std::optional<ChatResult> result;
  std::optional<Error> error;
  // A failure's attempts and time from submission to the outcome (a result carries its own).
  int attempts = 0;
  std::chrono::duration<double> latency{};
};

// Where finished requests land, from the I/O thread. Shared with the jobs so that a job handing
// over its outcome never touches a runner that has already gone.
struct BatchInbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<BatchOutcome> completed;
  void put(BatchOutcome outcome);
  // Set by the runner, read by the requests on the loop thread (Job::stop_level()).
  std::atomic<int> stop_level{0};
  std::atomic<uint64_t> retries{0};  // retries scheduled so far, counted as they happen
};

class BatchTarget {
 public:
  virtual ~BatchTarget() = default;
  // Requests in flight at most, over every endpoint (the runner keeps twice this many in hand).
  virtual int concurrency() const = 0;
  // Throws InvalidRequestError for an input that cannot make a request.
  virtual void check_chat(const json& messages, const RequestOptions& options) const = 0;
  // The request whose body's hash is the record key (a pool: its first endpoint's, so that a
  // record does not depend on which endpoint answered).
  virtual std::pair<std::string, std::string> chat_request(const json& messages,
                                                           const RequestOptions& options) const = 0;
  // The messages inside a body chat_request() built ("" when the dialect rewrites them).
  virtual std::string_view embedded_messages(std::string_view body) const = 0;
  virtual CacheFront* cache() = 0;
  virtual CacheKey cache_key(const json& messages, const RequestOptions& options) const = 0;
  virtual std::string_view endpoint_name() const = 0;  // what cached items say answered
  virtual double current_rate() const = 0;
  // Lines the progress display adds to its final summary ("" = none): a pool's per endpoint.
  virtual std::string summary_lines() const { return {}; }
  // Sends `request` (chat_request()'s) for `messages`; the outcome reaches `inbox` as `seed`
  // completed.
  virtual void send(std::pair<std::string, std::string> request, const json& messages,
                    const RequestOptions& options, BatchOutcome seed,
                    std::shared_ptr<BatchInbox> inbox, CacheTicket ticket) = 0;
  // Ends the requests sent with an inbox whose stop_level asks for it (any thread).
  virtual void sweep() = 0;
};

std::unique_ptr<BatchTarget> client_target(ClientCore& core);

}  // namespace flexllm::detail
