// zstd contexts per thread; see compression.hpp.
#include "cache/compression.hpp"

#include <zstd.h>

#include <memory>
#include <new>

namespace flexllm::detail {
namespace {

// Level 1: values are small JSON texts where higher levels gain a few percent and cost several
// times the CPU on the writer thread. The checksum (4 bytes) is what turns a flipped byte in a
// stored value into a detected miss instead of a wrong answer.
constexpr int kLevel = 1;
// A frame claiming more than this is not one of ours (and must not trigger a huge allocation).
constexpr unsigned long long kMaxValueBytes = 256ull << 20;

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx = [] {
    std::unique_ptr<ZSTD_CCtx, CCtxFree> c(ZSTD_createCCtx());
    if (!c) throw std::bad_alloc();
    ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, kLevel);
    ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1);
    return c;
  }();
  return cctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  return dctx.get();
}

}  // namespace

std::string compress_value(std::string_view value) {
  std::string out(ZSTD_compressBound(value.size()), '\0');
  // ZSTD_compress2 resets the session, not the parameters set once above.
  size_t n = ZSTD_compress2(thread_cctx(), out.data(), out.size(), value.data(), value.size());
  // With a ZSTD_compressBound() buffer only an allocation failure inside zstd can fail.
  if (ZSTD_isError(n)) throw std::bad_alloc();
  out.resize(n);
  return out;
}

std::optional<std::string> decompress_value(std::string_view frame) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > kMaxValueBytes)
    return std::nullopt;
  std::string out(static_cast<size_t>(size), '\0');
  size_t n = ZSTD_decompressDCtx(thread_dctx(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != out.size()) return std::nullopt;
  return out;
}

}  // namespace flexllm::detail
