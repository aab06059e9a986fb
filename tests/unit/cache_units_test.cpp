// Pure pieces of the response cache: the request key, the value codec, the local store.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "cache/cache_key.hpp"
#include "cache/cache_value.hpp"
#include "cache/local_store.hpp"
#include "flexllm/errors.hpp"

namespace flexllm::detail {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
namespace fs = std::filesystem;

constexpr std::string_view kUrl = "https://api.example.com/v1";

json user(std::string_view text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

CacheKey key_with(const RequestOptions& options, const json& messages = user("hi")) {
  return cache_key(Provider::openai, kUrl, "m", messages, options);
}

std::string text_with(const RequestOptions& options, const json& messages = user("hi")) {
  return cache_key_text(Provider::openai, kUrl, "m", messages, options);
}

std::string base64(std::string_view bytes, bool pad = true) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16 |
                       uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[v >> s & 63]);
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{static_cast<uint8_t>(bytes[i])} << 16;
    if (rest == 2) v |= uint32_t{static_cast<uint8_t>(bytes[i + 1])} << 8;
    out.push_back(kAlphabet[v >> 18 & 63]);
    out.push_back(kAlphabet[v >> 12 & 63]);
    if (rest == 2) out.push_back(kAlphabet[v >> 6 & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

json image_message(const json& image_url) {
  return json::array(
      {{{"role", "user"},
        {"content", json::array({{{"type", "text"}, {"text", "what is this?"}},
                                 {{"type", "image_url"}, {"image_url", image_url}}})}}});
}

// A directory of its own under the system temp directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("flexllm_cache_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path write(const std::string& name, std::string_view bytes) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------------------------------------
// Key

TEST(CacheKey, IsTheHashOfCanonicalJson) {
  RequestOptions o{
      .temperature = 0.2, .max_tokens = 64, .extra = {{"b", 1}, {"a", {{"y", 2}, {"x", 1.5}}}}};
  const std::string text = text_with(o);
  const json parsed = json::parse(text);
  EXPECT_EQ(parsed.dump(), text) << "sorted keys, no whitespace";
  EXPECT_EQ(parsed["v"], kCacheKeyVersion);
  EXPECT_EQ(parsed["provider"], "openai");
  EXPECT_EQ(parsed["endpoint"], std::string(kUrl));
  EXPECT_EQ(parsed["model"], "m");
  EXPECT_EQ(parsed["temperature"], 0.2);
  EXPECT_NE(text.find(R"("temperature":0.2)"), std::string::npos) << "shortest round-trip form";
  EXPECT_EQ(key_with(o), key_with(o));
  EXPECT_NE(key_with(o), key_with({}));
}

TEST(CacheKey, ChangesWithEndpointModelProviderAndMessages) {
  const json m = user("hi");
  const CacheKey base = cache_key(Provider::openai, kUrl, "m", m, {});
  EXPECT_EQ(base, cache_key(Provider::openai, "https://api.example.com/v1/", "m", m, {}))
      << "a trailing slash names the same endpoint";
  EXPECT_NE(base, cache_key(Provider::openai, "https://other.example.com/v1", "m", m, {}));
  EXPECT_NE(base, cache_key(Provider::openai, kUrl, "m2", m, {}));
  EXPECT_NE(base, cache_key(Provider::gemini, kUrl, "m", m, {}));
  EXPECT_NE(base, cache_key(Provider::openai, kUrl, "m", user("hi!"), {}));
  json two = json::array({{{"role", "system"}, {"content", "be brief"}}, m[0]});
  json swapped = json::array({two[1], two[0]});
  EXPECT_NE(cache_key(Provider::openai, kUrl, "m", two, {}),
            cache_key(Provider::openai, kUrl, "m", swapped, {}));
}

TEST(CacheKey, EachOutputAffectingOptionChangesIt) {
  const std::vector<std::pair<std::string, RequestOptions>> variants = {
      {"none", {}},
      {"temperature", {.temperature = 0.5}},
      {"temperature 0.6", {.temperature = 0.6}},
      {"top_p", {.top_p = 0.5}},
      {"max_tokens", {.max_tokens = 100}},
      {"max_tokens 101", {.max_tokens = 101}},
      {"stop", {.stop = std::vector<std::string>{"END"}}},
      {"stop two", {.stop = std::vector<std::string>{"END", "STOP"}}},
      {"seed", {.seed = 7}},
      {"seed 8", {.seed = 8}},
      {"thinking true", {.thinking = true}},
      {"thinking false", {.thinking = false}},
      {"thinking high", {.thinking = "high"}},
      {"thinking 1024", {.thinking = 1024}},
      {"thinking \"true\"", {.thinking = "true"}},
      {"thinking 1", {.thinking = 1}},
      {"thinking 0", {.thinking = 0}},
      {"tools", {.tools = json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}})}},
      {"tools g", {.tools = json::array({{{"type", "function"}, {"function", {{"name", "g"}}}}})}},
      {"tool_choice", {.tool_choice = "auto"}},
      {"tool_choice none", {.tool_choice = "none"}},
      {"response_format", {.response_format = json{{"type", "json_object"}}}},
      {"extra", {.extra = {{"presence_penalty", 0.1}}}},
      {"extra 0.2", {.extra = {{"presence_penalty", 0.2}}}},
  };
  std::set<CacheKey> keys;
  for (const auto& [name, options] : variants)
    EXPECT_TRUE(keys.insert(key_with(options)).second) << name << " collides with another variant";
}

