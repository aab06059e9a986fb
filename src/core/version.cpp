#include "flexllm/version.hpp"

namespace flexllm {

const char* version() noexcept {
  return FLEXLLM_VERSION_STRING;
}

}  // namespace flexllm
