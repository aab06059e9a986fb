// An input iterator over anything with `std::optional<T> next()` that blocks for the next value
// (streams, batch iterators): `for (const T& v : source)` pulls until next() returns nullopt.
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>

namespace flexllm::detail {

template <class Source, class T>
class PullIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = T;
  using difference_type = std::ptrdiff_t;

  PullIterator() = default;
  explicit PullIterator(Source* source) : source_(source) { ++*this; }
  const T& operator*() const { return *current_; }
  const T* operator->() const { return &*current_; }
  PullIterator& operator++() {
    current_ = source_->next();
    return *this;
  }
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

 private:
  Source* source_ = nullptr;
  std::optional<T> current_;
};

}  // namespace flexllm::detail
