#include "batch/ref_sort.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <queue>

#include <fmt/format.h>

namespace flexllm::detail {
namespace {

// Runs merged at once: each reads through a buffer of kBlock references.
constexpr size_t kFanIn = 64;
constexpr size_t kBlock = 512;  // 28 KiB a run (kFanIn runs: under 2 MiB)

bool before(const RecordRef& a, const RecordRef& b) {
  return a.index != b.index ? a.index < b.index : a.offset < b.offset;
}

[[noreturn]] void spill_error(const char* what, int err) {
  throw CheckpointError(
      CheckpointError::Reason::io,
      fmt::format("sorting the checkpoint's records: {}: {}", what, std::strerror(err)), "");
}

}  // namespace

void resolve_records(std::vector<RecordRef>& records) {
  std::sort(records.begin(), records.end(), before);
  size_t kept = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (kept > 0 && records[kept - 1].index == records[i].index) {
      records[kept - 1] = records[i];  // later in the file: it wins
    } else {
      records[kept++] = records[i];
    }
  }
  records.resize(kept);
}

// The spill file: unnamed (O_TMPFILE) where the file system allows, else created and unlinked at
// once, so that nothing is left behind whatever happens to the process.
struct RefSpill {
  int fd = -1;
  explicit RefSpill(const std::string& dir) {
    fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return;
    for (const std::string& d :
         {dir, std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")}) {
      std::string name = d + "/.flexllm-refs.XXXXXX";
      fd = ::mkostemp(name.data(), O_CLOEXEC);
      if (fd >= 0) {
        ::unlink(name.c_str());
        return;
      }
    }
    spill_error("cannot create a temporary file", errno);
  }
  ~RefSpill() {
    if (fd >= 0) ::close(fd);
  }
  void write(const RecordRef* refs, size_t count, uint64_t offset) const {
    const char* p = reinterpret_cast<const char*>(refs);
    size_t size = count * sizeof(RecordRef), done = 0;
    while (done < size) {
      ssize_t n = ::pwrite(fd, p + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) spill_error("writing the temporary file", n < 0 ? errno : ENOSPC);
      done += static_cast<size_t>(n);
    }
  }
  void read(RecordRef* refs, size_t count, uint64_t offset) const {
    char* p = reinterpret_cast<char*>(refs);
    size_t size = count * sizeof(RecordRef), done = 0;
    while (done < size) {
      ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) spill_error("reading the temporary file", n < 0 ? errno : EIO);
      done += static_cast<size_t>(n);
    }
  }
};

SortedRefs::Cursor SortedRefs::cursor() const {
  Cursor c;
  c.memory_ = memory_;
  c.spill_ = spill_;
  c.spill_offset_ = spill_offset_;
  c.count_ = count_;
  if (spill_) c.load();
  return c;
}

const RecordRef* SortedRefs::Cursor::get() const {
  if (pos_ >= count_) return nullptr;
  return memory_ ? &(*memory_)[pos_] : &block_[pos_ - block_start_];
}

void SortedRefs::Cursor::load() {
  block_start_ = pos_;
  if (pos_ >= count_) return;
  block_.resize(std::min<uint64_t>(kBlock * 4, count_ - pos_));
  spill_->read(block_.data(), block_.size(), spill_offset_ + pos_ * sizeof(RecordRef));
}

void SortedRefs::Cursor::advance() {
  if (pos_ >= count_) return;
  ++pos_;
  if (memory_) return;
  if (pos_ - block_start_ >= block_.size()) load();
}

const RecordRef* SortedRefs::Cursor::seek(uint64_t index) {
  if (memory_) {
    // In memory: a binary search from here.
    const auto& v = *memory_;
    auto it = std::lower_bound(v.begin() + static_cast<ptrdiff_t>(pos_), v.end(), index,
                               [](const RecordRef& r, uint64_t i) { return r.index < i; });
    pos_ = static_cast<uint64_t>(it - v.begin());
    return pos_ < count_ && v[pos_].index == index ? &v[pos_] : nullptr;
  }
  while (const RecordRef* r = get()) {
    if (r->index >= index) return r->index == index ? r : nullptr;
    advance();
  }
  return nullptr;
}

RefSorter::RefSorter(std::string spill_dir, size_t chunk)
    : dir_(std::move(spill_dir)), chunk_(std::max<size_t>(chunk, 2)) {}

RefSorter::~RefSorter() = default;

