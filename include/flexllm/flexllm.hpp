// flexllm: high-performance LLM API client. The umbrella header: include this one.
#pragma once

#include "flexllm/version.hpp"
