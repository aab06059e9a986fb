#include "http.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace flexllm::test {
namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  HttpResponse response;
  Clock::time_point start;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
  }
};

size_t on_body(char* data, size_t, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  t->response.body.append(data, n);
  t->response.chunks.emplace_back(Clock::now() - t->start, n);
  return n;
}

size_t on_header(char* data, size_t, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  std::string line(data, n);
  auto colon = line.find(':');
  if (colon == std::string::npos) return n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
  t->response.headers[name] = value;
  return n;
}

std::unique_ptr<Transfer> make_transfer(const HttpRequest& r, std::chrono::milliseconds timeout) {
  auto t = std::make_unique<Transfer>();
  t->easy = curl_easy_init();
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  if (r.fresh_connection) curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  if (r.method == "POST") {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(r.body.size()));
  } else if (r.method != "GET") {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    if (!r.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(r.body.size()));
    }
  }
  for (const auto& h : r.headers) t->headers = curl_slist_append(t->headers, h.c_str());
  t->headers = curl_slist_append(t->headers, "Expect:");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  t->start = Clock::now();
  return t;
}

void finish(Transfer& t, CURLcode code) {
  t.response.curl_code = code;
  t.response.elapsed = Clock::now() - t.start;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.response.status);
  if (code != CURLE_OK) t.response.error = t.error[0] ? t.error : curl_easy_strerror(code);
}

}  // namespace

HttpResponse http(const HttpRequest& request, std::chrono::milliseconds timeout) {
  auto t = make_transfer(request, timeout);
  finish(*t, curl_easy_perform(t->easy));
  return std::move(t->response);
}

HttpResponse http_get(const std::string& url, std::chrono::milliseconds timeout) {
  return http(HttpRequest{.method = "GET", .url = url, .body = {}, .headers = {}}, timeout);
}

std::vector<HttpResponse> http_parallel(const std::vector<HttpRequest>& requests, size_t parallel,
                                        std::chrono::milliseconds timeout) {
  std::vector<HttpResponse> out(requests.size());
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(parallel));
  std::vector<std::unique_ptr<Transfer>> active(requests.size());
  size_t next = 0, running_count = 0, done = 0;
  auto start_more = [&] {
    while (next < requests.size() && running_count < parallel) {
      active[next] = make_transfer(requests[next], timeout);
      curl_easy_setopt(active[next]->easy, CURLOPT_PRIVATE, reinterpret_cast<void*>(next));
      curl_multi_add_handle(multi, active[next]->easy);
      ++next;
      ++running_count;
    }
  };
  start_more();
  // Bounded: every transfer has its own timeout, so the loop ends.
  while (done < requests.size()) {
    int still = 0;
    curl_multi_perform(multi, &still);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      void* priv = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      auto i = reinterpret_cast<size_t>(priv);
      finish(*active[i], msg->data.result);
      curl_multi_remove_handle(multi, msg->easy_handle);
      out[i] = std::move(active[i]->response);
      active[i].reset();
      --running_count;
      ++done;
    }
    start_more();
    if (done < requests.size()) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  curl_multi_cleanup(multi);
  return out;
}

std::string raw_exchange(uint16_t port, const std::string& bytes, std::chrono::milliseconds quiet,
                         std::chrono::milliseconds limit) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("raw_exchange: connect failed");
  }
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string got;
  const auto deadline = Clock::now() + limit;
  char buf[16384];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(quiet.count())) <= 0) break;  // quiet: nothing more comes
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;  // closed by the server
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

std::string chat_body(const std::string& user, bool stream, json extra) {
  json body = {{"model", "test-model"},
               {"messages", json::array({{{"role", "user"}, {"content", user}}})}};
  if (stream) body["stream"] = true;
  body.update(extra);
  return body.dump();
}

std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    std::string event = body.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    if (end == std::string::npos) break;
    pos = end + 2;
  }
  return out;
}

}  // namespace flexllm::test
