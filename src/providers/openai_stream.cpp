// The OpenAI-compatible stream: SSE events carrying chat.completion.chunk objects, decoded into
// StreamEvents as the bytes arrive and assembled into the final ChatResult; and the splitting of
// <think>-tagged content shared with non-streamed replies.
#include "providers/openai.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>

#include "core/text.hpp"
#include "providers/openai_json.hpp"
#include "transport/sse.hpp"

namespace flexllm::detail {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

}  // namespace

namespace openai {

bool starts_with_think(std::string_view content) noexcept {
  return trim_left(content).substr(0, kThinkOpen.size()) == kThinkOpen;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Streaming.

struct ToolAccumulator {
  int64_t index;
  ToolCall call;
};

class OpenAIStreamDecoder final : public StreamDecoder {
 public:
  explicit OpenAIStreamDecoder(const Endpoint& ep) : endpoint_(ep.shown()), key_(ep.api_key) {}

  std::optional<Error> feed(std::string_view bytes, std::vector<StreamEvent>& out) override {
    if (error_) return error_;
    if (done_) return std::nullopt;  // anything after [DONE] is ignored
    bytes_ += bytes.size();
    if (body_ != Body::sse && sniff(bytes)) return append_reply(bytes);
    out_ = &out;
    const SseDecoder::Status status =
        sse_.feed(bytes, [this](const SseEvent& ev) { return on_event(ev); });
    out_ = nullptr;
    if (status == SseDecoder::Status::too_large) {
      error_ = Error(ErrorKind::parse,
                     fmt::format("stream from {}: an event exceeds the {} MiB limit", endpoint_,
                                 sse_.max_event_bytes() >> 20),
                     endpoint_, 0, {}, false);
    }
    return error_;
  }

  std::variant<ChatResult, Error> finish() override {
    if (error_) return *error_;
    if (body_ == Body::json) {
      Endpoint ep;
      ep.base_url = endpoint_;
      ep.api_key = key_;
      ChatResult r;
      if (auto e = openai_adapter().parse_chat_response(ep, reply_, r)) return *std::move(e);
      return r;
    }
    if (!done_ && finish_reason_.empty()) {
      return Error(
          ErrorKind::truncated,
          fmt::format("stream from {} ended before [DONE]/finish_reason ({} bytes "
                      "received{})",
                      endpoint_, bytes_, sse_.pending() ? ", the last event incomplete" : ""),
          endpoint_, 0, {}, true);
    }
    flush_tags(nullptr);
    ChatResult r;
    r.content = std::move(content_);
    if (!reasoning_.empty()) r.reasoning = std::move(reasoning_);
    r.usage = usage_;
    r.finish_reason = std::move(finish_reason_);
    std::stable_sort(
        tools_.begin(), tools_.end(),
        [](const ToolAccumulator& a, const ToolAccumulator& b) { return a.index < b.index; });
    r.tool_calls.reserve(tools_.size());
    for (ToolAccumulator& t : tools_) {
      if (t.call.arguments.empty()) t.call.arguments = "{}";
      r.tool_calls.push_back(std::move(t.call));
    }
    return r;
  }

  void content_type(std::string_view value) override {
    json_type_ = iequals(trim(value.substr(0, value.find(';'))), "application/json");
  }

 private:
  // Some servers ignore stream:true and answer with the whole completion as one JSON object:
  // that reply is read as such (a body that opens with '{' or '[' cannot be meaningful SSE, and
  // with Content-Type application/json, anything that does not open like an SSE line is taken
  // as JSON too). Decided on the body's first non-blank byte; true when the body is JSON.
  bool sniff(std::string_view& bytes) {
    if (body_ == Body::json) return true;
    size_t i = 0;
    while (i < bytes.size() && is_space(bytes[i])) ++i;
    if (i == bytes.size()) return false;  // blank so far: harmless as SSE too
    const char c = bytes[i];
    const bool sse_like = c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (c == '{' || c == '[' || (json_type_ && !sse_like)) {
      body_ = Body::json;
      whole_reply_ = true;
      bytes.remove_prefix(i);
      return true;
    }
    body_ = Body::sse;
    return false;
  }

  std::optional<Error> append_reply(std::string_view bytes) {
    if (reply_.size() + bytes.size() > kMaxReplyBytes) {
      error_ = Error(ErrorKind::parse,
                     fmt::format("reply from {} (a JSON body answering a stream) is larger than "
                                 "{} MiB",
                                 endpoint_, kMaxReplyBytes >> 20),
                     endpoint_);
      return error_;
    }
    reply_.append(bytes);
    ++data_events_;  // a reply arriving is progress
    return std::nullopt;
  }

  bool on_event(const SseEvent& ev) {
    std::string_view data = trim_right(trim_left(ev.data));
    if (data.empty()) return true;  // keep-alive
    ++data_events_;
    if (data == "[DONE]") {
      done_ = true;
      flush_tags(out_);
      return false;
    }
    element doc;
    if (auto err = parse_json(data, doc); err) {
      if (ev.event == "error") {  // a typed error event whose data is plain text
        std::string ex = body_excerpt(data, key_);
        std::string message =
            fmt::format("provider error from {}: {}", endpoint_, escape_controls(ex));
        error_ = Error(ErrorKind::provider, std::move(message), endpoint_, 0, std::move(ex), false);
      } else {
        error_ = parse_error(endpoint_, key_,
                             fmt::format("invalid JSON in stream from {}: {}", endpoint_,
                                         simdjson::error_message(err)),
                             data);
      }
      return false;
    }
    object chunk;
    if (doc.get_object().get(chunk) != simdjson::SUCCESS) {
      error_ =
          parse_error(endpoint_, key_,
                      fmt::format("stream event from {} is not a JSON object", endpoint_), data);
      return false;
    }
    element err;
    if (find_error(chunk, err)) {
      error_ = provider_error(endpoint_, key_, err, data);
      return false;
    }
    if (ev.event == "error") {  // a typed error event: the object is the error
      error_ = provider_error(endpoint_, key_, doc, data);
      return false;
    }
    array choices;
    if (chunk["choices"].get_array().get(choices) == simdjson::SUCCESS) {
      for (element choice : choices) {
        // One completion per request (n = 1): choices other than index 0 are ignored.
        if (auto idx = read_int(choice["index"]); idx && *idx != 0) continue;
        on_choice(choice);
      }
    }
    if (auto usage = read_usage(chunk["usage"])) {
      usage_ = usage;
      StreamEvent e;
      e.kind = StreamEvent::usage;
      e.usage_info = usage;
      out_->push_back(std::move(e));
    }
    return true;
  }

  void on_choice(element choice) {
    object delta;
    if (choice["delta"].get_object().get(delta) == simdjson::SUCCESS) {
      std::string_view reasoning = read_reasoning(delta);
      if (!reasoning.empty()) {
        reasoning_field_ = true;
        emit(StreamEvent::thinking, reasoning);
      }
      element content;
      if (delta["content"].get(content) == simdjson::SUCCESS && !content.is_null()) {
        if (reasoning_field_) splitter_.pass_through();
        text_.clear();
        append_content(text_, content);
        if (!text_.empty()) {
          thinking_piece_.clear();
          content_piece_.clear();
          splitter_.push(text_, thinking_piece_, content_piece_);
          emit(StreamEvent::thinking, thinking_piece_);
          emit(StreamEvent::content, content_piece_);
        }
      }
      array calls;
      if (delta["tool_calls"].get_array().get(calls) == simdjson::SUCCESS) {
        int64_t position = 0;
        for (element call : calls) on_tool_call(call, position++);
      }
    }
    std::string_view finish;
    if (choice["finish_reason"].get_string().get(finish) == simdjson::SUCCESS && !finish.empty()) {
      finish_reason_.assign(finish);
      flush_tags(out_);  // the content is complete: release any held-back text
    }
  }

  void on_tool_call(element call, int64_t position) {
    // Servers that send each call whole sometimes leave out the index: use the position.
    const int64_t index = read_int(call["index"]).value_or(position);
    ToolAccumulator* acc = nullptr;
    for (ToolAccumulator& t : tools_) {
      if (t.index == index) {
        acc = &t;
        break;
      }
    }
    if (!acc) acc = &tools_.emplace_back(ToolAccumulator{index, {}});

    ToolCallDelta d;
    d.index = static_cast<int>(index);
    std::string_view s;
    if (call["id"].get_string().get(s) == simdjson::SUCCESS && !s.empty()) {
      d.id.assign(s);
      if (acc->call.id.empty()) acc->call.id.assign(s);
    }
    if (call["type"].get_string().get(s) == simdjson::SUCCESS && !s.empty())
      acc->call.type.assign(s);
    object fn;
    if (call["function"].get_object().get(fn) == simdjson::SUCCESS) {
      if (fn["name"].get_string().get(s) == simdjson::SUCCESS && !s.empty()) {
        d.name.assign(s);
        // Some servers repeat the name on every piece: it names the call, it is not a fragment.
        if (acc->call.name.empty()) acc->call.name.assign(s);
      }
      element args;
      if (fn["arguments"].get(args) == simdjson::SUCCESS) append_text_or_json(d.arguments, args);
      acc->call.arguments.append(d.arguments);
    }
    StreamEvent e;
    e.kind = StreamEvent::tool_call;
    e.tool = std::move(d);
    out_->push_back(std::move(e));
  }

  void emit(StreamEvent::Kind kind, std::string_view text) {
    if (text.empty()) return;
    (kind == StreamEvent::thinking ? reasoning_ : content_).append(text);
    if (!out_) return;
    StreamEvent e;
    e.kind = kind;
    e.text.assign(text);
    out_->push_back(std::move(e));
  }

  // Releases text the tag splitter holds back; as events when `out` is given.
  void flush_tags(std::vector<StreamEvent>* out) {
    thinking_piece_.clear();
    content_piece_.clear();
    splitter_.flush(thinking_piece_, content_piece_);
    std::vector<StreamEvent>* saved = out_;
    out_ = out;
    emit(StreamEvent::thinking, thinking_piece_);
    emit(StreamEvent::content, content_piece_);
    out_ = saved;
  }

  // The most a JSON body answering a stream may have (as for a non-streamed reply).
  static constexpr size_t kMaxReplyBytes = size_t{64} << 20;
  enum class Body { unknown, sse, json };

  std::string endpoint_;
  std::string key_;
  Body body_ = Body::unknown;
  bool json_type_ = false;  // Content-Type: application/json
  std::string reply_;       // the body, when it is one JSON reply
  SseDecoder sse_;
  std::vector<StreamEvent>* out_ = nullptr;
  std::optional<Error> error_;
  bool done_ = false;
  bool reasoning_field_ = false;
  size_t bytes_ = 0;
  std::string content_;
  std::string reasoning_;
  std::string finish_reason_;
  std::optional<Usage> usage_;
  std::vector<ToolAccumulator> tools_;
  ThinkTagSplitter splitter_;
  std::string text_, thinking_piece_, content_piece_;  // reused per delta
};

}  // namespace

}  // namespace openai

