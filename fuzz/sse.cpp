// The SSE decoder: the same events, status, last id and retry whether the body arrives whole, one
// byte at a time or in random pieces, with the default size cap and with a small one; a callback
// that stops sees a prefix of the events and nothing after; no event over the cap.
#include "transport/sse.hpp"
#include "fuzz.hpp"

namespace flexllm::fuzz {
namespace {

using detail::SseDecoder;
using detail::SseEvent;
using Status = SseDecoder::Status;

struct Outcome {
  std::vector<std::pair<std::string, std::string>> events;
  Status status = Status::ok;
  bool pending = false;
  std::string last_event_id;
  long long retry_ms = -1;
  bool operator==(const Outcome&) const = default;
};

Outcome decode(std::string_view input, const std::vector<size_t>& cuts, size_t cap,
               size_t stop_after_events) {
  SseDecoder decoder(cap);
  Outcome out;
  size_t at = 0;
  for (size_t cut : cuts) {
    bool called_after_end = false;
    const Status before = decoder.status();
    const Status status = decoder.feed(input.substr(at, cut - at), [&](const SseEvent& ev) {
      if (before != Status::ok) called_after_end = true;
      FLEXLLM_FUZZ_CHECK(ev.data.size() <= cap, "an event of {} bytes past the cap of {}",
                         ev.data.size(), cap);
      FLEXLLM_FUZZ_CHECK(ev.event.find_first_of("\r\n") == std::string_view::npos,
                         "an event type with a line break: {:?}", ev.event);
      out.events.emplace_back(ev.event, ev.data);
      return out.events.size() < stop_after_events;
    });
    FLEXLLM_FUZZ_CHECK(!called_after_end, "an event after the stream stopped or failed");
    FLEXLLM_FUZZ_CHECK(status == decoder.status(), "feed() returned {} but status() is {}",
                       static_cast<int>(status), static_cast<int>(decoder.status()));
    FLEXLLM_FUZZ_CHECK(before == Status::ok || status == before, "status changed from {} to {}",
                       static_cast<int>(before), static_cast<int>(status));
    at = cut;
  }
  out.status = decoder.status();
  out.pending = out.status == Status::ok && decoder.pending();
  out.last_event_id = decoder.last_event_id();
  out.retry_ms = decoder.retry_ms();
  FLEXLLM_FUZZ_CHECK(out.retry_ms >= -1, "retry {}", out.retry_ms);
  return out;
}

void expect_same(const Outcome& a, const Outcome& b, const char* how, size_t cap) {
  size_t first_diff = 0;
  while (first_diff < a.events.size() && first_diff < b.events.size() &&
         a.events[first_diff] == b.events[first_diff])
    ++first_diff;
  FLEXLLM_FUZZ_CHECK(a == b,
                     "cap {}: whole/{}: {}/{} events (first difference at {}), status {}/{}, "
                     "pending {}/{}, last id {:?}/{:?}, retry {}/{}",
                     cap, how, a.events.size(), b.events.size(), first_diff,
                     static_cast<int>(a.status), static_cast<int>(b.status), a.pending, b.pending,
                     a.last_event_id, b.last_event_id, a.retry_ms, b.retry_ms);
}

}  // namespace

void sse(std::string_view input) {
  const std::vector<size_t> whole_cut{input.size()};
  for (size_t cap : {SseDecoder::kDefaultMaxEventBytes, size_t{16} + input_hash(input) % 48}) {
    const Outcome whole = decode(input, whole_cut, cap, SIZE_MAX);
    expect_same(whole, decode(input, bytewise_cuts(input.size()), cap, SIZE_MAX), "bytewise", cap);
    expect_same(whole, decode(input, cuts_for(input, 64), cap, SIZE_MAX), "pieces", cap);
    if (whole.events.empty()) continue;
    // Stopping after event k: exactly the first k events, then stopped.
    const size_t k = 1 + input_hash(input) % whole.events.size();
    const Outcome stopped = decode(input, cuts_for(input, 16), cap, k);
    FLEXLLM_FUZZ_CHECK(
        stopped.events.size() == k && stopped.status == Status::stopped &&
            std::equal(stopped.events.begin(), stopped.events.end(), whole.events.begin()),
        "stopping after {} of {} events: {} events, status {}", k, whole.events.size(),
        stopped.events.size(), static_cast<int>(stopped.status));
  }
}

}  // namespace flexllm::fuzz