TEST(CacheKey, UnsetAndExplicitDefaultDiffer) {
  // The server's default may not be the value the caller thinks of as the default.
  EXPECT_NE(key_with({}), key_with({.temperature = 1.0}));
  EXPECT_NE(key_with({}), key_with({.stop = std::vector<std::string>{}}));
  EXPECT_NE(key_with({}), key_with({.thinking = false}));
  EXPECT_EQ(key_with({}), key_with({.extra = json::object()})) << "extra is empty by default";
}

TEST(CacheKey, IgnoresCallMechanics) {
  const CacheKey base = key_with({.temperature = 0.3});
  EXPECT_EQ(base, key_with({.temperature = 0.3, .skip_cache = true}));
  EXPECT_EQ(base, key_with({.temperature = 0.3, .return_raw = true}));
  EXPECT_EQ(base, key_with({.temperature = 0.3, .timeout = 5s}));
  EXPECT_EQ(base,
            key_with({.model = "ignored: the effective model is an argument", .temperature = 0.3}));
}

TEST(CacheKey, JsonMemberOrderDoesNotMatter) {
  const json a =
      json::parse(R"([{"role":"user","content":[{"type":"text","text":"hi"}],"name":"x"}])");
  const json b =
      json::parse(R"([{"name":"x","content":[{"text":"hi","type":"text"}],"role":"user"}])");
  RequestOptions oa{.extra = json::parse(R"({"a":1,"b":{"c":2,"d":[1,2]}})")};
  RequestOptions ob{.extra = json::parse(R"({"b":{"d":[1,2],"c":2},"a":1})")};
  EXPECT_EQ(key_with(oa, a), key_with(ob, b));
  EXPECT_EQ(text_with(oa, a), text_with(ob, b));
}

TEST(CacheKey, NeverHoldsCredentials) {
  const std::string secret = "sk-secret-0123456789";
  const json m = user("hi");
  const std::string text = cache_key_text(
      Provider::openai, "https://user:" + secret + "@api.example.com/v1/", "m", m, {});
  EXPECT_EQ(text.find(secret), std::string::npos);
  EXPECT_EQ(text, cache_key_text(Provider::openai, kUrl, "m", m, {}))
      << "user info does not change which server answers";
  EXPECT_EQ(cache_key_text(Provider::openai, "http://h@st:8000/v1?q=a@b", "m", m, {}),
            cache_key_text(Provider::openai, "http://st:8000/v1?q=a@b", "m", m, {}))
      << "only the authority's user info goes";
}

