// The response cache's stored value: the parts of a ChatResult that a cached call
// returns — content, reasoning, tool calls, usage, finish_reason — in a compact versioned binary
// form that every backend stores as opaque bytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "flexllm/types.hpp"

namespace flexllm::detail {

// Throws std::length_error for a field over 4 GiB (no reply comes near).
std::string encode_cache_value(const ChatResult& r);

// The result stored by encode_cache_value(), with `cached` set; nullopt for anything else (another
// format version, truncated or corrupt bytes). Never reads outside `bytes`.
std::optional<ChatResult> decode_cache_value(std::string_view bytes);

}  // namespace flexllm::detail
