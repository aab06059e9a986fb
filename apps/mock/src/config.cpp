#include <charconv>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "flexllm/mock/server.hpp"
#include "json_out.hpp"

namespace flexllm::mock {
namespace {

void check_range(const Range& r, std::string_view field, uint32_t least) {
  if (r.min > r.max)
    throw std::invalid_argument(
        fmt::format("{}: minimum {} is above maximum {}", field, r.min, r.max));
  if (r.min < least)
    throw std::invalid_argument(
        fmt::format("{}: must be at least {} (got {})", field, least, r.min));
}

void check_rate(double v, std::string_view field) {
  if (!(v >= 0 && v <= 1))
    throw std::invalid_argument(fmt::format("{}: a rate must be within [0, 1] (got {})", field, v));
}

void check_non_negative(double v, std::string_view field) {
  if (!(v >= 0) || !std::isfinite(v))
    throw std::invalid_argument(fmt::format("{}: must be a finite number >= 0 (got {})", field, v));
}

uint32_t parse_uint(std::string_view text, std::string_view whole) {
  uint32_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size())
    throw std::invalid_argument(
        fmt::format("expected N or A-B with whole numbers, got '{}'", whole));
  return v;
}

}  // namespace

Range Range::parse(std::string_view text) {
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    uint32_t v = parse_uint(text, text);
    return Range{v, v};
  }
  Range r{parse_uint(text.substr(0, dash), text), parse_uint(text.substr(dash + 1), text)};
  if (r.min > r.max)
    throw std::invalid_argument(
        fmt::format("'{}': the first number must not exceed the second", text));
  return r;
}

void MockConfig::validate() const {
  if (host.empty()) throw std::invalid_argument("host: must not be empty");
  if (models.empty()) throw std::invalid_argument("models: at least one model name is needed");
  for (const auto& m : models)
    if (m.empty()) throw std::invalid_argument("models: a model name must not be empty");
  check_range(latency_ms, "latency_ms", 0);
  check_range(response_tokens, "response_tokens", 1);
  check_range(reasoning_tokens, "reasoning_tokens", 1);
  check_non_negative(token_rate, "token_rate");
  check_rate(faults.http_error, "faults.http_error");
  check_rate(faults.rate_429, "faults.rate_429");
  check_rate(faults.drop, "faults.drop");
  check_rate(faults.hang, "faults.hang");
  check_rate(faults.malformed, "faults.malformed");
  check_rate(faults.truncate, "faults.truncate");
  double sum = faults.http_error + faults.rate_429 + faults.drop + faults.hang + faults.malformed +
               faults.truncate;
  if (sum > 1 + 1e-9)
    throw std::invalid_argument(fmt::format("faults: the rates add up to {} (at most 1)", sum));
  if (error_status < 400 || error_status > 599)
    throw std::invalid_argument(
        fmt::format("error_status: must be a 4xx or 5xx status (got {})", error_status));
  if (retry_after.count() < 0) throw std::invalid_argument("retry_after: must be >= 0");
  check_non_negative(max_qps, "max_qps");
  check_non_negative(qps_burst, "qps_burst");
  if (max_body_bytes == 0) throw std::invalid_argument("max_body_bytes: must be at least 1");
  if (header_timeout.count() <= 0)
    throw std::invalid_argument("header_timeout: must be above 0 ms");
  if (body_timeout.count() <= 0) throw std::invalid_argument("body_timeout: must be above 0 ms");
}

std::string_view to_string(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok: return "ok";
    case Outcome::http_error: return "http_error";
    case Outcome::rate_limited: return "rate_limited";
    case Outcome::qps_limited: return "qps_limited";
    case Outcome::dropped: return "dropped";
    case Outcome::hung: return "hung";
    case Outcome::malformed: return "malformed";
    case Outcome::truncated: return "truncated";
    case Outcome::bad_request: return "bad_request";
  }
  return "unknown";
}

std::string MockStats::to_json(std::chrono::steady_clock::time_point epoch,
                               bool with_arrivals) const {
  using detail::append_json_string;
  using detail::append_uint;
  std::string out = R"({"requests":)";
  append_uint(out, requests);
  out.append(R"(,"other_requests":)");
  append_uint(out, other_requests);
  out.append(R"(,"by_outcome":{)");
  for (size_t i = 0; i < kOutcomeCount; ++i) {
    if (i > 0) out.push_back(',');
    append_json_string(out, to_string(static_cast<Outcome>(i)));
    out.push_back(':');
    append_uint(out, by_outcome[i]);
  }
  out.append(R"(},"in_flight":)");
  append_uint(out, in_flight);
  out.append(R"(,"max_in_flight":)");
  append_uint(out, max_in_flight);
  out.append(R"(,"connections_open":)");
  append_uint(out, connections_open);
  out.append(R"(,"connections_total":)");
  append_uint(out, connections_total);
  out.append(R"(,"max_connections_open":)");
  append_uint(out, max_connections_open);
  out.append(R"(,"arrivals_dropped":)");
  append_uint(out, arrivals_dropped);
  out.append(R"(,"bytes_parsed":)");
  append_uint(out, bytes_parsed);
  out.append(R"(,"max_buffered_bytes":)");
  append_uint(out, max_buffered_bytes);
  if (with_arrivals) {
    out.append(R"(,"arrivals":[)");
    for (size_t i = 0; i < arrivals.size(); ++i) {
      const Arrival& a = arrivals[i];
      if (i > 0) out.push_back(',');
      out.append(R"({"seq":)");
      append_uint(out, a.seq);
      out.append(fmt::format(R"(,"t":{:.6f},"outcome":)",
                             std::chrono::duration<double>(a.at - epoch).count()));
      append_json_string(out, to_string(a.outcome));
      out.append(a.stream ? R"(,"stream":true,"last_user":)" : R"(,"stream":false,"last_user":)");
      append_json_string(out, a.last_user);
      out.push_back('}');
    }
    out.push_back(']');
  }
  out.push_back('}');
  return out;
}

}  // namespace flexllm::mock
