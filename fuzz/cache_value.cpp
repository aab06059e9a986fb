// The response cache's value codec: any bytes decode or are refused, never read past their end;
// bytes that decode are exactly what encoding the result gives back (one encoding per value);
// and a result built from the input encodes and decodes to itself.
#include "cache/cache_value.hpp"
#include "fuzz.hpp"

namespace flexllm::fuzz {

void cache_value(std::string_view input) {
  // Decoded from a copy of exactly the input's size: ASan sees any read past the end.
  const std::unique_ptr<char[]> copy(new char[input.size()]);
  std::copy(input.begin(), input.end(), copy.get());
  if (auto decoded = detail::decode_cache_value(std::string_view(copy.get(), input.size()))) {
    FLEXLLM_FUZZ_CHECK(decoded->cached, "a decoded value not marked cached");
    FLEXLLM_FUZZ_CHECK(detail::encode_cache_value(*decoded) == input,
                       "decoded bytes encode differently");
  }

  Bytes in(input);
  ChatResult r;
  r.content = in.str();
  if (in.flag()) r.reasoning = in.str();
  if (in.flag()) {
    Usage& u = r.usage.emplace();
    u.prompt_tokens = static_cast<int64_t>(in.u64());
    u.completion_tokens = static_cast<int64_t>(in.u64());
    u.total_tokens = static_cast<int64_t>(in.u64());
    if (in.flag()) u.reasoning_tokens = static_cast<int64_t>(in.u64());
  }
  for (int n = in.u8() % 4; n > 0; --n)
    r.tool_calls.push_back({in.str(), in.str(), in.str(), in.str()});
  r.finish_reason = in.str();
  const std::string bytes = detail::encode_cache_value(r);
  auto back = detail::decode_cache_value(bytes);
  FLEXLLM_FUZZ_CHECK(back && back->cached && same_answer(*back, r),
                     "a value does not decode to itself ({} bytes)", bytes.size());
  // Every strict prefix is refused: a truncated value is never taken for a shorter one.
  const size_t cut = input_hash(input) % bytes.size();
  FLEXLLM_FUZZ_CHECK(!detail::decode_cache_value(std::string_view(bytes).substr(0, cut)),
                     "the first {} of {} bytes decode", cut, bytes.size());
}

}  // namespace flexllm::fuzz