void RefSorter::add(const RecordRef& ref) {
  if (buffer_.capacity() == 0) buffer_.reserve(std::min<size_t>(chunk_, 4096));
  if (last_index_ && ref.index <= *last_index_) in_order_ = false;
  last_index_ = ref.index;
  buffer_.push_back(ref);
  if (buffer_.size() >= chunk_) spill_chunk();
}

void RefSorter::spill_chunk() {
  if (buffer_.empty()) return;
  if (!spill_) spill_ = std::make_shared<RefSpill>(dir_);
  if (!in_order_) resolve_records(buffer_);
  spill_->write(buffer_.data(), buffer_.size(), spill_end_);
  spilled_ += buffer_.size();
  runs_.push_back({spill_end_, buffer_.size()});
  spill_end_ += buffer_.size() * sizeof(RecordRef);
  buffer_.clear();
}

// Merges sorted runs into one appended at the end of the spill file, keeping the latest record of
// each index (runs hold disjoint parts of the file, so offsets order records across runs too).
RefSorter::Run RefSorter::merge(const std::vector<Run>& runs) {
  struct Source {
    Run run;
    uint64_t pos = 0;
    std::vector<RecordRef> block;
    size_t at = 0;
  };
  std::vector<Source> sources(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) sources[i].run = runs[i];
  auto refill = [&](Source& s) {
    s.block.resize(std::min<uint64_t>(kBlock, s.run.count - s.pos));
    s.at = 0;
    if (!s.block.empty())
      spill_->read(s.block.data(), s.block.size(), s.run.offset + s.pos * sizeof(RecordRef));
    s.pos += s.block.size();
  };
  auto greater = [&](size_t a, size_t b) {
    return before(sources[b].block[sources[b].at], sources[a].block[sources[a].at]);
  };
  std::priority_queue<size_t, std::vector<size_t>, decltype(greater)> heap(greater);
  for (size_t i = 0; i < sources.size(); ++i) {
    refill(sources[i]);
    if (!sources[i].block.empty()) heap.push(i);
  }
  Run out{spill_end_, 0};
  std::vector<RecordRef> pending;
  pending.reserve(kBlock * 4);
  auto flush = [&] {
    spill_->write(pending.data(), pending.size(), spill_end_);
    spill_end_ += pending.size() * sizeof(RecordRef);
    out.count += pending.size();
    pending.clear();
  };
  while (!heap.empty()) {
    size_t i = heap.top();
    heap.pop();
    Source& s = sources[i];
    const RecordRef& r = s.block[s.at];
    if (!pending.empty() && pending.back().index == r.index) {
      pending.back() = r;  // the same index later in the file
    } else {
      // A new index: every record of the one before has come out (the heap yields by index).
      if (pending.size() == pending.capacity()) flush();
      pending.push_back(r);
    }
    if (++s.at >= s.block.size()) refill(s);
    if (!s.block.empty()) heap.push(i);
  }
  flush();
  return out;
}

SortedRefs RefSorter::finish() {
  SortedRefs out;
  if (!spill_) {
    if (!in_order_) resolve_records(buffer_);
    buffer_.shrink_to_fit();
    out.count_ = buffer_.size();
    out.memory_ = std::make_shared<const std::vector<RecordRef>>(std::move(buffer_));
    buffer_ = {};
    return out;
  }
  spill_chunk();
  std::vector<RecordRef>().swap(buffer_);
  if (in_order_) {  // the runs, one after the other, are sorted and unique already
    out.spill_ = spill_;
    out.spill_offset_ = 0;
    out.count_ = spilled_;
    return out;
  }
  // Merge kFanIn runs at a time until one is left. (Chunks spilled while the references were
  // still in order were not sorted, and need not be: they are.)
  while (runs_.size() > 1) {
    std::vector<Run> next;
    for (size_t i = 0; i < runs_.size(); i += kFanIn) {
      std::vector<Run> group(
          runs_.begin() + static_cast<ptrdiff_t>(i),
          runs_.begin() + static_cast<ptrdiff_t>(std::min(i + kFanIn, runs_.size())));
      next.push_back(group.size() == 1 ? group.front() : merge(group));
    }
    runs_ = std::move(next);
  }
  out.spill_ = spill_;
  out.spill_offset_ = runs_.front().offset;
  out.count_ = runs_.front().count;
  return out;
}

}  // namespace flexllm::detail
