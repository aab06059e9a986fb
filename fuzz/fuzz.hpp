// The fuzz targets: one function per parser, fed any bytes. Each checks invariants (results equal
// whether the input arrives whole or cut into pieces, round trips, nothing read or reported past
// the input), not only that nothing crashes. The libFuzzer executables (fuzz/libfuzzer_main.cpp)
// and the regression test (tests/unit/fuzz_regressions_test.cpp) call the same functions.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace flexllm {
struct ChatResult;
}

namespace flexllm::fuzz {

void http1_response(std::string_view input);  // transport/http1: ResponseParser
void sse(std::string_view input);             // transport/sse: SseDecoder
void openai_reply(std::string_view input);    // providers/openai: replies, errors, models
void openai_stream(std::string_view input);   // providers/openai_stream: chunks, <think> split
void journal(std::string_view input);         // batch/journal: record lines, scan, round trip
void config(std::string_view input);          // apps/flexllm/config: parse, set-model round trip
void cache_value(std::string_view input);     // cache/cache_value: decode, round trips
void mock_request(std::string_view input);    // apps/mock/src/http: request head, chunked body

struct Target {
  const char* name;
  void (*run)(std::string_view);
};
// Every target, by the name its executable, seed and regression directories go by.
const std::vector<Target>& targets();

// A broken invariant. Under libFuzzer the process aborts at the check (a finding with its stack);
// elsewhere (the regression test) it throws, so a test names the input that broke it.
struct Violation : std::logic_error {
  using std::logic_error::logic_error;
};
[[noreturn]] void violation(const char* file, int line, const char* condition,
                            const std::string& detail);
void abort_on_violation(bool on);

#define FLEXLLM_FUZZ_CHECK(cond, ...)                                                    \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::flexllm::fuzz::violation(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
  } while (0)

// Where to cut an input of `size` bytes for piecewise feeding: the ends of the pieces, the last
// one `size`. Pseudo-random piece sizes from 1 to `max_piece`, seeded from the input's bytes, so
// that every input (and so every mutation) gets its own cuts and a saved input replays the same.
std::vector<size_t> cuts_for(std::string_view input, size_t max_piece);
// Every piece one byte long.
std::vector<size_t> bytewise_cuts(size_t size);
// A number from the input's bytes (FNV-1a), to pick variants deterministically.
uint64_t input_hash(std::string_view input);

// The API key the provider targets configure, and the check that no error text shows it: not
// whole, and not its first bytes when every occurrence of those in `input` starts the whole key
// (a key cut in half by an excerpt).
inline constexpr std::string_view kApiKey = "sk-fuzz-not-a-real-key";
void check_no_key(std::string_view text, std::string_view input, const char* what);

// What a reply says (content, reasoning, usage, tool calls, finish reason): what a round trip
// through a codec or a reused parser must keep.
bool same_answer(const ChatResult& a, const ChatResult& b);

// Reads typed values off the front of a fuzz input (what is missing reads as zero / empty).
class Bytes {
 public:
  explicit Bytes(std::string_view data) : data_(data) {}
  uint8_t u8() {
    if (data_.empty()) return 0;
    auto v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return v;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{u8()} << (8 * i);
    return v;
  }
  bool flag() { return u8() & 1; }
  // `out` filled from the next bytes (zeros past the end).
  void fill(std::span<uint8_t> out) {
    const size_t n = std::min(out.size(), data_.size());
    std::fill(std::copy_n(data_.begin(), n, out.begin()), out.end(), uint8_t{0});
    data_.remove_prefix(n);
  }
  // A string of up to 255 bytes (its length is the next byte).
  std::string str() {
    const size_t wanted = u8();  // first: the size below is what is left after this byte
    const size_t n = std::min(wanted, data_.size());
    std::string s(data_.substr(0, n));
    data_.remove_prefix(n);
    return s;
  }
  std::string_view rest() const { return data_; }
  bool empty() const { return data_.empty(); }

 private:
  std::string_view data_;
};

}  // namespace flexllm::fuzz
