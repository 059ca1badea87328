#include "wsvisor/upstream_labels.hpp"

namespace wsvisor {

const char* to_string(upstream_hook hook) {
  switch (hook) {
    case upstream_hook::connect:
      return "connect";
    case upstream_hook::message:
      return "message";
    case upstream_hook::rpc:
      return "rpc";
    case upstream_hook::publish:
      return "publish";
    case upstream_hook::subscribe:
      return "subscribe";
    case upstream_hook::refresh:
      return "refresh";
    case upstream_hook::event:
      return "event";
    case upstream_hook::count_:
      break;
  }
  return "unknown";
}

const char* to_string(upstream_outcome outcome) {
  switch (outcome) {
    case upstream_outcome::ok:
      return "ok";
    case upstream_outcome::rejected:
      return "rejected";
    case upstream_outcome::error:
      return "error";
    case upstream_outcome::timeout:
      return "timeout";
    case upstream_outcome::busy:
      return "busy";
    case upstream_outcome::breaker:
      return "breaker";
    case upstream_outcome::cancelled:
      return "cancelled";
    case upstream_outcome::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
