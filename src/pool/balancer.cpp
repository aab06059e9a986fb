#include "pool/balancer.hpp"

#include <algorithm>
#include <tuple>

namespace flexllm::detail {
namespace {

bool contains(std::span<const size_t> set, size_t i) {
  return std::find(set.begin(), set.end(), i) != set.end();
}

// The least candidate by `less`, scanning from position `start` and keeping the first of equals,
// so ties go to the first candidate after the cursor.
template <class Less>
size_t least_from(const std::vector<size_t>& candidates, size_t start, Less less) {
  size_t best = candidates[start];
  for (size_t k = 1; k < candidates.size(); ++k) {
    size_t i = candidates[(start + k) % candidates.size()];
    if (less(i, best)) best = i;
  }
  return best;
}

}  // namespace

Balancer::Balancer(LoadBalance strategy, std::vector<Endpoint> endpoints, int failure_threshold,
                   Clock::duration recovery_time, uint64_t seed)
    : strategy_(strategy),
      failure_threshold_(std::max(failure_threshold, 1)),
      recovery_time_(recovery_time),
      random_(seed) {
  endpoints_.reserve(endpoints.size());
  for (Endpoint config : endpoints) {
    config.capacity = std::max(config.capacity, 1);
    endpoints_.push_back(State{.config = config});
  }
  candidates_.reserve(endpoints_.size());
}

size_t Balancer::pick(Clock::time_point now, std::span<const size_t> avoid) {
  if (size_t i = due_probe(now, avoid); i < size()) return reserve_probe(i);
  candidates_.clear();
  for (size_t i = 0; i < size(); ++i)
    if (endpoints_[i].healthy && !contains(avoid, i)) candidates_.push_back(i);
  if (candidates_.empty())
    for (size_t i = 0; i < size(); ++i)
      if (endpoints_[i].healthy) candidates_.push_back(i);
  if (!candidates_.empty()) return choose();
  if (size_t i = due_probe(now, {}); i < size()) return reserve_probe(i);
  return fallback_target(avoid);
}

size_t Balancer::due_probe(Clock::time_point now, std::span<const size_t> avoid) const {
  size_t best = size();
  for (size_t i = 0; i < size(); ++i) {
    if (!due(endpoints_[i], now) || contains(avoid, i)) continue;
    if (best == size() || endpoints_[i].probe_due < endpoints_[best].probe_due) best = i;
  }
  return best;
}

size_t Balancer::fallback_target(std::span<const size_t> avoid) const {
  auto key = [&](size_t i) {
    const State& e = endpoints_[i];
    return std::tuple(e.probe != Probe::none, contains(avoid, i), e.last_failure, i);
  };
  size_t best = 0;
  for (size_t i = 1; i < size(); ++i)
    if (key(i) < key(best)) best = i;
  return best;
}

size_t Balancer::reserve_probe(size_t i) {
  endpoints_[i].probe = Probe::reserved;
  return i;
}

size_t Balancer::choose() {
  switch (strategy_) {
    case LoadBalance::round_robin: break;
    case LoadBalance::weighted: return smooth_weighted();
    case LoadBalance::random: {
      std::uniform_int_distribution<size_t> index(0, candidates_.size() - 1);
      return candidates_[index(random_)];
    }
    case LoadBalance::fallback: return candidates_.front();
    case LoadBalance::least_busy: {
      // in_flight / capacity compared exactly, by cross-multiplying.
      size_t best = least_from(candidates_, rotation_start(), [&](size_t a, size_t b) {
        const State& x = endpoints_[a];
        const State& y = endpoints_[b];
        return int64_t{x.in_flight} * y.config.capacity < int64_t{y.in_flight} * x.config.capacity;
      });
      // pick() does not count in flight: between two starts, equally idle endpoints take turns.
      cursor_ = best + 1;
      return best;
    }
    case LoadBalance::latency: {
      // Unmeasured endpoints have latency 0: each is tried before the fastest measured one wins.
      size_t best = least_from(candidates_, rotation_start(), [&](size_t a, size_t b) {
        return endpoints_[a].latency < endpoints_[b].latency;
      });
      cursor_ = best + 1;
      return best;
    }
  }
  return round_robin();
}

size_t Balancer::round_robin() {
  size_t chosen = candidates_[rotation_start()];
  cursor_ = chosen + 1;
  return chosen;
}

// nginx's smooth weighted round robin: every candidate gains its weight, the richest is chosen and
// pays the total. Proportions are exact over every cycle and the heavy endpoint's turns are
// interleaved with the others' rather than bunched.
size_t Balancer::smooth_weighted() {
  double total = 0;
  size_t chosen = size();
  for (size_t i : candidates_) {
    State& e = endpoints_[i];
    if (e.config.weight <= 0) continue;
    e.current_weight += e.config.weight;
    total += e.config.weight;
    if (chosen == size() || e.current_weight > endpoints_[chosen].current_weight) chosen = i;
  }
  if (chosen == size()) return round_robin();  // only weightless endpoints are left
  endpoints_[chosen].current_weight -= total;
  return chosen;
}

size_t Balancer::rotation_start() const {
  auto at = std::lower_bound(candidates_.begin(), candidates_.end(), cursor_);
  return at == candidates_.end() ? 0 : static_cast<size_t>(at - candidates_.begin());
}

void Balancer::on_abandon(size_t i) {
  State& e = endpoints_[i];
  if (e.probe == Probe::reserved) e.probe = Probe::none;
}

void Balancer::on_start(size_t i, Clock::time_point now) {
  State& e = endpoints_[i];
  ++e.in_flight;
  if (!e.healthy && (e.probe == Probe::reserved || due(e, now))) e.probe = Probe::running;
}

void Balancer::on_success(size_t i, std::chrono::duration<double> latency) {
  State& e = endpoints_[i];
  --e.in_flight;
  e.healthy = true;
  e.failures = 0;
  e.probe = Probe::none;
  e.latency = e.measured ? (1 - kLatencyAlpha) * e.latency + kLatencyAlpha * latency.count()
                         : latency.count();
  e.measured = true;
}

void Balancer::on_failure(size_t i, Clock::time_point now, bool counts) {
  State& e = endpoints_[i];
  --e.in_flight;
  if (!counts) {
    end_without_verdict(e);
    return;
  }
  e.last_failure = now;
  ++e.failures;
  if (e.healthy) {
    if (e.failures < failure_threshold_) return;
    e.healthy = false;
    e.probe_due = now + recovery_time_;
  } else if (e.probe == Probe::running) {
    // The first verdict after the probe started settles it: the failure of an attempt that was
    // already in flight is as much evidence that the endpoint is still down.
    e.probe = Probe::none;
    e.probe_due = now + recovery_time_;
  }
}

void Balancer::on_cancel(size_t i) {
  State& e = endpoints_[i];
  --e.in_flight;
  end_without_verdict(e);
}

void Balancer::end_without_verdict(State& e) {
  if (e.probe == Probe::running && e.in_flight == 0) e.probe = Probe::none;
}

bool Balancer::accepts(size_t i, Clock::time_point now) const {
  const State& e = endpoints_[i];
  if (e.healthy || due(e, now)) return true;
  for (const State& other : endpoints_)
    if (other.healthy) return false;
  return fallback_target({}) == i;
}

}  // namespace flexllm::detail
