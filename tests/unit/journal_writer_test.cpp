// The journal writer under failing file operations (fault injection through core/file_io): the
// file always ends on a whole record, nothing is written after a failure, and the failure is
// reported with the file's name and the OS error. Real files, one fresh directory per test.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "batch/journal.hpp"
#include "batch/journal_writer.hpp"
#include "core/file_io.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

namespace fs = std::filesystem;
using fileio::Op;

// Nothing is written before close(), unless 1 MiB is queued: close() is the only write.
constexpr std::chrono::milliseconds kNever = std::chrono::hours(1);
// The writer thread flushes (write + fdatasync) about every millisecond.
constexpr std::chrono::milliseconds kOften{1};

BatchResultItem make_item(size_t index, size_t padding = 0) {
  BatchResultItem item;
  item.index = index;
  item.status = ItemStatus::success;
  ChatResult result;
  result.content = "answer " + std::to_string(index) + std::string(padding, 'x');
  result.finish_reason = "stop";
  result.attempts = 1;
  item.result = std::move(result);
  return item;
}

RecordKey make_key(size_t index) {
  return record_key("request " + std::to_string(index));
}

std::string record_line(size_t index) {
  return format_record(make_item(index), make_key(index), "") + "\n";
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_raw(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

uint64_t size_of(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

std::vector<size_t> indices(size_t from, size_t to) {
  std::vector<size_t> out;
  for (size_t i = from; i < to; ++i) out.push_back(i);
  return out;
}

// The indices of the records in the file, checking that it is nothing but whole JSON lines.
std::vector<size_t> whole_records(const std::string& path) {
  const std::string text = read_all(path);
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "the file ends mid-record";
  std::vector<size_t> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t newline = text.find('\n', pos);
    if (newline == std::string::npos) newline = text.size();
    const std::string line = text.substr(pos, newline - pos);
    const json record = json::parse(line, nullptr, false);
    EXPECT_TRUE(record.is_object()) << "not a JSON record: " << line;
    if (record.is_object()) out.push_back(record.at("index").get<size_t>());
    pos = newline + 1;
  }
  return out;
}

void append_range(JournalWriter& writer, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) writer.append(make_item(i), make_key(i), "");
}

// A run that appends records [from, to) to the file as it is, and closes.
bool run_session(const std::string& path, size_t from, size_t to) {
  JournalWriter writer(path, size_of(path), kNever);
  append_range(writer, from, to);
  writer.close();
  return !writer.failed();
}

// The writer thread's failures show in failed() before close(): that is what the runner polls.
// A bounded wait for that state (not a sleep standing in for it).
bool wait_until_failed(const JournalWriter& writer) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!writer.failed()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

class JournalWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fileio::clear_faults();
    std::string dir = (fs::temp_directory_path() / "flexllm-journal-XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    path_ = dir_ + "/out.jsonl";
  }
  void TearDown() override {
    fileio::clear_faults();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // failure() names the file, the OS error and the operation.
  void expect_failure(const JournalWriter& writer, const std::string& os_error,
                      const std::string& op) {
    EXPECT_TRUE(writer.failed());
    const std::string message = writer.failure();
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find(os_error), std::string::npos) << message;
    EXPECT_NE(message.find("(" + op + ")"), std::string::npos) << message;
  }

  // The constructor throws CheckpointError (reason io) naming the file and the OS error.
  void expect_refused(const std::string& path, uint64_t valid_bytes, const std::string& error) {
    try {
      JournalWriter writer(path, valid_bytes, kNever);
      ADD_FAILURE() << "the constructor did not throw";
    } catch (const CheckpointError& e) {
      EXPECT_EQ(e.reason(), CheckpointError::Reason::io);
      EXPECT_EQ(e.kind(), ErrorKind::checkpoint);
      EXPECT_EQ(e.path(), path);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(error), std::string::npos) << e.what();
    }
  }

  std::string dir_;
  std::string path_;
};

// --- The fault layer ---

