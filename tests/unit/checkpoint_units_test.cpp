// The checkpoint's pieces on real files: reading record lines, recognising a checkpoint, sorting
// record references with bounded memory, scanning, and compaction (latest record wins, records
// checked as they are copied, failures leave the file as it was). One fresh directory per test.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>
#include <nlohmann/json.hpp>

#include "batch/journal.hpp"
#include "batch/line_reader.hpp"
#include "batch/output_file.hpp"
#include "batch/ref_sort.hpp"
#include "core/file_io.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

namespace fs = std::filesystem;

BatchResultItem success_item(size_t index, const std::string& output, Usage usage = {5, 7, 12}) {
  BatchResultItem item;
  item.index = index;
  ChatResult r;
  r.content = output;
  r.finish_reason = "stop";
  r.usage = usage;
  r.attempts = 1;
  item.result = r;
  return item;
}

BatchResultItem error_item(size_t index) {
  BatchResultItem item;
  item.index = index;
  item.status = ItemStatus::error;
  item.error = std::make_shared<const Error>(ErrorKind::http, "HTTP 500");
  item.attempts = 4;
  return item;
}

RecordKey key_of(size_t index, int version = 0) {
  return record_key("request " + std::to_string(index) + "/" + std::to_string(version));
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<nlohmann::json> records_of(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flexllm-ckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/out.jsonl";
  }
  void TearDown() override {
    fileio::clear_faults();
    fs::remove_all(dir_);
  }
  void write(const std::string& text) { std::ofstream(path_, std::ios::binary) << text; }
  static std::string line(const BatchResultItem& item, const RecordKey& key) {
    return format_record(item, key, "") + "\n";
  }

  std::string dir_, path_;
};

TEST(RecordLineParse, ReadsTheHeaderAndUsageOfOurOwnFormat) {
  simdjson::dom::parser parser;
  RecordRef ref;
  BatchResultItem item = success_item(42, R"(an "answer" with "finish_reason":"x")");
  item.metadata = {{"usage", {{"prompt_tokens", 999}}}};  // not the record's usage
  ASSERT_TRUE(parse_record_line(format_record(item, key_of(42), ""), ref, parser));
  EXPECT_EQ(ref.index, 42u);
  EXPECT_TRUE(ref.success);
  EXPECT_EQ(ref.key, key_of(42));
  EXPECT_EQ(ref.prompt_tokens, 5u);
  EXPECT_EQ(ref.completion_tokens, 7u);
  EXPECT_EQ(ref.total_tokens, 12u);

  // Records of earlier versions had usage after finish_reason.
  const std::string older = R"({"index":8,"status":"success","key":")" + key_hex(key_of(8)) +
                            R"(","output":"say \"finish_reason\":\"x\"","finish_reason":"stop",)"
                            R"("usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5},)"
                            R"("attempts":1,"latency":0.1})";
  ASSERT_TRUE(parse_record_line(older, ref, parser));
  EXPECT_EQ(ref.index, 8u);
  EXPECT_EQ(ref.total_tokens, 5u);
  EXPECT_EQ(ref.completion_tokens, 3u);

  ASSERT_TRUE(parse_record_line(format_record(error_item(3), key_of(3), ""), ref, parser));
  EXPECT_EQ(ref.index, 3u);
  EXPECT_FALSE(ref.success);
  EXPECT_EQ(ref.total_tokens, 0u);
}

TEST(RecordLineParse, AHandEditedRecordIsReadByItsFields) {
  simdjson::dom::parser parser;
  RecordRef ref;
  std::string line = R"({"status": "success", "output": "x", "index": 9, "key": ")" +
                     key_hex(key_of(9)) +
                     R"(", "usage": {"total_tokens": 30, "prompt_tokens": 10}})";
  ASSERT_TRUE(parse_record_line(line, ref, parser));
  EXPECT_EQ(ref.index, 9u);
  EXPECT_TRUE(ref.success);
  EXPECT_EQ(ref.key, key_of(9));
  EXPECT_EQ(ref.prompt_tokens, 10u);
  EXPECT_EQ(ref.total_tokens, 30u);
  for (std::string bad :
       {std::string(R"({"id": 1, "text": "notes"})"), std::string("plain text"),
        std::string(R"({"index": -1, "status": "success", "key": ")" + key_hex(key_of(1)) + "\"}"),
        std::string(R"({"index": 1, "status": "done", "key": ")" + key_hex(key_of(1)) + "\"}"),
        std::string(R"({"index": 1, "status": "success", "key": "xyz"})"), std::string("")})
    EXPECT_FALSE(parse_record_line(bad, ref, parser)) << bad;
}

