// The response cache's part in a call, shared by LLMClient and LLMClientPool: a hit or a joined
// identical request answers at once; otherwise the call leads (or, with skip_cache/return_raw,
// only stores its answer) and the engine lands its outcome in the cache.
#pragma once

#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <string_view>

#include "cache/cache_front.hpp"
#include "client/stream_channel.hpp"
#include "engine/policy.hpp"

namespace flexllm::detail {

inline std::exception_ptr to_exception(const Error& error) {
  try {
    error.rethrow();
  } catch (...) {
    return std::current_exception();
  }
}

// skip_cache asks for a fresh answer, return_raw for the reply the cache does not keep: both go
// upstream, and their answer refreshes the entry.
inline bool reads_cache(const RequestOptions& options) {
  return !options.skip_cache && !options.return_raw;
}

// A non-streamed call: the future of a hit or of the identical request in flight it joined, or
// nullopt when it must be sent (`use` then says how its outcome goes to the cache).
inline std::optional<std::future<ChatResult>> answer_from_cache(CacheTicket& use,
                                                                const RequestOptions& options,
                                                                std::string_view endpoint,
                                                                Clock::time_point start) {
  if (!use.cache || !reads_cache(options)) return std::nullopt;
  auto deliver = [endpoint, start](ChatResult r) {
    r.endpoint = endpoint;
    r.latency = Clock::now() - start;
    return r;
  };
  if (auto hit = use.cache->get(use.key)) {
    std::promise<ChatResult> done;
    done.set_value(deliver(std::move(*hit)));
    return done.get_future();
  }
  auto waiting = std::make_shared<std::promise<ChatResult>>();
  auto future = waiting->get_future();
  if (use.cache->join(use.key, [waiting, deliver](const ChatResult* r, const Error* e) {
        if (r) {
          waiting->set_value(deliver(*r));
        } else {
          waiting->set_exception(to_exception(*e));
        }
      }))
    return future;
  use.lead = true;
  return std::nullopt;
}

// A streamed call: true when a hit was replayed into `channel` (streams do not coalesce: each
// caller wants its tokens as they come).
inline bool replay_from_cache(const CacheTicket& use, const RequestOptions& options,
                              std::string_view endpoint, Clock::time_point start,
                              StreamChannel& channel) {
  if (!use.cache || !reads_cache(options)) return false;
  auto hit = use.cache->get(use.key);
  if (!hit) return false;
  hit->endpoint = endpoint;
  hit->latency = Clock::now() - start;
  std::vector<StreamEvent> events = replay_events(*hit);
  channel.push(events);
  channel.finish(std::move(*hit));
  return true;
}

}  // namespace flexllm::detail
