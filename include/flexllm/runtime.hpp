// The I/O runtime: one event-loop thread driving libcurl's multi interface. Clients share the
// process-wide one unless given their own.
#pragma once

#include <memory>

namespace flexllm {

namespace detail {
class Loop;
}

class Runtime {
 public:
  Runtime();
  ~Runtime();  // stops the loop thread; every client using it must be gone
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The process-wide runtime, started on first use.
  static std::shared_ptr<Runtime> shared();

  detail::Loop& loop() noexcept { return *loop_; }

 private:
  std::unique_ptr<detail::Loop> loop_;
};

}  // namespace flexllm
