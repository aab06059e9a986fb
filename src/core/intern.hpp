// Interned strings: one process-lifetime copy per distinct value, handed out as string_views that
// never dangle. For the few strings that every result repeats (an endpoint's base URL): a result
// then carries 16 bytes instead of its own heap copy. The table only grows, by one entry per
// distinct value — never intern data that varies per request.
#pragma once

#include <string_view>

namespace flexllm::detail {

std::string_view intern(std::string_view text);

}  // namespace flexllm::detail