// ---------------------------------------------------------------------------------------------
// ThinkTagSplitter

void ThinkTagSplitter::push(std::string_view delta, std::string& thinking, std::string& content) {
  while (!delta.empty()) {
    switch (state_) {
      case State::start: {
        // Leading whitespace and a possible partial "<think>" are held until it is decided.
        hold_.append(delta);
        delta = {};
        const std::string_view rest = trim_left(hold_);
        if (rest.empty()) return;
        const size_t n = std::min(rest.size(), kThinkOpen.size());
        if (rest.substr(0, n) != kThinkOpen.substr(0, n)) {
          state_ = State::answer;  // no think block: the content passes through unchanged
          content.append(hold_);
          hold_.clear();
          return;
        }
        if (rest.size() < kThinkOpen.size()) return;  // "<thi" so far
        saw_think_ = true;
        state_ = State::think_lead;
        scratch_.assign(rest.substr(kThinkOpen.size()));
        hold_.clear();
        delta = scratch_;
        break;
      }
      case State::think_lead:
      case State::after_think:
        delta = trim_left(delta);
        if (delta.empty()) return;
        state_ = state_ == State::think_lead ? State::think : State::answer;
        break;
      case State::think: {
        std::string_view text = delta;
        if (!hold_.empty()) {
          // Held text comes before this delta. (A delta that is scratch_ only arrives from the
          // start state, which leaves nothing held.)
          scratch_.assign(hold_);
          scratch_.append(delta);
          hold_.clear();
          text = scratch_;
        }
        if (size_t close = text.find(kThinkClose); close != std::string_view::npos) {
          thinking.append(trim_right(text.substr(0, close)));
          state_ = State::after_think;
          delta = text.substr(close + kThinkClose.size());
          break;
        }
        // Hold back a suffix that may begin "</think>", and the blanks before it: the thought
        // is trimmed at its end.
        size_t keep = 0;
        for (size_t k = std::min(text.size(), kThinkClose.size() - 1); k > 0; --k) {
          if (text.substr(text.size() - k) == kThinkClose.substr(0, k)) {
            keep = k;
            break;
          }
        }
        size_t cut = text.size() - keep;
        while (cut > 0 && is_space(text[cut - 1])) --cut;
        thinking.append(text.substr(0, cut));
        hold_.assign(text.substr(cut));
        return;
      }
      case State::answer: content.append(delta); return;
    }
  }
}

void ThinkTagSplitter::flush(std::string& thinking, std::string& content) {
  if (state_ == State::start) {
    content.append(hold_);
    state_ = State::answer;
  } else if (state_ == State::think) {
    // Unclosed think block: a partial "</thi" is thought text; trailing blanks are trimmed.
    thinking.append(trim_right(hold_));
  }
  hold_.clear();
}

void ThinkTagSplitter::pass_through() {
  if (state_ == State::start && hold_.empty()) state_ = State::answer;
}

// ---------------------------------------------------------------------------------------------
// OpenAIAdapter: the stream half (the rest is in openai.cpp)

std::unique_ptr<StreamDecoder> OpenAIAdapter::make_stream_decoder(const Endpoint& ep) const {
  return std::make_unique<openai::OpenAIStreamDecoder>(ep);
}

}  // namespace flexllm::detail
