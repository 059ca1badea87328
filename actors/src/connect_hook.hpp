// The gateway's connect hook (CONTRACT 12.1), without actors: what the backend is asked
// and what its answer means. The limit guard runs it between the identity checks and the
// caps (limit_guard.cpp); tests/unit/test_actors_connect_hook.cpp covers every answer.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "wsvisor/admission.hpp"
#include "wsvisor/application.hpp"

namespace wsvisor {

// The longest user id and meta a hook may give (a larger answer is a bad answer).
constexpr std::size_t kMaxHookUserBytes = 1024;
constexpr std::size_t kMaxHookMetaBytes = 4096;

// {"connection","ip","user"(v1 auth's or null),"path","query","subprotocols":[...],
//  "headers":{forwarded, names in lower case}}
std::string connect_hook_body(const admission_request& request, const std::string& connection);

struct connect_answer {
  enum class kind { admitted, rejected, unavailable } what = kind::unavailable;
  unsigned status = 0;                  // rejected: the backend's 401, 403 or 429
  std::chrono::seconds retry_after{0};  // rejected 429: its Retry-After, if it gave one
  std::optional<std::string> user;      // admitted: replaces the identity when given
  std::string meta;                     // admitted: compact JSON, "" when none
  std::string subprotocol;              // admitted: one the client offered, "" when none
  std::string problem;                  // unavailable: why, for the log
};

// 200 with {"user"?:U,"meta"?:J,"subprotocol"?:S}: admitted (U a non-empty string of at
// most kMaxHookUserBytes of valid UTF-8 without control characters, J any JSON whose
// compact form is at most kMaxHookMetaBytes, S one of the offered subprotocols); 401,
// 403, 429: rejected; anything else (another status, a bad answer, a timeout, the
// breaker): unavailable.
connect_answer interpret_connect_answer(const upstream_result& result,
                                        const admission_request& request);

}  // namespace wsvisor
