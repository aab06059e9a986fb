// zstd for the values of the persistent cache stores (sqlite_store.cpp, redis_store.cpp). Each
// thread keeps one compression and one decompression context, created on first use and reused:
// a context costs far more to create than a 200-byte value costs to compress.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace flexllm::detail {

// A zstd frame (level 1, with the content size and a content checksum in it).
std::string compress_value(std::string_view value);

// The value inside a frame compress_value() made; nullopt when `frame` is not one (foreign or
// corrupt bytes, a failed checksum, a size beyond any cache value).
std::optional<std::string> decompress_value(std::string_view frame);

}  // namespace flexllm::detail
