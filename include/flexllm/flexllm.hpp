// flexllm: high-performance LLM API client. The umbrella header: include this one.
#pragma once

#include "flexllm/batch.hpp"
#include "flexllm/cache.hpp"
#include "flexllm/client.hpp"
#include "flexllm/errors.hpp"
#include "flexllm/pool.hpp"
#include "flexllm/runtime.hpp"
#include "flexllm/stream.hpp"
#include "flexllm/types.hpp"
#include "flexllm/version.hpp"
