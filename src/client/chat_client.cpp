// What LLMClient and LLMClientPool share: the blocking and callback forms over their async and
// stream calls, and batches over their batch targets.
#include <stdexcept>

#include "batch/runner.hpp"
#include "flexllm/client.hpp"

namespace flexllm {

void ChatClient::refuse_on_io_thread() const {
  if (on_io_thread())
    throw std::logic_error(
        "flexllm: a blocking call was made on the I/O thread (from a callback); use the async "
        "form instead");
}

ChatResult ChatClient::chat_completions(const json& messages, const RequestOptions& options) {
  refuse_on_io_thread();
  return chat_completions_async(messages, options).get();
}

ChatResult ChatClient::chat_completions_stream(
    const json& messages, const std::function<void(const StreamEvent&)>& on_event,
    const RequestOptions& options) {
  refuse_on_io_thread();
  ChatStream stream = chat_completions_stream(messages, options);
  for (const StreamEvent& ev : stream) on_event(ev);
  return stream.result();
}

BatchResult ChatClient::chat_completions_batch(const std::vector<json>& messages_list,
                                               const BatchOptions& options) {
  return detail::run_aligned_batch(batch_target(options.distribute), messages_list, options);
}

BatchResult ChatClient::chat_completions_batch(MessageSource source, const BatchOptions& options) {
  return detail::run_aligned_batch(batch_target(options.distribute), std::move(source), options);
}

BatchIterator ChatClient::iter_chat_completions_batch(MessageSource source, BatchOptions options) {
  auto target = batch_target(options.distribute);
  return BatchIterator(std::make_unique<detail::BatchRunner>(std::move(target), std::move(options),
                                                             std::move(source)));
}

}  // namespace flexllm