TEST(CacheKey, InvalidUtf8IsAnInvalidRequest) {
  EXPECT_THROW(key_with({}, user("bad \xff byte")), InvalidRequestError);
  EXPECT_THROW(key_with({.extra = {{"x", "\xc3"}}}), InvalidRequestError);
}

TEST(CacheKey, AnImageKeysByItsBytesHoweverItIsPassed) {
  const std::string png = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR\x01\x02\x03 pixels"s;
  TempDir dir;
  const fs::path file = dir.write("cat.png", png);
  const std::string data_uri = "data:image/png;base64," + base64(png);

  const CacheKey by_path = key_with({}, image_message({{"url", file.string()}}));
  EXPECT_EQ(by_path, key_with({}, image_message({{"url", data_uri}})));
  EXPECT_EQ(by_path, key_with({}, image_message({{"url", "file://" + file.string()}})));
  EXPECT_EQ(by_path, key_with({}, image_message({{"url", fs::relative(file).string()}})));
  EXPECT_EQ(by_path,
            key_with({}, image_message({{"url", "data:image/png;base64," + base64(png, false)}})))
      << "padding is optional";
  EXPECT_EQ(key_with({}, image_message(file.string())), key_with({}, image_message(data_uri)))
      << "the plain-string form of image_url";

  const std::string text = text_with({}, image_message({{"url", data_uri}, {"detail", "high"}}));
  EXPECT_EQ(text.find("base64"), std::string::npos) << "no image data in the key";
  EXPECT_NE(text.find(R"("detail":"high")"), std::string::npos) << "other fields stay";
  const auto hash =
      json::parse(text)["messages"][0]["content"][1]["image_url"]["url"].get<std::string>();
  EXPECT_EQ(hash.size(), 5u + 32u);
  EXPECT_TRUE(hash.starts_with("xxh3:"));
  EXPECT_EQ(hash.find_first_not_of("0123456789abcdef", 5), std::string::npos);

  const fs::path other = dir.write("dog.png", png + "!");
  EXPECT_NE(by_path, key_with({}, image_message({{"url", other.string()}})));
}

TEST(CacheKey, RemoteAndUnreadableImagesKeyByTheirUrl) {
  for (const std::string& url :
       {std::string("https://example.com/cat.png"), std::string("gs://bucket/cat.png"),
        (fs::temp_directory_path() / "flexllm_no_such_file.png").string(),
        fs::temp_directory_path().string()}) {
    const std::string text = text_with({}, image_message({{"url", url}}));
    EXPECT_NE(text.find(json(url).dump()), std::string::npos) << url;
  }
}

TEST(CacheKey, MalformedInlineDataHashesTheTextAndNeverThrows) {
  for (std::string_view url :
       {"data:image/png;base64,@@@@", "data:image/png;base64,abcde", "data:image/png;base64,ab=c",
        "data:image/png;base64,a===", "data:image/png;base64", "data:text/plain,hello"}) {
    const std::string text = text_with({}, image_message({{"url", url}}));
    EXPECT_EQ(text.find(url), std::string::npos) << url;
    EXPECT_NE(text.find("xxh3:"), std::string::npos) << url;
  }
  EXPECT_NE(key_with({}, image_message({{"url", "data:image/png;base64,@@@@"}})),
            key_with({}, image_message({{"url", "data:image/png;base64,@@@A"}})));
}

// ---------------------------------------------------------------------------------------------
// Value codec

