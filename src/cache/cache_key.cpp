#include "cache/cache_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include <simdjson.h>

#include "core/hex.hpp"
#include "core/json_write.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

CacheKey key_of(XXH128_hash_t h) {
  XXH128_canonical_t canonical;  // high64 then low64, each big-endian
  XXH128_canonicalFromHash(&canonical, h);
  CacheKey key;
  std::memcpy(key.data(), canonical.digest, key.size());
  return key;
}

std::string content_hash(XXH128_hash_t h) {
  std::string out = "xxh3:";
  append_hex(out, key_of(h));
  return out;
}

// Standard base64 (RFC 4648 §4), padding optional; nullopt on any character outside the alphabet,
// '=' anywhere but the end, or a length no encoder produces.
std::optional<std::string> decode_base64(std::string_view in) {
  static constexpr auto kValues = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < kAlphabet.size(); ++i)
      t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  if (pad > 0 && in.size() % 4 != 0) return std::nullopt;
  in.remove_suffix(pad);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;  // only the low `bits` bits are pending; higher ones are spent
  int bits = 0;
  for (char c : in) {
    const int v = kValues[static_cast<uint8_t>(c)];
    if (v < 0) return std::nullopt;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>(acc >> bits & 0xff));
    }
  }
  return out;
}

// XXH3-128 of the bytes of the regular file at `path`, or nullopt when there is none readable.
std::optional<XXH128_hash_t> hash_file(std::string_view path) {
  if (path.empty() || path.find('\0') != std::string_view::npos) return std::nullopt;
  // O_NONBLOCK: a path naming a FIFO must not block the caller; it is rejected below.
  struct File {
    int fd;
    ~File() {
      if (fd >= 0) ::close(fd);
    }
  } file{::open(std::string(path).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  const int fd = file.fd;
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  const std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(),
                                                                              XXH3_freeState);
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) return std::nullopt;
  std::vector<char> buf(size_t{1} << 16);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    XXH3_128bits_update(state.get(), buf.data(), static_cast<size_t>(n));
  }
  return XXH3_128bits_digest(state.get());
}

// What an image URL contributes to the key: the content hash of the image's bytes when they are
// inline or in a local file, nullopt (the URL itself stays) for remote URLs and unreadable paths.
std::optional<std::string> image_hash(std::string_view url) {
  if (url.starts_with("data:")) {
    const size_t comma = url.find(',');
    if (comma != std::string_view::npos && url.substr(0, comma).ends_with(";base64")) {
      if (std::optional<std::string> bytes = decode_base64(url.substr(comma + 1)))
        return content_hash(XXH3_128bits(bytes->data(), bytes->size()));
    }
    return content_hash(XXH3_128bits(url.data(), url.size()));  // not base64: the text is the data
  }
  std::string_view path = url;
  if (path.starts_with("file://")) {
    path.remove_prefix(7);
    if (path.starts_with("localhost/")) path.remove_prefix(9);
  } else if (path.find("://") != std::string_view::npos) {
    return std::nullopt;
  }
  if (std::optional<XXH128_hash_t> h = hash_file(path)) return content_hash(*h);
  return std::nullopt;
}

// The URL of an image part — {"type":"image_url","image_url":{"url":U}} or the plain-string form
// {"type":"image_url","image_url":U} — or nullptr.
const std::string* image_url_of(const json& part) {
  if (!part.is_object()) return nullptr;
  const auto type = part.find("type");
  if (type == part.end() || !type->is_string() ||
      type->get_ref<const std::string&>() != "image_url")
    return nullptr;
  const auto image = part.find("image_url");
  if (image == part.end()) return nullptr;
  if (image->is_string()) return image->get_ptr<const std::string*>();
  if (!image->is_object()) return nullptr;
  const auto url = image->find("url");
  return url != image->end() && url->is_string() ? url->get_ptr<const std::string*>() : nullptr;
}

// `message` with the URL of content part i replaced by hashes[i] where that is set. Built member
// by member so that the image strings (megabytes when inline) are never copied.
json with_image_hashes(const json& message, const std::vector<std::optional<std::string>>& hashes) {
  json out = json::object();
  for (const auto& [k, v] : message.items())
    if (k != "content") out[k] = v;
  const json& parts = *message.find("content");
  json& new_parts = out["content"] = json::array();
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!hashes[i]) {
      new_parts.push_back(parts[i]);
      continue;
    }
    json part = json::object();
    for (const auto& [k, v] : parts[i].items())
      if (k != "image_url") part[k] = v;
    const json& image = *parts[i].find("image_url");
    if (image.is_string()) {
      part["image_url"] = *hashes[i];
    } else {
      json& new_image = part["image_url"] = json::object();
      for (const auto& [k, v] : image.items())
        if (k != "url") new_image[k] = v;
      new_image["url"] = *hashes[i];
    }
    new_parts.push_back(std::move(part));
  }
  return out;
}

