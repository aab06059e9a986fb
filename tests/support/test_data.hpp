// Recorded payloads under tests/data (FLEXLLM_TEST_DATA is set by the test target).
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace flexllm::test {

inline std::string read_test_file(const std::string& name) {
  std::ifstream in(std::string(FLEXLLM_TEST_DATA) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing test data: " << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace flexllm::test
