// A WebSocket connection through Beast that keeps one read pending, so that Beast
// answers the server's pings: the base of the hold and subscribe modes. It opens at the
// runner's next attempt slot (--rate), counts how the upgrade went and how the server
// ended the connection, and at the soft stop closes cleanly (1000), or closes the socket
// while it is still connecting. All but start() and stop() runs on the session's strand.
#pragma once

#include "connection.hpp"
#include "stats.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <memory>

namespace wsload {

// What every WsSession counts; a mode's stats add their own.
struct WsSessionStats {
  Counter established{0};
  Counter failed{0};
  Counter closed_by_server{0};
  Gauge open;
  CounterMap refusals;     // by HTTP status
  CounterMap errors;       // "phase: message"
  CounterMap close_codes;  // of the server's close frames; "1006": it sent none
};

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  virtual ~WsSession() = default;

  void start();
  // At the soft stop, from the control strand.
  void stop();

 protected:
  WsSession(Runner& runner, WsSessionStats& stats);

  // The connect or the upgrade failed (already counted); not called when stop() cut it
  // short.
  virtual void on_open_failed() {}
  // The connection is up and its first read pending. Not called when stop() came first:
  // the session then closes at once.
  virtual void on_established() = 0;
  // A message is in buffer_: the mode consumes it and calls read_next().
  virtual void on_message() = 0;
  // The read ended, once: by our own close (by_server false), or else by the server,
  // which is counted right after.
  virtual void on_ended(bool by_server) = 0;
  // The close handshake, at most once (closing_); a mode that writes may put it off
  // until its write in flight is done.
  virtual void begin_close();

  void read_next();

  Runner& runner_;
  const Options& options_;
  Strand strand_;
  WsStream ws_;
  beast::flat_buffer buffer_;
  bool open_ = false;      // upgraded, and the read has not ended
  bool stopping_ = false;  // stop() came
  bool closing_ = false;   // our close has begun

 private:
  void open();
  void on_open(const OpenResult& result);
  void on_read(boost::system::error_code ec);
  void on_stop();

  WsSessionStats& counts_;
  boost::asio::steady_timer pacing_timer_;
  websocket::response_type response_;
};

}  // namespace wsload
