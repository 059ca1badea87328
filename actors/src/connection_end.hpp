// How a connection ended, carried by its actor's exit reason: the shard that releases
// the slot reads it from the down message instead of asking the session, which may be
// gone by then.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>

#include <cstdint>
#include <string>

#include "wsvisor/metrics.hpp"

namespace wsvisor {

struct connection_end {
  close_reason why = close_reason::client;
  uint16_t code = 1006;  // the close code sent or received; 1006: the socket just went away
  std::string text;      // the close frame's reason text, "" when none
};

// The caf::error category of a connection actor's exit reason.
constexpr caf::atom_value connection_end_category = caf::atom("connend");

inline caf::error to_exit_reason(connection_end end) {
  // caf::error treats code 0 as "no error": the reason is stored off by one.
  return caf::error(static_cast<uint8_t>(static_cast<int>(end.why) + 1), connection_end_category,
                    caf::make_message(end.code, std::move(end.text)));
}

// Any other exit (killed, an exception that escaped) counts as `fallback` with 1006.
inline connection_end from_exit_reason(const caf::error& reason, close_reason fallback) {
  connection_end end{fallback, 1006, {}};
  if (reason.category() != connection_end_category || reason.code() == 0 ||
      reason.code() > static_cast<int>(close_reason::count_))
    return end;
  end.why = static_cast<close_reason>(reason.code() - 1);
  if (reason.context().match_elements<uint16_t, std::string>()) {
    end.code = reason.context().get_as<uint16_t>(0);
    end.text = reason.context().get_as<std::string>(1);
  }
  return end;
}

}  // namespace wsvisor
