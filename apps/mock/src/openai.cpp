#include "openai.hpp"

#include "json_out.hpp"

namespace flexllm::mock::detail {
namespace {

constexpr size_t kToolArgPiece = 16;  // bytes of tool arguments per stream event

void append_usage(std::string& out, const ChatReply& reply) {
  out.append(R"("usage":{"prompt_tokens":)");
  append_uint(out, reply.prompt_tokens);
  out.append(R"(,"completion_tokens":)");
  append_uint(out, reply.completion_tokens);
  out.append(R"(,"total_tokens":)");
  append_uint(out, uint64_t{reply.prompt_tokens} + reply.completion_tokens);
  out.append(
      R"(,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":)");
  append_uint(out, reply.reasoning_tokens);
  out.append("}}");
}

void append_head(std::string& out, const ReplyIdentity& ident, std::string_view object) {
  out.append(R"({"id":)");
  append_json_string(out, ident.id);
  out.append(R"(,"object":")");
  out.append(object);
  out.append(R"(","created":)");
  append_uint(out, static_cast<uint64_t>(ident.created));
  out.append(R"(,"model":)");
  append_json_string(out, ident.model);
}

void append_tool_call(std::string& out, const ToolCallPlan& tool, std::string_view arguments) {
  out.append(R"({"index":0,"id":)");
  append_json_string(out, tool.id);
  out.append(R"(,"type":"function","function":{"name":)");
  append_json_string(out, tool.name);
  out.append(R"(,"arguments":)");
  append_json_string(out, arguments);
  out.append("}}");
}

}  // namespace

std::string render_completion(const ReplyIdentity& ident, const ChatReply& reply) {
  std::string out;
  out.reserve(256 + reply.content.text.size() + reply.reasoning.text.size());
  append_head(out, ident, "chat.completion");
  out.append(R"(,"choices":[{"index":0,"message":{"role":"assistant","content":)");
  if (reply.tool && reply.content.size() == 0) {
    out.append("null");  // a pure tool call
  } else {
    append_json_string(out, reply.content.text);
  }
  if (reply.reasoning.size() > 0) {
    out.append(R"(,"reasoning_content":)");
    append_json_string(out, reply.reasoning.text);
  }
  if (reply.tool) {
    out.append(R"(,"tool_calls":[)");
    append_tool_call(out, *reply.tool, reply.tool->arguments);
    out.push_back(']');
  }
  out.append(R"(,"refusal":null},"logprobs":null,"finish_reason":)");
  append_json_string(out, reply.finish_reason);
  out.append("}],");
  append_usage(out, reply);
  out.append(R"(,"system_fingerprint":"fp_flexllm_mock"})");
  return out;
}

std::string render_malformed_completion(const ReplyIdentity& ident) {
  std::string out;
  append_head(out, ident, "chat.completion");
  out.append(
      R"(,"choices":[{"index":0,"message":{"role":"assistant","content":"This reply is cut)");
  return out;
}

StreamRenderer::StreamRenderer(const ReplyIdentity& ident, const ChatReply& reply,
                               bool include_usage)
    : reply_(reply), include_usage_(include_usage) {
  prefix_ = "data: ";
  append_head(prefix_, ident, "chat.completion.chunk");
  prefix_.append(R"(,"choices":[{"index":0,"delta":)");
}

size_t StreamRenderer::tool_pieces() const {
  if (!reply_.tool) return 0;
  return 1 + (reply_.tool->arguments.size() + kToolArgPiece - 1) / kToolArgPiece;
}

size_t StreamRenderer::token_events() const {
  return reply_.reasoning.size() + reply_.content.size() + tool_pieces();
}

void StreamRenderer::open_chunk(std::string& out) const {
  out.append(prefix_);
}

void StreamRenderer::close_chunk(std::string& out, std::string_view finish_reason) const {
  out.append(R"(,"logprobs":null,"finish_reason":)");
  append_json_string_or_null(out, finish_reason);
  out.append("}]");
  if (include_usage_) out.append(R"(,"usage":null)");
  out.append("}\n\n");
}

void StreamRenderer::append_event(std::string& out, size_t i) const {
  const size_t tokens = token_events();
  if (i == 0) {
    open_chunk(out);
    out.append(R"({"role":"assistant","content":"","refusal":null})");
    close_chunk(out, "");
    return;
  }
  if (i <= tokens) {
    size_t t = i - 1;
    open_chunk(out);
    if (t < reply_.reasoning.size()) {
      out.append(R"({"reasoning_content":)");
      append_json_string(out, reply_.reasoning.token(t));
      out.push_back('}');
    } else if (t -= reply_.reasoning.size(); t < reply_.content.size()) {
      out.append(R"({"content":)");
      append_json_string(out, reply_.content.token(t));
      out.push_back('}');
    } else {
      t -= reply_.content.size();
      out.append(R"({"tool_calls":[)");
      if (t == 0) {
        append_tool_call(out, *reply_.tool, "");
      } else {
        out.append(R"({"index":0,"function":{"arguments":)");
        append_json_string(out, std::string_view(reply_.tool->arguments)
                                    .substr((t - 1) * kToolArgPiece, kToolArgPiece));
        out.append("}}");
      }
      out.append("]}");
    }
    close_chunk(out, "");
    return;
  }
  if (i == tokens + 1) {
    open_chunk(out);
    out.append("{}");
    close_chunk(out, reply_.finish_reason);
    return;
  }
  if (include_usage_ && i == tokens + 2) {
    // The usage chunk: empty choices, usage filled (stream_options.include_usage).
    std::string_view head = std::string_view(prefix_).substr(0, prefix_.find(R"(,"choices")"));
    out.append(head);
    out.append(R"(,"choices":[],)");
    append_usage(out, reply_);
    out.append("}\n\n");
    return;
  }
  out.append("data: [DONE]\n\n");
}

void StreamRenderer::append_malformed_event(std::string& out) {
  out.append(
      "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"choices\":[{\n\n");
}

std::string render_error(std::string_view message, std::string_view type, std::string_view code) {
  std::string out = R"({"error":{"message":)";
  append_json_string(out, message);
  out.append(R"(,"type":)");
  append_json_string(out, type);
  out.append(R"(,"param":null,"code":)");
  append_json_string_or_null(out, code);
  out.append("}}");
  return out;
}

std::string render_models(const std::vector<std::string>& models) {
  std::string out = R"({"object":"list","data":[)";
  for (size_t i = 0; i < models.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(R"({"id":)");
    append_json_string(out, models[i]);
    out.append(R"(,"object":"model","created":1700000000,"owned_by":"flexllm-mock"})");
  }
  out.append("]}");
  return out;
}

}  // namespace flexllm::mock::detail
