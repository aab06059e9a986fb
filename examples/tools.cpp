// Tool calls: offer a function, read the normalised call, answer it, get the final text.
#include "example_endpoint.hpp"

int main() {
  auto ep = example::endpoint();
  flexllm::LLMClient client(ep.config);
  using flexllm::json;
  json tools = json::array({{{"type", "function"},
                             {"function",
                              {{"name", "get_weather"},
                               {"description", "Current weather in a city"},
                               {"parameters",
                                {{"type", "object"},
                                 {"properties", {{"city", {{"type", "string"}}}}},
                                 {"required", {"city"}}}}}}}});
  json messages = json::array({{{"role", "user"}, {"content", "What's the weather in Paris?"}}});
  flexllm::ChatResult first = client.chat_completions(messages, {.tools = tools});
  if (first.tool_calls.empty()) {
    std::cout << first.content << "\n";
    return 0;
  }
  const flexllm::ToolCall& call = first.tool_calls[0];
  std::cout << "model calls " << call.name << "(" << call.arguments << ")\n";
  messages.push_back(
      {{"role", "assistant"},
       {"content", nullptr},
       {"tool_calls",
        json::array({{{"id", call.id},
                      {"type", "function"},
                      {"function", {{"name", call.name}, {"arguments", call.arguments}}}}})}});
  messages.push_back({{"role", "tool"},
                      {"tool_call_id", call.id},
                      {"content", R"({"temp_c": 18, "sky": "clear"})"}});
  std::cout << client.chat_completions(messages, {.tools = tools}).content << "\n";
}