TEST(LooksLikeCheckpoint, OnlyARecordOrTheStartOfOne) {
  const std::string record = format_record(success_item(0, "hi"), key_of(0), "");
  EXPECT_TRUE(looks_like_checkpoint(record + "\n"));
  EXPECT_TRUE(looks_like_checkpoint(record + "\nanything after the first line\n"));
  // A first write cut short: any prefix of a record line.
  for (size_t n : {1, 5, 9, 10, 14, 20, 25, 40, 60, 70, 90})
    EXPECT_TRUE(looks_like_checkpoint(record.substr(0, std::min(n, record.size()))))
        << record.substr(0, n);
  EXPECT_FALSE(looks_like_checkpoint(""));
  EXPECT_FALSE(looks_like_checkpoint("my notes\n{\"index\":0}\n"));
  EXPECT_FALSE(looks_like_checkpoint("{\"id\": 1, \"text\": \"x\"}\n"));
  EXPECT_FALSE(looks_like_checkpoint("\n" + record + "\n")) << "a blank first line";
  EXPECT_FALSE(looks_like_checkpoint("{\"index\":x"));
  EXPECT_FALSE(looks_like_checkpoint("{\"index\":3,\"status\":\"maybe"));
  EXPECT_FALSE(looks_like_checkpoint("notes without a newline"));
}

TEST_F(Checkpoint, LineReaderYieldsNonBlankLinesWithTheirNumbers) {
  const std::string long_line(600 << 10, 'x');  // longer than a read block
  write("first\n\n  \t\r\nsecond\r\n" + long_line + "\nlast without newline");
  LineReader in(path_);
  std::string_view line;
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, "first");
  EXPECT_EQ(in.line_no(), 1u);
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, "second\r");
  EXPECT_EQ(in.line_no(), 4u);
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, long_line);
  EXPECT_EQ(in.line_no(), 5u);
  ASSERT_TRUE(in.next(line));
  EXPECT_EQ(line, "last without newline");
  EXPECT_EQ(in.line_no(), 6u);
  EXPECT_FALSE(in.next(line));
  EXPECT_FALSE(in.next(line));
  write("\n\n");
  LineReader blank(path_);
  EXPECT_FALSE(blank.next(line));
  EXPECT_THROW(LineReader(dir_ + "/missing.jsonl"), InvalidRequestError);
}

TEST(ParentDirectory, OfPathsAndBareNames) {
  EXPECT_EQ(parent_directory("out.jsonl"), ".");
  EXPECT_EQ(parent_directory("/out.jsonl"), "/");
  EXPECT_EQ(parent_directory("a/b/out.jsonl"), "a/b");
}

