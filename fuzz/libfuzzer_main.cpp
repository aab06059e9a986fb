// libFuzzer's entry points for one target; FLEXLLM_FUZZ_TARGET names its function (CMake).
#include "fuzz.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flexllm::fuzz::abort_on_violation(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  flexllm::fuzz::FLEXLLM_FUZZ_TARGET(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
