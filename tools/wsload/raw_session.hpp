// A connection that upgrades by hand and then does not read: the base of the zombie and
// slow modes. It watches the kernel's TCP state (never the data) to see when the server
// closes, and at the end drains the socket once to learn which frames the server sent.
#pragma once

#include "connection.hpp"
#include "stats.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <string>

namespace wsload {

struct RawStats {
  Counter established{0};
  Counter failed{0};
  Counter open_at_end{0};
  Counter pings_seen{0};
  Counter data_frames_seen{0};
  Counter bytes_drained{0};
  Counter drains_truncated{0};
  Gauge open;
  CounterMap refusals;
  CounterMap errors;
  CounterMap closed_by_server;  // "fin" / "reset"
  CounterMap close_codes;       // from close frames found when draining at the end
  DurationSamples time_to_close_s;

  void add_to(boost::json::object& out) const;
};

class RawSession : public std::enable_shared_from_this<RawSession> {
 public:
  RawSession(Runner& runner, RawStats& stats, std::uint64_t id, int drain_wait_ms);
  virtual ~RawSession() = default;

  void start();
  // At the soft stop, from the control strand.
  void stop();

 protected:
  // Runs on the strand once the 101 arrived.
  virtual void on_established() {}
  // Runs on the strand at the stop, before the final drain.
  virtual void on_stopping() {}
  // Records, once, that the server closed the connection (seen as `state`).
  void note_server_closed(TcpState state);

  int fd() { return stream_.socket().native_handle(); }

  Runner& runner_;
  const Options& options_;
  RawStats& stats_;
  const std::uint64_t id_;
  Strand strand_;
  beast::tcp_stream stream_;
  bool stopping_ = false;
  bool server_closed_ = false;

 private:
  void open();
  void on_upgrade(boost::system::error_code ec, int status);
  void schedule_probe();
  void finish();

  boost::asio::steady_timer pacing_timer_;
  boost::asio::steady_timer probe_timer_;
  std::string buffer_;
  Clock::time_point established_at_;
  bool established_ = false;
  const int drain_wait_ms_;
};

}  // namespace wsload