TEST_F(JournalWriterTest, FileIoFailsExactlyTheNthCallAfterTheInject) {
  const int fd = fileio::open_file(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fileio::write_some(fd, "a", 1), 1);  // before the inject: not counted
  fileio::inject(Op::write, 3, ENOSPC);
  fileio::inject(Op::fdatasync, 1, EIO);
  EXPECT_EQ(fileio::write_some(fd, "b", 1), 1);
  EXPECT_EQ(fileio::write_some(fd, "c", 1), 1);
  errno = 0;
  const ssize_t failed_write = fileio::write_some(fd, "d", 1);
  const int write_error = errno;
  EXPECT_EQ(failed_write, -1);
  EXPECT_EQ(write_error, ENOSPC);
  EXPECT_EQ(fileio::write_some(fd, "e", 1), 1);  // once
  const int failed_sync = fileio::datasync(fd);
  const int sync_error = errno;
  EXPECT_EQ(failed_sync, -1);
  EXPECT_EQ(sync_error, EIO);
  EXPECT_EQ(fileio::datasync(fd), 0);
  EXPECT_EQ(fileio::close_file(fd), 0);
  EXPECT_EQ(read_all(path_), "abce");
}

TEST_F(JournalWriterTest, FileIoWriteAllCompletesShortWritesAndCountsWhatArrived) {
  const int fd = fileio::open_file(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  fileio::inject_short_write(1, 3);
  fileio::inject_short_write(2, 0);  // no progress at all: retried
  size_t written = 0;
  EXPECT_EQ(fileio::write_all(fd, "hello world\n", 12, &written), 0);
  EXPECT_EQ(written, 12u);
  fileio::inject_short_write(1, 4);
  fileio::inject(Op::write, 2, EFBIG);
  EXPECT_EQ(fileio::write_all(fd, "abcdefgh", 8, &written), EFBIG);
  EXPECT_EQ(written, 4u);
  EXPECT_EQ(fileio::close_file(fd), 0);
  EXPECT_EQ(read_all(path_), "hello world\nabcd");
}

TEST_F(JournalWriterTest, FileIoSyncsTheParentDirectory) {
  EXPECT_EQ(fileio::sync_parent_dir(path_), 0);
  EXPECT_EQ(fileio::sync_parent_dir("bare-name.jsonl"), 0);  // the working directory
  EXPECT_EQ(fileio::sync_parent_dir(dir_ + "/missing/out.jsonl"), ENOENT);
  fileio::inject(Op::fsync, 1, EIO);
  EXPECT_EQ(fileio::sync_parent_dir(path_), EIO);
}

// --- Writing ---

TEST_F(JournalWriterTest, AppendsWholeRecordsAndSaysWhereTheyAre) {
  JournalWriter writer(path_, 0, kNever);
  std::vector<RecordRef> refs;
  for (size_t i = 0; i < 5; ++i) refs.push_back(writer.append(make_item(i), make_key(i), ""));
  const std::string line = format_record(make_item(5), make_key(5), "");
  refs.push_back(writer.append_line(5, line, true));
  writer.close();
  EXPECT_FALSE(writer.failed());
  EXPECT_EQ(writer.failure(), "");
  const std::string text = read_all(path_);
  EXPECT_EQ(whole_records(path_), indices(0, 6));
  for (const RecordRef& ref : refs) {
    ASSERT_LT(ref.offset + ref.length, text.size());
    EXPECT_EQ(text.substr(ref.offset, ref.length) + "\n", record_line(ref.index));
    EXPECT_EQ(text[ref.offset + ref.length], '\n');
  }
}

TEST_F(JournalWriterTest, TheNthWriteFailingWithEnospcStopsAllWriting) {
  fileio::inject(Op::write, 3, ENOSPC);
  ASSERT_TRUE(run_session(path_, 0, 3));  // write 1
  ASSERT_TRUE(run_session(path_, 3, 6));  // write 2
  JournalWriter writer(path_, size_of(path_), kOften);
  append_range(writer, 6, 9);  // the writer thread's first flush is write 3
  ASSERT_TRUE(wait_until_failed(writer));
  append_range(writer, 9, 12);  // dropped: never written after the gap
  writer.close();
  expect_failure(writer, "No space left on device", "write");
  EXPECT_EQ(whole_records(path_), indices(0, 6));
}

TEST_F(JournalWriterTest, TheNthWriteFailingWithEioLeavesTheRecordsBeforeIt) {
  fileio::inject(Op::write, 2, EIO);
  ASSERT_TRUE(run_session(path_, 0, 3));
  {
    JournalWriter writer(path_, size_of(path_), kNever);
    append_range(writer, 3, 6);
    writer.close();
    expect_failure(writer, "Input/output error", "write");
  }
  EXPECT_EQ(whole_records(path_), indices(0, 3));
  // A rerun appends after the last whole record.
  ASSERT_TRUE(run_session(path_, 3, 6));
  EXPECT_EQ(whole_records(path_), indices(0, 6));
}

TEST_F(JournalWriterTest, AShortWriteThenEfbigCutsThePartialRecord) {
  ASSERT_TRUE(run_session(path_, 0, 3));
  const std::string before = read_all(path_);
  // Record 3 reaches the file whole, and 5 bytes of record 4: those are cut.
  fileio::inject_short_write(1, record_line(3).size() + 5);
  fileio::inject(Op::write, 2, EFBIG);
  JournalWriter writer(path_, before.size(), kNever);
  append_range(writer, 3, 6);
  writer.close();
  expect_failure(writer, "File too large", "write");
  EXPECT_EQ(whole_records(path_), indices(0, 4));
  EXPECT_EQ(read_all(path_), before + record_line(3));
}

TEST_F(JournalWriterTest, AShortWriteInsideTheFirstRecordCutsBackToTheFileBefore) {
  ASSERT_TRUE(run_session(path_, 0, 3));
  const std::string before = read_all(path_);
  fileio::inject_short_write(1, 7);
  fileio::inject(Op::write, 2, EFBIG);
  JournalWriter writer(path_, before.size(), kNever);
  append_range(writer, 3, 6);
  writer.close();
  expect_failure(writer, "File too large", "write");
  EXPECT_EQ(read_all(path_), before);
}

TEST_F(JournalWriterTest, AFailedCutBackIsReportedAndTheNextRunCutsTheTornRecord) {
  ASSERT_TRUE(run_session(path_, 0, 2));
  const std::string before = read_all(path_);
  fileio::inject_short_write(1, 9);
  fileio::inject(Op::write, 2, ENOSPC);
  fileio::inject(Op::ftruncate, 1, EIO);
  {
    JournalWriter writer(path_, before.size(), kNever);
    append_range(writer, 2, 4);
    writer.close();
    expect_failure(writer, "No space left on device", "write");
    EXPECT_NE(writer.failure().find("may be torn"), std::string::npos) << writer.failure();
  }
  EXPECT_EQ(read_all(path_), before + record_line(2).substr(0, 9));
  // The next run is given the whole-record prefix (what scan_journal finds) and cuts the rest.
  JournalWriter next(path_, before.size(), kNever);
  append_range(next, 2, 4);
  next.close();
  EXPECT_FALSE(next.failed());
  EXPECT_EQ(whole_records(path_), indices(0, 4));
}

TEST_F(JournalWriterTest, ShortWritesThatSucceedAreCompleted) {
  fileio::inject_short_write(1, 10);
  fileio::inject_short_write(2, 0);
  fileio::inject_short_write(3, 1);
  JournalWriter writer(path_, 0, kNever);
  append_range(writer, 0, 6);
  writer.close();
  EXPECT_FALSE(writer.failed());
  EXPECT_EQ(writer.failure(), "");
  EXPECT_EQ(whole_records(path_), indices(0, 6));
}

TEST_F(JournalWriterTest, AFailedFdatasyncStopsTheWriterThread) {
  ASSERT_TRUE(run_session(path_, 0, 3));
  fileio::inject(Op::fdatasync, 1, EIO);
  JournalWriter writer(path_, size_of(path_), kOften);
  append_range(writer, 3, 6);
  ASSERT_TRUE(wait_until_failed(writer));
  append_range(writer, 6, 9);
  writer.close();
  expect_failure(writer, "Input/output error", "fdatasync");
  // What was written before the failed sync stays (whole); nothing after it is written. Which of
  // 3..5 were in that flush depends on when the thread woke.
  const std::vector<size_t> found = whole_records(path_);
  ASSERT_GE(found.size(), 4u);
  ASSERT_LE(found.size(), 6u);
  EXPECT_EQ(found, indices(0, found.size()));
}

TEST_F(JournalWriterTest, AFailedFdatasyncAtCloseIsReported) {
  fileio::inject(Op::fdatasync, 1, EIO);
  JournalWriter writer(path_, 0, kNever);
  append_range(writer, 0, 3);
  writer.close();
  expect_failure(writer, "Input/output error", "fdatasync");
  EXPECT_EQ(whole_records(path_), indices(0, 3));
}

TEST_F(JournalWriterTest, CloseSyncsWhatAnEarlyFlushWrote) {
  // Over 1 MiB: the writer thread may write all of it early (without fdatasync), leaving
  // close() nothing to write; close() must still sync it.
  fileio::inject(Op::fdatasync, 1, EIO);
  JournalWriter writer(path_, 0, kNever);
  for (size_t i = 0; i < 1200; ++i) writer.append(make_item(i, 1000), make_key(i), "");
  writer.close();
  expect_failure(writer, "Input/output error", "fdatasync");
  EXPECT_EQ(whole_records(path_), indices(0, 1200));
}

TEST_F(JournalWriterTest, AFailedCloseIsReported) {
  JournalWriter writer(path_, 0, kNever);
  fileio::inject(Op::close, 1, EIO);
  append_range(writer, 0, 3);
  writer.close();
  expect_failure(writer, "Input/output error", "close");
  writer.close();  // a second close does nothing
  EXPECT_EQ(whole_records(path_), indices(0, 3));
}

// --- Opening ---

TEST_F(JournalWriterTest, ATornTailIsCutAndTheCutChecked) {
  const std::string valid = record_line(0) + record_line(1);
  write_raw(path_, valid + record_line(2).substr(0, 12));
  JournalWriter writer(path_, valid.size(), kNever);
  EXPECT_EQ(read_all(path_), valid);  // cut at once, before any record is appended
  const RecordRef ref = writer.append(make_item(2), make_key(2), "");
  EXPECT_EQ(ref.offset, valid.size());
  writer.close();
  EXPECT_FALSE(writer.failed());
  EXPECT_EQ(read_all(path_), valid + record_line(2));
}

TEST_F(JournalWriterTest, ACutThatDoesNotEndOnARecordIsRefused) {
  write_raw(path_, "abc\ndefgh");
  expect_refused(path_, 5, "whole record");  // "abc\nd": not a record's end
}

TEST_F(JournalWriterTest, AFileShorterThanItsValidBytesIsRefused) {
  write_raw(path_, record_line(0));
  expect_refused(path_, record_line(0).size() + 10, "bytes long");
  EXPECT_EQ(read_all(path_), record_line(0));
}

TEST_F(JournalWriterTest, AFailedCutIsRefused) {
  const std::string torn = record_line(0) + record_line(1).substr(0, 5);
  write_raw(path_, torn);
  fileio::inject(Op::ftruncate, 1, EIO);
  expect_refused(path_, record_line(0).size(), "Input/output error");
  EXPECT_EQ(read_all(path_), torn);
}

TEST_F(JournalWriterTest, AFailedReadBackIsRefused) {
  write_raw(path_, record_line(0));
  fileio::inject(Op::pread, 1, EIO);
  expect_refused(path_, record_line(0).size(), "Input/output error");
}

TEST_F(JournalWriterTest, AFileThatCannotBeOpenedIsRefused) {
  expect_refused(dir_ + "/missing/out.jsonl", 0, "No such file or directory");
  fileio::inject(Op::open, 1, EACCES);
  expect_refused(path_, 0, "Permission denied");
}

TEST_F(JournalWriterTest, ANewFilesDirectoryIsSynced) {
  fileio::inject(Op::fsync, 1, EIO);  // the fsync of the directory
  expect_refused(path_, 0, "Input/output error");
}

TEST_F(JournalWriterTest, AnExistingFilesDirectoryIsNotSyncedAgain) {
  write_raw(path_, "");
  fileio::inject(Op::fsync, 1, EIO);
  JournalWriter writer(path_, 0, kNever);
  append_range(writer, 0, 2);
  writer.close();
  EXPECT_FALSE(writer.failed());
  EXPECT_EQ(whole_records(path_), indices(0, 2));
}

}  // namespace
}  // namespace flexllm::detail