ChatResult full_result() {
  ChatResult r;
  r.content = "answer with \0 a NUL and ünïcode"s;
  r.reasoning = "because";
  r.usage = Usage{
      .prompt_tokens = 12, .completion_tokens = 34, .total_tokens = 46, .reasoning_tokens = 5};
  r.tool_calls = {ToolCall{"call_1", "function", "get_weather", R"({"city":"Paris"})"},
                  ToolCall{"call_2", "function", "get_time", "{}"}};
  r.finish_reason = "tool_calls";
  return r;
}

void expect_same_reply(const ChatResult& a, const ChatResult& b) {
  EXPECT_EQ(a.content, b.content);
  EXPECT_EQ(a.reasoning, b.reasoning);
  EXPECT_EQ(a.usage, b.usage);
  EXPECT_EQ(a.tool_calls, b.tool_calls);
  EXPECT_EQ(a.finish_reason, b.finish_reason);
}

TEST(CacheValue, RoundTrips) {
  ChatResult full = full_result();
  ChatResult plain;
  plain.content = "just text";
  plain.finish_reason = "stop";
  ChatResult no_reasoning_tokens = full;
  no_reasoning_tokens.usage->reasoning_tokens.reset();
  no_reasoning_tokens.reasoning.reset();
  ChatResult big_numbers = plain;
  big_numbers.usage = Usage{INT64_MAX, INT64_MIN, -1, 0};
  ChatResult empty;
  for (const ChatResult* r : {&full, &plain, &no_reasoning_tokens, &big_numbers, &empty}) {
    std::optional<ChatResult> back = decode_cache_value(encode_cache_value(*r));
    ASSERT_TRUE(back);
    expect_same_reply(*r, *back);
    EXPECT_TRUE(back->cached);
  }
}

TEST(CacheValue, ToolCallOnlyReply) {
  ChatResult r;
  r.tool_calls = {ToolCall{"call_9", "function", "lookup", R"({"q":"x"})"}};
  r.finish_reason = "tool_calls";
  std::optional<ChatResult> back = decode_cache_value(encode_cache_value(r));
  ASSERT_TRUE(back);
  expect_same_reply(r, *back);
  EXPECT_TRUE(back->content.empty());
  EXPECT_FALSE(back->reasoning);
  EXPECT_FALSE(back->usage);
}

TEST(CacheValue, TruncatedExtendedOrForeignBytesAreRejected) {
  const std::string bytes = encode_cache_value(full_result());
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_cache_value(std::string_view(bytes).substr(0, n))) << "cut at " << n;
  EXPECT_FALSE(decode_cache_value(bytes + '\0')) << "trailing bytes";
  std::string other_format = bytes;
  other_format[0] = 2;
  EXPECT_FALSE(decode_cache_value(other_format));
  std::string unknown_flag = bytes;
  unknown_flag[1] = static_cast<char>(unknown_flag[1] | 0x80);
  EXPECT_FALSE(decode_cache_value(unknown_flag));
}

TEST(CacheValue, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  const std::string valid = encode_cache_value(full_result());
  std::uniform_int_distribution<int> byte(0, 255);
  size_t decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      // Noise behind a valid header, so decoding gets past the first checks.
      bytes = {'\x01', static_cast<char>(byte(rng) & 7)};
      const size_t n = std::uniform_int_distribution<size_t>(0, 80)(rng);
      for (size_t k = 0; k < n; ++k) bytes.push_back(static_cast<char>(byte(rng)));
    } else {
      // A valid value with a few bytes changed.
      bytes = valid;
      for (int k = 0; k < 3; ++k)
        bytes[std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng)] =
            static_cast<char>(byte(rng));
    }
    decoded += decode_cache_value(bytes).has_value();
  }
  EXPECT_LT(decoded, 20000u);
}

// ---------------------------------------------------------------------------------------------
// Local store

// Distinct keys spread over the shards as real (hash) keys are.
CacheKey test_key(uint64_t i) {
  CacheKey key;
  for (int half = 0; half < 2; ++half) {
    uint64_t z = (i * 2 + static_cast<uint64_t>(half) + 1) * 0x9e3779b97f4a7c15ULL;  // splitmix64
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int b = 0; b < 8; ++b) key[8 * half + b] = static_cast<uint8_t>(z >> (8 * b));
  }
  return key;
}

