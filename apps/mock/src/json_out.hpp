// The mock writes JSON with the library's hand-written helpers (src/core/json_write.hpp).
#pragma once

#include "core/json_write.hpp"

namespace flexllm::mock::detail {
using flexllm::detail::append_json_string;
using flexllm::detail::append_json_string_or_null;
using flexllm::detail::append_uint;
}  // namespace flexllm::mock::detail
