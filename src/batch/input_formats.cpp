#include "batch/input_formats.hpp"

#include <array>

#include <fmt/format.h>

namespace flexllm::detail {
namespace {

constexpr std::array<const char*, 3> kPromptKeys = {"prompt", "q", "question"};

json message(const char* role, json content) {
  return json{{"role", role}, {"content", std::move(content)}};
}

bool has_system_message(const json& messages) {
  for (const json& m : messages)
    if (m.is_object() && m.value("role", "") == "system") return true;
  return false;
}

void add_system(json& messages, const json& system) {
  if (system.is_null() || has_system_message(messages)) return;
  messages.insert(messages.begin(), message("system", system));
}

SourceItem failed(std::string why) {
  SourceItem item;
  item.error = std::move(why);
  return item;
}

// A prompt is text, or a list of content parts (images, later) taken as they are.
bool is_content(const json& v) {
  return v.is_string() || (v.is_array() && !v.empty());
}

}  // namespace

SourceItem request_from_record(json record, const std::string& default_system) {
  const json fallback_system = default_system.empty() ? json() : json(default_system);
  SourceItem item;
  if (record.is_string()) {
    item.messages = json::array({message("user", std::move(record))});
    add_system(item.messages, fallback_system);
    return item;
  }
  if (record.is_array()) {
    if (record.empty()) return failed("an empty messages array");
    item.messages = std::move(record);
    add_system(item.messages, fallback_system);
    return item;
  }
  if (!record.is_object())
    return failed(fmt::format("expected an object, a messages array or a prompt string, got {}",
                              record.type_name()));

  json system = fallback_system;
  if (auto it = record.find("system"); it != record.end()) {
    if (!it->is_string() && !it->is_null()) return failed("field \"system\" must be a string");
    if (it->is_string()) system = *it;
    record.erase(it);
  }
  if (auto it = record.find("messages"); it != record.end()) {
    if (!it->is_array() || it->empty())
      return failed("field \"messages\" must be a non-empty array of messages");
    item.messages = std::move(*it);
    record.erase(it);
  } else if (auto key = std::find_if(kPromptKeys.begin(), kPromptKeys.end(),
                                     [&](const char* k) { return record.contains(k); });
             key != kPromptKeys.end()) {
    auto it = record.find(*key);
    if (!is_content(*it))
      return failed(
          fmt::format("field \"{}\" must be a string (or a list of content parts)", *key));
    item.messages = json::array({message("user", std::move(*it))});
    record.erase(it);
  } else if (auto it = record.find("instruction"); it != record.end()) {
    if (!it->is_string()) return failed("field \"instruction\" must be a string");
    std::string text = it->get<std::string>();
    record.erase(it);
    if (auto in = record.find("input"); in != record.end()) {
      if (!in->is_string() && !in->is_null()) return failed("field \"input\" must be a string");
      if (in->is_string() && !in->get_ref<const std::string&>().empty())
        text += "\n\n" + in->get<std::string>();
      record.erase(in);
    }
    item.messages = json::array({message("user", std::move(text))});
  } else {
    std::string fields;
    for (const auto& [k, v] : record.items()) fields += (fields.empty() ? "" : ", ") + k;
    return failed(fmt::format(
        "expected a field \"messages\", \"prompt\", \"q\", \"question\" or \"instruction\" "
        "(the record has: {})",
        fields.empty() ? "no fields" : fields));
  }
  add_system(item.messages, system);
  if (!record.empty()) item.metadata = std::move(record);
  return item;
}

std::string describe_parse_error(const std::string& line) {
  try {
    json parsed = json::parse(line);
    (void)parsed;
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 7: syntax error …"
    std::string what = e.what();
    if (auto at = what.find("column "); at != std::string::npos) return what.substr(at);
    return what;
  }
  return "not valid JSON";
}

std::string too_long_line(size_t limit) {
  const std::string size = limit % (1 << 20) == 0 && limit > 0 ? fmt::format("{} MiB", limit >> 20)
                           : limit % (1 << 10) == 0 && limit > 0
                               ? fmt::format("{} KiB", limit >> 10)
                               : fmt::format("{} bytes", limit);
  return fmt::format("line longer than {} (the most a JSONL input line may hold)", size);
}

}  // namespace flexllm::detail
