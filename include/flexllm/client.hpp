// LLMClient: one endpoint, any provider; single, async and streaming calls with rate control,
// retries and typed errors.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flexllm/batch.hpp"
#include "flexllm/cache.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/runtime.hpp"
#include "flexllm/stream.hpp"
#include "flexllm/types.hpp"

namespace flexllm {

// How an OpenAI-compatible server is told to think. `automatic` picks by host:
// api.openai.com, ollama (:11434) -> reasoning_effort; dashscope, siliconflow -> enable_thinking;
// deepseek, bigmodel, volces -> thinking_object; anything else -> chat_template_kwargs.
enum class ThinkingStyle {
  automatic,
  reasoning_effort,      // "reasoning_effort": level, or "none" to switch off
  chat_template_kwargs,  // "chat_template_kwargs": {"enable_thinking": bool} (vLLM, SGLang)
  enable_thinking,       // "enable_thinking": bool (DashScope, SiliconFlow)
  thinking_object,       // "thinking": {"type": "enabled"|"disabled"} (DeepSeek, Zhipu, Volcengine)
};

const char* to_string(ThinkingStyle style) noexcept;

// Which HTTP implementation carries a client's requests. `automatic`: the native transports for
// endpoints reached without a proxy — HTTP/1.1 keep-alive for http://, TLS + HTTP/2 for https://
// (a server answering with HTTP/1.1 only is handed to libcurl) — and libcurl for proxies.
// `native` insists on the native transports; `curl` uses libcurl for everything.
enum class Transport { automatic, curl, native };

struct ClientConfig {
  std::string base_url{};  // e.g. "https://api.openai.com/v1"
  std::string api_key{};
  std::string model{};
  Provider provider = Provider::automatic;
  int concurrency_limit = 10;       // requests in flight at most
  std::optional<double> max_qps{};  // requests/s; default unlimited (openai), 60 (gemini, claude)
  std::chrono::milliseconds timeout =
      std::chrono::seconds(120);  // per attempt (streams: to the first byte)
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
  // Longest time inside a stream without a data event (keep-alive comments do not count).
  std::chrono::milliseconds stream_idle_timeout = std::chrono::seconds(60);
  // Longest time a stream may take in all, from its request to its end; unset: no limit.
  std::optional<std::chrono::milliseconds> stream_timeout{};
  int retry_times = 3;  // retries after the first attempt
  std::chrono::milliseconds retry_delay =
      std::chrono::seconds(1);  // base of the exponential backoff
  std::chrono::milliseconds max_retry_delay =
      std::chrono::seconds(60);  // cap; longer server hints fail at once
  bool adaptive = false;         // halve the rate on 429, grow it back ×1.1 per 10 successes
  double min_qps = 1;            // adaptive mode's floor
  // nullopt: HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment; "": no proxy; else its URL.
  std::optional<std::string> proxy{};
  ThinkingStyle thinking_style = ThinkingStyle::automatic;
  std::map<std::string, std::string> headers{};  // extra HTTP headers on every request
  // TLS: verify the server's certificate chain and name (against the system's CAs, or those of
  // SSL_CERT_FILE / SSL_CERT_DIR, plus `ca_cert`); present a client certificate when a gateway
  // asks for one (mTLS).
  bool verify_tls = true;
  std::string ca_cert{};      // PEM file of extra CAs to trust (e.g. a company's own)
  std::string client_cert{};  // PEM certificate (chain) for mTLS
  std::string client_key{};   // its private key (PEM); "" = in client_cert
  Transport transport = Transport::automatic;
  // Response cache: off by default; ResponseCacheConfig::ipc() / local() / redis(url) turn it on.
  ResponseCacheConfig cache{};
  std::shared_ptr<Runtime> runtime{};  // the process-wide runtime when null

  // Throws InvalidRequestError naming the offending field.
  void validate() const;
};

namespace detail {
class ClientCore;
class BatchTarget;
}  // namespace detail

// What LLMClient and LLMClientPool both offer: code written against ChatClient& takes either.
class ChatClient {
 public:
  virtual ~ChatClient() = default;