struct FakeClock {
  std::shared_ptr<std::chrono::steady_clock::time_point> t =
      std::make_shared<std::chrono::steady_clock::time_point>();
  SteadyNow now() const {
    return [t = t] { return *t; };
  }
  void advance(std::chrono::steady_clock::duration d) const { *t += d; }
};

TEST(LocalStore, GetPutOverwrite) {
  auto store = make_local_store(1 << 20);
  EXPECT_FALSE(store->get(test_key(1)));
  store->put(test_key(1), "one", 0s);
  store->put(test_key(2), "two", 0s);
  EXPECT_EQ(store->get(test_key(1)), "one");
  EXPECT_EQ(store->get(test_key(2)), "two");
  store->put(test_key(1), "uno", 0s);
  EXPECT_EQ(store->get(test_key(1)), "uno");
  store->put(test_key(3), "", 0s);
  EXPECT_EQ(store->get(test_key(3)), "") << "an empty value is a value";
}

TEST(LocalStore, EntriesExpireAfterTheirTtl) {
  FakeClock clock;
  auto store = make_local_store(1 << 20, 4, clock.now());
  store->put(test_key(1), "short", 1s);
  store->put(test_key(2), "forever", 0s);
  store->put(test_key(3), "long", 3600s);
  clock.advance(999ms);
  EXPECT_EQ(store->get(test_key(1)), "short");
  clock.advance(1ms);
  EXPECT_FALSE(store->get(test_key(1)));
  store->put(test_key(3), "renewed", 1s);  // an overwrite takes the new ttl
  clock.advance(24h * 365 * 10);
  EXPECT_EQ(store->get(test_key(2)), "forever");
  EXPECT_FALSE(store->get(test_key(3)));
  store->put(test_key(4), "huge ttl", std::chrono::seconds::max());
  EXPECT_EQ(store->get(test_key(4)), "huge ttl");
}

TEST(LocalStore, EvictsTheLeastRecentlyUsedPastItsSize) {
  // One shard holding exactly three 100-byte entries (key + value + per-entry overhead each).
  const std::string v(100, 'x');
  size_t per_entry = 0;
  for (size_t cap = 100; cap < 1000 && !per_entry; ++cap) {
    auto s = make_local_store(cap, 1);
    s->put(test_key(0), v, 0s);
    if (s->get(test_key(0))) per_entry = cap;
  }
  ASSERT_GT(per_entry, 116u) << "the bound counts key + value + overhead";
  auto store = make_local_store(3 * per_entry, 1);
  store->put(test_key(1), v, 0s);
  store->put(test_key(2), v, 0s);
  store->put(test_key(3), v, 0s);
  EXPECT_TRUE(store->get(test_key(1))) << "refreshes 1: 2 is now the oldest used";
  store->put(test_key(4), v, 0s);
  EXPECT_FALSE(store->get(test_key(2)));
  EXPECT_TRUE(store->get(test_key(1)));
  EXPECT_TRUE(store->get(test_key(3)));
  EXPECT_TRUE(store->get(test_key(4)));
  store->put(test_key(5), std::string(100 + 2 * per_entry, 'y'), 0s);  // evicts all three
  EXPECT_FALSE(store->get(test_key(1)));
  EXPECT_FALSE(store->get(test_key(3)));
  EXPECT_FALSE(store->get(test_key(4)));
  EXPECT_TRUE(store->get(test_key(5)));
  store->put(test_key(5), std::string(3 * per_entry, 'z'), 0s);
  EXPECT_FALSE(store->get(test_key(5))) << "too big to store: the outdated value goes too";
}

