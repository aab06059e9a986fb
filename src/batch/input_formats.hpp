// The JSONL input forms of jsonl_requests(): one record to one request. Pure.
#pragma once

#include <string>

#include "flexllm/batch.hpp"

namespace flexllm::detail {

// The request a record asks for, its other fields as metadata (null when none). A record in none
// of the forms gives an item whose `error` says why (without file and line: the caller adds them).
// `system` is the system message for records that bring none of their own ("" = none).
SourceItem request_from_record(json record, const std::string& system);

// A JSON parse failure as one readable clause: "column 7: syntax error while parsing value …".
std::string describe_parse_error(const std::string& line);

// Why a line over the limit is not read: "line longer than 64 MiB (the limit of a JSONL line)".
std::string too_long_line(size_t limit);

}  // namespace flexllm::detail
