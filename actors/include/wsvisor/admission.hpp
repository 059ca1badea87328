// What an HTTP session asks the limit guard before an upgrade, and what it hears back.
#pragma once

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wsvisor/metrics.hpp"
#include "wsvisor/session_port.hpp"

namespace wsvisor {

struct admission_decision {
  bool admitted = false;
  reject_reason reason = reject_reason::starting;  // when refused
  std::chrono::seconds retry_after{0};             // 0 = no Retry-After header
  caf::actor connection;                           // when admitted: the slot
  uint64_t connection_id = 0;
  unsigned status = 0;      // a `rejected` refusal's status: the backend's 401, 403 or 429
  std::string subprotocol;  // the connect hook's choice ("" = the server's own, section 5)
};

struct admission_request {
  std::shared_ptr<session_port> port;  // the session that waits for the answer
  std::string ip;                      // client IP (trusted proxies resolved)
  std::string user;                    // identity, "" when auth.mode = "none"
  std::string origin;                  // the Origin header, "" when absent
  bool identity_missing = false;       // the auth mode needs an identity and has none
  bool identity_invalid = false;       // a token was there but is invalid or expired
  // What the gateway's connect hook is told (CONTRACT 12.1): the request's target (path
  // and query), the subprotocols offered, and the upstream.forward_headers present
  // (names in lower case). The hook may replace `user` and set `meta` (compact JSON).
  std::string target;
  std::vector<std::string> subprotocols;
  std::vector<std::pair<std::string, std::string>> forwarded_headers;
  std::string meta;
  std::string subprotocol;  // the hook's choice, one the client offered
  uint64_t id = 0;          // the connection id, given before the hook (it is told it)
  bool hooked = false;      // the connect hook has run (a parked upgrade does not again)
  // Called exactly once, from an actor's thread; the session posts it to its executor.
  std::function<void(admission_decision)> reply;
};

using admission_ticket = std::shared_ptr<admission_request>;

// Retry-After for a refusal: whole seconds in [retry_after, 1.5 x retry_after] (at least
// 1), drawn at random so that refused clients do not all come back together.
std::chrono::seconds jittered_retry_after(std::chrono::milliseconds retry_after);

}  // namespace wsvisor
