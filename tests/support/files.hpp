// Reading a whole file in tests: "" when it is missing (the assertions then say what differs).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace flexllm::test {

inline std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace flexllm::test
