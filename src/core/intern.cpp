#include "core/intern.hpp"

#include <mutex>
#include <string>
#include <unordered_set>

namespace flexllm::detail {

std::string_view intern(std::string_view text) {
  // Deliberately never destroyed: views handed out must outlive every static destructor.
  static auto* table = new std::unordered_set<std::string>();
  static std::mutex mu;
  std::lock_guard lock(mu);
  return *table->emplace(text).first;  // node-based: elements never move
}

}  // namespace flexllm::detail
