// The fuzz targets (fuzz/, docs/fuzzing.md) over every saved input: the inputs fuzzing found
// (tests/data/fuzz/TARGET: crashes, hangs and broken invariants, each fixed), the hand-written
// seeds (fuzz/seeds/TARGET) and the recorded fixtures the fuzzers start from (tests/data/openai).
// Runs in every build, no clang or libFuzzer needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "files.hpp"
#include "fuzz.hpp"

namespace flexllm::fuzz {
namespace {

namespace fs = std::filesystem;
using test::read_whole_file;

std::vector<fs::path> inputs_of(const std::string& target) {
  const fs::path root(FLEXLLM_SOURCE_DIR);
  std::vector<fs::path> dirs = {root / "fuzz/seeds" / target, root / "tests/data/fuzz" / target};
  if (target == "sse" || target == "openai_stream" || target == "openai_reply")
    dirs.push_back(root / "tests/data/openai");
  std::vector<fs::path> files;
  for (const fs::path& dir : dirs) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

// gtest names a parameter by this.
void PrintTo(const Target& target, std::ostream* os) {
  *os << target.name;
}

namespace {

class FuzzRegressions : public testing::TestWithParam<Target> {};

TEST_P(FuzzRegressions, EverySavedInputKeepsTheInvariants) {
  const Target& target = GetParam();
  const std::vector<fs::path> files = inputs_of(target.name);
  ASSERT_FALSE(files.empty()) << "no seeds for " << target.name;  // a target always has seeds
  for (const fs::path& file : files) {
    const std::string input = read_whole_file(file);
    try {
      target.run(input);
    } catch (const Violation& v) {
      ADD_FAILURE() << file.string() << ": " << v.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << file.string() << ": an exception escaped: " << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzRegressions, testing::ValuesIn(targets()),
                         [](const testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace flexllm::fuzz
