// The response cache's key of a request: a hash of the canonical JSON of everything that
// decides the reply — provider, endpoint, model, messages, output-affecting options — and a schema
// version. Computed once per request on the caller's thread.
#pragma once

#include <string>
#include <string_view>

#include "cache/store.hpp"
#include "flexllm/types.hpp"

namespace flexllm::detail {

// Bumped whenever the key text changes shape, so entries written by another version never match.
inline constexpr int kCacheKeyVersion = 1;

// The canonical key text: a JSON object with sorted keys and no whitespace holding "v",
// "provider", "endpoint" (base_url without trailing '/' or user info), "model" (the effective
// model), "messages" and every set output-affecting option of `options` (unset ones are absent;
// skip_cache, return_raw, timeout and streaming are not part of it). In image_url parts, inline
// data (data: URIs) and readable local files (paths, file:// URLs) are replaced by
// "xxh3:<32 hex>" of the image bytes, so one image gives one key however it is passed.
// Throws InvalidRequestError when a string is not valid UTF-8 (the request could not be sent).
std::string cache_key_text(Provider provider, std::string_view base_url, std::string_view model,
                           const json& messages, const RequestOptions& options);

// XXH3-128 of cache_key_text(), high 64 bits first, each big-endian.
CacheKey cache_key(Provider provider, std::string_view base_url, std::string_view model,
                   const json& messages, const RequestOptions& options);

}  // namespace flexllm::detail