// The same random references through the in-memory path, a spilled one and a spilled one with
// more runs than one merge takes: the latest of each index, in index order, as a map says.
TEST_F(Checkpoint, SortedRefsKeepTheLatestOfEachIndexWhateverTheChunk) {
  std::mt19937 rng(7);
  std::vector<RecordRef> refs;
  std::map<uint64_t, RecordRef> expected;
  for (uint64_t offset = 0; offset < 3000; ++offset) {
    RecordRef r;
    r.index = rng() % 1200;
    r.offset = offset * 100;  // file order
    r.success = rng() % 2;
    r.key = key_of(r.index, static_cast<int>(offset));
    refs.push_back(r);
    expected[r.index] = r;
  }
  for (size_t chunk : {size_t{100000}, size_t{500}, size_t{7}}) {
    RefSorter sorter(dir_, chunk);
    for (const RecordRef& r : refs) sorter.add(r);
    SortedRefs sorted = sorter.finish();
    ASSERT_EQ(sorted.size(), expected.size()) << chunk;
    auto a = sorted.cursor(), b = sorted.cursor();
    for (const auto& [index, want] : expected) {
      ASSERT_NE(a.get(), nullptr);
      EXPECT_EQ(a.get()->index, index);
      EXPECT_EQ(a.get()->offset, want.offset) << "the latest record of index " << index;
      EXPECT_EQ(a.get()->key, want.key);
      a.advance();
    }
    EXPECT_EQ(a.get(), nullptr);
    // Cursors are independent; seek finds an index or the next one.
    const uint64_t some = expected.rbegin()->first;
    ASSERT_NE(b.seek(some), nullptr) << chunk;
    EXPECT_EQ(b.get()->offset, expected[some].offset);
    EXPECT_EQ(b.seek(some + 1), nullptr);
    EXPECT_EQ(b.get(), nullptr);
    auto c = sorted.cursor();
    EXPECT_EQ(c.get()->index, expected.begin()->first);
  }
  // Nothing spilled is left behind in the directory (the file is unnamed).
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(Checkpoint, ScanReadsRecordsTokensOrderAndTornTail) {
  std::vector<std::string> warnings;
  auto warn = [&](const std::string& w) { warnings.push_back(w); };
  write(line(success_item(0, "a"), key_of(0)) + line(success_item(1, "b", {1, 2, 3}), key_of(1)) +
        line(error_item(2), key_of(2)));
  std::vector<RecordRef> seen;
  auto scan = scan_journal(path_, warn, [&](const RecordRef& r) { seen.push_back(r); });
  ASSERT_TRUE(scan);
  EXPECT_TRUE(scan->in_order);
  EXPECT_FALSE(scan->torn_tail);
  EXPECT_EQ(scan->records, 3u);
  EXPECT_EQ(scan->max_index, 2u);
  EXPECT_EQ(scan->valid_bytes, fs::file_size(path_));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].total_tokens, 3u);
  EXPECT_EQ(seen[1].offset, seen[0].length + 1u);
  EXPECT_TRUE(warnings.empty());

  // Out of order, a malformed line, and a torn last line.
  const std::string good = line(success_item(5, "e"), key_of(5)) +
                           line(success_item(4, "d"), key_of(4)) + "not a record\n";
  write(good + R"({"index":6,"status":"succ)");
  seen.clear();
  scan = scan_journal(path_, warn, [&](const RecordRef& r) { seen.push_back(r); });
  ASSERT_TRUE(scan);
  EXPECT_FALSE(scan->in_order);
  EXPECT_TRUE(scan->torn_tail);
  EXPECT_EQ(scan->malformed, 1u);
  EXPECT_EQ(scan->valid_bytes, good.size());
  EXPECT_EQ(seen.size(), 2u);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find(":3: not a checkpoint record"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find(":4: last line is incomplete"), std::string::npos) << warnings[1];

  EXPECT_FALSE(scan_journal(dir_ + "/missing.jsonl", warn, [](const RecordRef&) {}));
}