TEST(LocalStore, ClearEmptiesEveryShard) {
  auto store = make_local_store(1 << 20, 8);
  for (uint64_t i = 0; i < 100; ++i) store->put(test_key(i), "v", 0s);
  store->clear();
  for (uint64_t i = 0; i < 100; ++i) EXPECT_FALSE(store->get(test_key(i)));
  store->put(test_key(1), "again", 0s);
  EXPECT_EQ(store->get(test_key(1)), "again");
}

TEST(LocalStore, GetManyAndPutManyKeepTheOrderOfTheirKeys) {
  FakeClock clock;
  auto store = make_local_store(1 << 24, 16, clock.now());
  std::vector<CacheKey> keys;
  std::vector<std::string> values;
  for (uint64_t i = 0; i < 1000; ++i) {
    keys.push_back(test_key(i));
    values.push_back("value " + std::to_string(i));
  }
  keys.push_back(test_key(7));  // a repeated key: the later write wins
  values.push_back("seven, again");
  store->put_many(keys, values, 0s);
  store->put_many(std::vector<CacheKey>{test_key(2000)}, std::vector<std::string>{"brief"}, 1s);
  clock.advance(1s);
  std::vector<CacheKey> wanted;
  for (uint64_t i = 0; i < 2001; i += 3) wanted.push_back(test_key(i));
  wanted.push_back(test_key(2000));
  const std::vector<std::optional<std::string>> got = store->get_many(wanted);
  ASSERT_EQ(got.size(), wanted.size());
  for (size_t j = 0; j + 1 < wanted.size(); ++j) {
    const uint64_t i = 3 * j;
    if (i == 7)
      EXPECT_EQ(got[j], "seven, again");
    else if (i < 1000)
      EXPECT_EQ(got[j], "value " + std::to_string(i));
    else
      EXPECT_FALSE(got[j]) << i;
  }
  EXPECT_FALSE(got.back()) << "expired";
  EXPECT_TRUE(store->get_many({}).empty());
}

TEST(LocalStore, ConcurrentUseNeverTearsAValue) {
  // Small enough that evictions run all the time; values of varied length, each a function of
  // its key and a version, so a torn or misplaced value shows.
  auto store = make_local_store(64 << 10, 4);
  constexpr uint64_t kKeys = 512;
  auto value_of = [](uint64_t key, uint64_t version) {
    std::string v = std::to_string(key) + ":" + std::to_string(version) + ":";
    v.append((key * 7 + version) % 300, static_cast<char>('a' + key % 26));
    return v;
  };
  auto valid = [&](uint64_t key, const std::string& v) {
    const size_t a = v.find(':'), b = v.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) return false;
    if (v.substr(0, a) != std::to_string(key)) return false;
    return v == value_of(key, std::stoull(v.substr(a + 1, b - a - 1)));
  };
  std::atomic<size_t> bad{0}, hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
      for (uint64_t op = 0; op < 20000; ++op) {
        const uint64_t k = rng() % kKeys;
        switch (rng() % 8) {
          case 0:
          case 1:
          case 2: store->put(test_key(k), value_of(k, op), 0s); break;
          case 3: {
            std::vector<CacheKey> keys{test_key(k), test_key((k + 1) % kKeys)};
            std::vector<std::string> values{value_of(k, op), value_of((k + 1) % kKeys, op)};
            store->put_many(keys, values, 0s);
            break;
          }
          case 4: {
            std::vector<CacheKey> keys{test_key(k), test_key((k + 5) % kKeys)};
            auto got = store->get_many(keys);
            for (size_t j = 0; j < got.size(); ++j)
              if (got[j] && !valid(j == 0 ? k : (k + 5) % kKeys, *got[j])) ++bad;
            break;
          }
          default:
            if (auto v = store->get(test_key(k))) {
              ++hits;
              if (!valid(k, *v)) ++bad;
            }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(hits.load(), 0u);
}

}  // namespace
}  // namespace flexllm::detail