// The endpoint's identity: without trailing '/' and without user info, whose credentials do not
// change which server answers and must never reach the key text.
std::string endpoint_identity(std::string_view base_url) {
  while (base_url.ends_with('/')) base_url.remove_suffix(1);
  const size_t scheme = base_url.find("://");
  if (scheme == std::string_view::npos) return std::string(base_url);
  const size_t host = scheme + 3;
  const size_t at = base_url.substr(host, base_url.find_first_of("/?#", host) - host).rfind('@');
  if (at == std::string_view::npos) return std::string(base_url);
  std::string out(base_url.substr(0, host));
  out.append(base_url.substr(host + at + 1));
  return out;
}

// Writes the key object straight into one string. Members are appended in sorted order, as
// nlohmann::json (std::map objects) would order them, and nested objects are walked in their
// (sorted) order. Strings are checked for UTF-8 and escaped here (nlohmann's escaping runs byte
// by byte, most of the cost of a key); numbers, booleans and null go through nlohmann's
// serializer, so floats take their shortest round-trip form and 1.0 stays distinct from 1.
class KeyWriter {
 public:
  explicit KeyWriter(std::string& out)
      : out_(out),
        serializer_(nlohmann::detail::output_adapter<char, std::string>(out), ' ',
                    json::error_handler_t::strict) {}

  void member(std::string_view key, const json& v) {
    start(key);
    value(v);
  }
  void string_member(std::string_view key, std::string_view s) {
    start(key);
    string(s);
  }

  // The messages array, element by element: only messages with image parts to replace are
  // rebuilt, the others are written where they are.
  void messages(const json& messages) {
    start("messages");
    if (!messages.is_array()) {
      value(messages);
      return;
    }
    out_.push_back('[');
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i > 0) out_.push_back(',');
      const json& message = messages[i];
      const auto content = message.find("content");  // end() when message is not an object
      bool any = false;
      hashes_.clear();
      if (content != message.end() && content->is_array()) {
        for (const json& part : *content) {
          const std::string* url = image_url_of(part);
          hashes_.push_back(url ? image_hash(*url) : std::nullopt);
          any = any || hashes_.back().has_value();
        }
      }
      if (any) {
        value(with_image_hashes(message, hashes_));
      } else {
        value(message);
      }
    }
    out_.push_back(']');
  }

  void finish() { out_.push_back('}'); }

 private:
  void start(std::string_view key) {
    out_.push_back(first_ ? '{' : ',');
    first_ = false;
    out_.push_back('"');
    out_.append(key);
    out_.append("\":");
  }

  void value(const json& v) {
    switch (v.type()) {
      case json::value_t::object: {
        out_.push_back('{');
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (it != v.begin()) out_.push_back(',');
          string(it.key());
          out_.push_back(':');
          value(it.value());
        }
        out_.push_back('}');
        return;
      }
      case json::value_t::array:
        out_.push_back('[');
        for (size_t i = 0; i < v.size(); ++i) {
          if (i > 0) out_.push_back(',');
          value(v[i]);
        }
        out_.push_back(']');
        return;
      case json::value_t::string: string(v.get_ref<const std::string&>()); return;
      default: serializer_.dump(v, false, false, 0);
    }
  }

  void string(std::string_view s) {
    if (!simdjson::validate_utf8(s))
      throw InvalidRequestError(
          Error(ErrorKind::invalid_request,
                "the request has no cache key: a string in its messages or options is not valid "
                "UTF-8 (the request could not be sent either); fix the encoding of the input"));
    append_json_string(out_, s);
  }

  std::string& out_;
  nlohmann::detail::serializer<json> serializer_;
  std::vector<std::optional<std::string>> hashes_;  // per content part of the current message
  bool first_ = true;
};

}  // namespace

std::string cache_key_text(Provider provider, std::string_view base_url, std::string_view model,
                           const json& messages, const RequestOptions& options) {
  std::string out;
  out.reserve(512);
  KeyWriter w(out);
  w.string_member("endpoint", endpoint_identity(base_url));
  const json& extra = options.extra;
  if (!extra.is_null() && !(extra.is_object() && extra.empty())) w.member("extra", extra);
  if (options.max_tokens) w.member("max_tokens", *options.max_tokens);
  w.messages(messages);
  w.string_member("model", model);
  w.string_member("provider", to_string(provider));
  if (options.response_format) w.member("response_format", *options.response_format);
  if (options.seed) w.member("seed", *options.seed);
  if (options.stop) w.member("stop", *options.stop);
  if (options.temperature) w.member("temperature", *options.temperature);
  // As JSON true, "true" and 1 differ: each alternative keeps its own JSON type.
  if (options.thinking)
    std::visit([&](const auto& t) { w.member("thinking", t); }, *options.thinking);
  if (options.tool_choice) w.member("tool_choice", *options.tool_choice);
  if (options.tools) w.member("tools", *options.tools);
  if (options.top_p) w.member("top_p", *options.top_p);
  w.member("v", kCacheKeyVersion);
  w.finish();
  return out;
}

CacheKey cache_key(Provider provider, std::string_view base_url, std::string_view model,
                   const json& messages, const RequestOptions& options) {
  const std::string text = cache_key_text(provider, base_url, model, messages, options);
  return key_of(XXH3_128bits(text.data(), text.size()));
}

}  // namespace flexllm::detail
