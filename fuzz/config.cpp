// The command's config loader: any text parses or fails with a ConfigError naming the file (and
// nothing else escapes); warnings name the file; picking the endpoint never fails but with a
// ConfigError; `set-model`'s edit, when it can be made, gives a file that parses to the same
// settings with the new default, and making it again changes nothing.
#include "config.hpp"
#include "fuzz.hpp"

namespace flexllm::fuzz {
namespace {

constexpr std::string_view kPath = "fuzz.yaml";

bool same_entry(const cli::ModelEntry& a, const cli::ModelEntry& b) {
  return a.id == b.id && a.name == b.name && a.provider == b.provider && a.base_url == b.base_url &&
         a.api_key == b.api_key && a.system == b.system && a.ca_cert == b.ca_cert &&
         a.client_cert == b.client_cert && a.client_key == b.client_key;
}

std::optional<cli::Config> parse(const std::string& text, const char* what) {
  std::vector<std::string> warnings;
  std::optional<cli::Config> c;
  try {
    c = cli::parse_config(text, std::string(kPath),
                          [&](const std::string& w) { warnings.push_back(w); });
  } catch (const cli::ConfigError& e) {
    FLEXLLM_FUZZ_CHECK(std::string_view(e.what()).starts_with(kPath),
                       "{}: an error that does not name the file: {:?}", what, e.what());
    return std::nullopt;
  }
  for (const std::string& w : warnings)
    FLEXLLM_FUZZ_CHECK(w.starts_with(kPath), "{}: a warning that does not name the file: {:?}",
                       what, w);
  return c;
}

void resolve(const cli::Config& c, const std::string& model) {
  cli::FlagSettings flags;
  flags.model = model;
  try {
    auto r = cli::resolve_endpoint(c, flags, cli::EnvSettings{});
    if (r && r->entry)
      FLEXLLM_FUZZ_CHECK(
          r->entry >= c.models.data() && r->entry < c.models.data() + c.models.size(),
          "the resolved entry is not one of the file's");
  } catch (const cli::ConfigError&) {
  }
}

}  // namespace

void config(std::string_view input) {
  const std::string text(input);
  std::optional<cli::Config> c = parse(text, "the input");
  if (!c) return;
  resolve(*c, "");
  const std::string name =
      c->models.empty() ? "fuzz-model" : c->models[input_hash(input) % c->models.size()].name;
  resolve(*c, name);

  std::string edited;
  try {
    edited = cli::set_default_model(text, name);
  } catch (const cli::ConfigError&) {
    return;  // a layout the edit does not understand: refused, the file left alone
  }
  std::optional<cli::Config> e = parse(edited, "the file set-model wrote");
  FLEXLLM_FUZZ_CHECK(e.has_value(), "set-model wrote a file that does not parse: {:?}", edited);
  FLEXLLM_FUZZ_CHECK(e->default_model.value_or("") == name,
                     "set-model {:?}: the file's default is now {:?}", name,
                     e->default_model.value_or("(none)"));
  FLEXLLM_FUZZ_CHECK(e->models.size() == c->models.size(), "set-model changed the models");
  for (size_t i = 0; i < c->models.size(); ++i)
    FLEXLLM_FUZZ_CHECK(same_entry(c->models[i], e->models[i]), "set-model changed models[{}]", i);
  FLEXLLM_FUZZ_CHECK(e->system == c->system && e->batch.model == c->batch.model &&
                         e->batch.endpoints.size() == c->batch.endpoints.size(),
                     "set-model changed other settings");
  FLEXLLM_FUZZ_CHECK(cli::set_default_model(edited, name) == edited,
                     "set-model twice wrote a different file: {:?}", edited);
}

}  // namespace flexllm::fuzz
