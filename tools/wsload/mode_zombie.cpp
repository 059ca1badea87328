// zombie: connections that complete the upgrade and then fall silent: no reads, no
// pongs, no close. The server's heartbeat should find and close them; the kernel's TCP
// state shows when it did without this client ever reading.
#include "modes.hpp"
#include "raw_session.hpp"

#include <vector>

namespace wsload {

boost::json::object run_zombie(Runner& runner) {
  const Options& options = runner.options();
  RawStats stats;
  auto sessions = make_sessions(options.connections, [&](int i) {
    // A zombie's drain at the end does not wait: its stream was never flowing.
    return std::make_shared<RawSession>(runner, stats, i, 0);
  });
  runner.set_progress_report([&] {
    return std::to_string(stats.open.value()) + " silent, " +
           std::to_string(stats.closed_by_server.total()) + " closed by the server";
  });
  run_sessions(runner, sessions);

  boost::json::object out;
  out["connections"] = options.connections;
  stats.add_to(out);
  return out;
}

}  // namespace wsload