// For each index the latest record in the file wins, whatever its status: an error written after
// a success (its input changed, and the redo failed) is the answer.
TEST_F(Checkpoint, CompactionKeepsTheLatestRecordOfEachIndexWhateverItsStatus) {
  write(line(success_item(2, "two"), key_of(2)) + line(success_item(0, "zero"), key_of(0)) +
        line(success_item(1, "one"), key_of(1)) + line(error_item(1), key_of(1, 1)) +
        line(success_item(3, "old three"), key_of(3)) +
        line(success_item(3, "new three"), key_of(3, 1)));
  ::chmod(path_.c_str(), 0640);
  CompactResult r = compact_journal(path_);
  EXPECT_TRUE(r.rewritten);
  EXPECT_EQ(r.records, 4u);
  auto recs = records_of(path_);
  ASSERT_EQ(recs.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(recs[i]["index"], i);
  EXPECT_EQ(recs[1]["status"], "error") << "the latest record of index 1";
  EXPECT_EQ(recs[1]["attempts"], 4);
  EXPECT_EQ(recs[3]["output"], "new three");
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "the file's mode survives compaction";
  EXPECT_FALSE(fs::exists(path_ + ".compact.tmp"));
}

TEST_F(Checkpoint, ACompactFileIsLeftAsItIsAndRecordsPastTheEndCanBeDropped) {
  std::string text;
  for (size_t i = 0; i < 10; ++i) text += line(success_item(i, "x"), key_of(i));
  write(text);
  const auto inode = fs::status(path_).type();
  struct stat before {};
  ::stat(path_.c_str(), &before);
  CompactResult r = compact_journal(path_);
  EXPECT_FALSE(r.rewritten);
  struct stat after {};
  ::stat(path_.c_str(), &after);
  EXPECT_EQ(before.st_ino, after.st_ino) << "not rewritten";
  EXPECT_EQ(read_all(path_), text);
  (void)inode;

  r = compact_journal(path_, /*drop_from=*/6);
  EXPECT_TRUE(r.rewritten);
  EXPECT_EQ(r.dropped, 4u);
  auto recs = records_of(path_);
  ASSERT_EQ(recs.size(), 6u);
  EXPECT_EQ(recs.back()["index"], 5);
}

// A file that changes between the scan and the copy is never compacted into something wrong: the
// copy checks each record, starts over once, and gives up if it changes again.
TEST_F(Checkpoint, CompactionChecksEveryRecordItCopies) {
  const std::string a = line(success_item(1, "one"), key_of(1)),
                    b = line(success_item(0, "zero"), key_of(0));
  write(a + b);
  int changes = 0;
  // Changed once (same records, other offsets): the first copy notices, the second attempt
  // sees the file as it is now — already in order — and leaves it.
  CompactResult r = compact_journal(path_, {}, {}, [&] {
    if (changes++ == 0) write(b + a);
  });
  EXPECT_EQ(changes, 2);
  EXPECT_FALSE(r.rewritten);
  EXPECT_EQ(read_all(path_), b + a);

  // Changed before each copy (another key for index 1 each time): refused, and the file is
  // what the last writer left.
  write(a + b);
  std::string other;
  try {
    compact_journal(path_, {}, {}, [&] {
      other = line(success_item(1, "ONE"), key_of(1, ++changes)) + b;
      write(other);
    });
    ADD_FAILURE() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.reason(), CheckpointError::Reason::io);
    EXPECT_NE(std::string(e.what()).find("changed while it was being compacted"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_all(path_), other);
  EXPECT_FALSE(fs::exists(path_ + ".compact.tmp"));
}

// Each failing step of a compaction: an error naming the file and the OS error (never
// "Success"), the journal exactly as it was, no temporary left.
TEST_F(Checkpoint, AFailingCompactionLeavesTheJournalAsItWas) {
  const std::string text =
      line(success_item(1, "one"), key_of(1)) + line(success_item(0, "zero"), key_of(0));
  struct Case {
    fileio::Op op;
    int err;
    const char* says;
  };
  for (Case c : {Case{fileio::Op::write, ENOSPC, "No space left on device"},
                 Case{fileio::Op::fsync, EIO, "Input/output error"},
                 Case{fileio::Op::rename, EXDEV, "Invalid cross-device link"},
                 Case{fileio::Op::pread, EIO, "Input/output error"}}) {
    write(text);
    fileio::inject(c.op, 1, c.err);
    try {
      compact_journal(path_);
      ADD_FAILURE() << fileio::to_string(c.op) << ": no error";
    } catch (const CheckpointError& e) {
      EXPECT_EQ(e.reason(), CheckpointError::Reason::io);
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("out.jsonl"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("Success"), std::string::npos) << e.what();
    }
    fileio::clear_faults();
    EXPECT_EQ(read_all(path_), text) << fileio::to_string(c.op);
    EXPECT_FALSE(fs::exists(path_ + ".compact.tmp")) << fileio::to_string(c.op);
  }
  // And then it works.
  EXPECT_TRUE(compact_journal(path_).rewritten);
  EXPECT_EQ(records_of(path_).size(), 2u);
}

TEST_F(Checkpoint, ABigJournalCompactsThroughSpilledReferences) {
  // More records than one in-memory chunk, in a shuffled order with rewrites.
  const size_t n = RefSorter::kChunk + 5000;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  std::string text;
  for (size_t i : order) text += line(success_item(i, ""), key_of(i));
  for (size_t i = 0; i < n; i += 1000) text += line(error_item(i), key_of(i, 1));
  write(text);
  CompactResult r = compact_journal(path_);
  EXPECT_EQ(r.records, n);
  std::ifstream in(path_);
  size_t expect = 0;
  simdjson::dom::parser parser;
  for (std::string l; std::getline(in, l); ++expect) {
    RecordRef ref;
    ASSERT_TRUE(parse_record_line(l, ref, parser));
    ASSERT_EQ(ref.index, expect);
    EXPECT_EQ(ref.success, expect % 1000 != 0) << expect;
  }
  EXPECT_EQ(expect, n);
}

}  // namespace
}  // namespace flexllm::detail
