// Incremental Server-Sent-Events decoder (the WHATWG "event stream" grammar), fed the bytes of an
// HTTP body as they arrive, in chunks cut anywhere.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace flexllm::detail {

// One dispatched event. The views are valid only during the callback: the decoder hands out
// views into the fed bytes when an event lies inside one chunk (the common case) and into its own
// buffer otherwise, so the hot path copies nothing.
struct SseEvent {
  std::string_view event;  // the `event:` field, "" when absent (the spec's "message")
  std::string_view data;   // the `data:` lines joined with "\n"
};

class SseDecoder {
 public:
  enum class Status {
    ok,
    stopped,    // the callback returned false; the rest of the stream is ignored
    too_large,  // an event's data exceeded the cap (a line: "data: " + the cap); stream unusable
  };

  static constexpr size_t kDefaultMaxEventBytes = size_t{16} << 20;

  explicit SseDecoder(size_t max_event_bytes = kDefaultMaxEventBytes) noexcept
      : max_event_bytes_(max_event_bytes) {}

  // Decodes `bytes` and calls `on_event(const SseEvent&)` for every event completed by a blank
  // line. The callback may return bool (false stops decoding) or void. Once stopped or failed,
  // the decoder ignores further input and returns the same status.
  template <class F>
  Status feed(std::string_view bytes, F&& on_event) {
    using Fn = std::remove_reference_t<F>;
    void* ctx = const_cast<void*>(static_cast<const void*>(std::addressof(on_event)));
    return feed_impl(bytes, &invoke<Fn>, ctx);
  }

  // True when bytes of an undispatched event are pending: the body ended mid-event.
  bool pending() const noexcept { return !line_.empty() || has_data_ || !event_.empty(); }
  Status status() const noexcept { return status_; }
  const std::string& last_event_id() const noexcept { return last_event_id_; }
  // The server's `retry:` reconnection time in milliseconds, -1 when it sent none.
  long long retry_ms() const noexcept { return retry_ms_; }
  size_t max_event_bytes() const noexcept { return max_event_bytes_; }

 private:
  using Sink = bool (*)(void*, const SseEvent&);

  template <class Fn>
  static bool invoke(void* ctx, const SseEvent& ev) {
    Fn& f = *static_cast<Fn*>(ctx);
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, const SseEvent&>>) {
      f(ev);
      return true;
    } else {
      return static_cast<bool>(f(ev));
    }
  }

  Status feed_impl(std::string_view bytes, Sink sink, void* ctx);
  // Handles one complete line (without its terminator). `in_input`: the line points into the
  // caller's bytes (so data can be passed on as a view until the chunk ends). Returns false to
  // stop (callback said so, or the size cap).
  bool on_line(std::string_view line, bool in_input, Sink sink, void* ctx);
  bool append_data(std::string_view value, bool in_input);
  // The data of the current event moves from the caller's bytes into data_ (the chunk ends).
  void own_data();

  size_t max_event_bytes_;
  Status status_ = Status::ok;
  std::string line_;            // an incomplete line carried over from the previous chunk
  std::string data_;            // the data of the current event when owned
  std::string event_;           // the current event's type
  std::string_view data_view_;  // the data when it still lies in the caller's chunk
  bool data_in_view_ = false;
  bool has_data_ = false;     // a data field was seen for the current event
  bool skip_lf_ = false;      // the previous chunk ended with CR: a leading LF completes a CRLF
  unsigned bom_matched_ = 0;  // bytes of a leading UTF-8 BOM matched so far (3 = done)
  std::string last_event_id_;
  long long retry_ms_ = -1;
};

}  // namespace flexllm::detail
