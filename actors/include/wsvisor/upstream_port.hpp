// The narrow seam through which the actors reach a backend over HTTP (CONTRACT 11.1: the
// gateway's and the hub's hooks, the lifecycle events). net/ implements it with Beast's
// HTTP client on the io threads, keep-alive connections pooled per host; actors never see
// Beast. One call of start() is one attempt: retries, the breaker, ordering and bounds
// are the upstream service's (actors/), not the port's.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace wsvisor {

using http_headers = std::vector<std::pair<std::string, std::string>>;

struct upstream_attempt {
  std::string method = "POST";
  std::string url;       // absolute: http://host[:port]/path?query (https:// when TLS is built)
  http_headers headers;  // sent as given (Host, Content-Length, Connection are the port's)
  std::string body;
  std::chrono::milliseconds timeout{5000};  // connect + write + whole response
};

struct upstream_reply {
  enum class outcome {
    response,       // a whole, well-formed HTTP response arrived (any status)
    connect_error,  // no connection: refused, unreachable, DNS, TLS
    timeout,        // the attempt's timeout passed first
    too_large,      // the response (head or body) passed max_response_bytes
    malformed,      // not HTTP, or broken framing (bad chunk, bad length)
    cancelled,      // cancel() came first
  };
  outcome result = outcome::response;
  unsigned status = 0;   // with outcome::response
  http_headers headers;  // names in lower case
  std::string body;      // with outcome::response only; never more than max_response_bytes
  std::string error;     // why, in words, for the other outcomes (for the log)

  // The value of a response header (first one), "" when absent. `name` in lower case.
  std::string header(const std::string& name) const {
    for (const auto& [key, value] : headers)
      if (key == name) return value;
    return {};
  }
};

class upstream_port {
 public:
  virtual ~upstream_port() = default;

  using completion = std::function<void(upstream_reply)>;

  // Starts one attempt. `done` is called exactly once, from an io thread, never inline.
  // Returns an id for cancel().
  virtual uint64_t start(upstream_attempt attempt, completion done) = 0;

  // Aborts an attempt that is still running: its `done` gets outcome::cancelled (at
  // once, or with the result if it was already on its way). An unknown id does nothing.
  virtual void cancel(uint64_t attempt_id) = 0;
};

}  // namespace wsvisor