  // Blocking call; throws the typed flexllm::Error of the failure after the retries.
  ChatResult chat_completions(const json& messages, const RequestOptions& options = {});
  // The same without blocking; the future holds the result or the typed error.
  virtual std::future<ChatResult> chat_completions_async(const json& messages,
                                                         const RequestOptions& options = {}) = 0;
  // Token stream as a range of events (see ChatStream).
  virtual ChatStream chat_completions_stream(const json& messages,
                                             const RequestOptions& options = {}) = 0;
  // Token stream with a callback, run on the calling thread for each event; returns the result.
  ChatResult chat_completions_stream(const json& messages,
                                     const std::function<void(const StreamEvent&)>& on_event,
                                     const RequestOptions& options = {});
  // Runs every request within the limits and returns items aligned with the input (items[i] is
  // messages_list[i]). Per-item failures never throw; with an output_file the run is
  // checkpointed and a rerun resumes. Throws InvalidRequestError before any request for a
  // metadata_list of the wrong length, and CheckpointError for an output file that cannot be
  // used (before any request: locked, not a checkpoint, another job's) or written (docs/
  // checkpoint.md).
  BatchResult chat_completions_batch(const std::vector<json>& messages_list,
                                     const BatchOptions& options = {});
  // The same over a lazy source (e.g. jsonl_messages(path)): input-aligned items without the
  // inputs ever being held in memory. metadata_list, when given, should have one entry per input
  // the source yields (a warning otherwise); a stop request leaves the rest of the source unread.
  BatchResult chat_completions_batch(MessageSource source, const BatchOptions& options = {});
  // The same over a lazy source, yielding items as they complete (see BatchIterator).
  BatchIterator iter_chat_completions_batch(MessageSource source, BatchOptions options = {});
  // The response cache: stats() and clear() (a disabled cache counts nothing).
  virtual ResponseCache& cache() = 0;
  // Cancels queued and in-flight requests (they fail with CancelledError) and waits for them.
  // Idempotent; the destructor calls it.
  virtual void close() = 0;

 protected:
  // What a batch runs on (BatchOptions::distribute: a pool's shared queue).
  virtual std::unique_ptr<detail::BatchTarget> batch_target(bool distribute) = 0;
  // Blocking calls refuse to run on the I/O thread (a callback): they would wait for themselves.
  virtual bool on_io_thread() const = 0;
  void refuse_on_io_thread() const;  // throws std::logic_error there
};

class LLMClient : public ChatClient {
 public:
  explicit LLMClient(ClientConfig config);
  ~LLMClient() override;  // close()
  LLMClient(LLMClient&&) noexcept;
  LLMClient& operator=(LLMClient&&) noexcept;

  using ChatClient::chat_completions_stream;
  std::future<ChatResult> chat_completions_async(const json& messages,
                                                 const RequestOptions& options = {}) override;
  ChatStream chat_completions_stream(const json& messages,
                                     const RequestOptions& options = {}) override;
  // Model ids the endpoint offers.
  std::vector<std::string> model_list();
  ResponseCache& cache() override;

  Provider provider() const;
  const ClientConfig& config() const;
  // The rate cap in force (requests/s): max_qps, or adaptive mode's current rate; infinity when
  // unlimited.
  double current_rate() const;
  void close() override;

  detail::ClientCore& core();  // for benchmarks and tests that look inside

 protected:
  std::unique_ptr<detail::BatchTarget> batch_target(bool distribute) override;
  bool on_io_thread() const override;

 private:
  std::unique_ptr<detail::ClientCore> core_;
};

// The OpenAI-compatible client (provider forced to openai).
class OpenAIClient : public LLMClient {
 public:
  explicit OpenAIClient(ClientConfig config);
};

// The value of an environment variable, or "" when unset.
std::string env(const char* name);

}  // namespace flexllm
