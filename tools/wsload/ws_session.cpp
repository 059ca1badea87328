#include "ws_session.hpp"

#include <boost/asio/post.hpp>

#include <string>

namespace wsload {

namespace asio = boost::asio;

WsSession::WsSession(Runner& runner, WsSessionStats& stats)
    : runner_(runner),
      options_(runner.options()),
      strand_(asio::make_strand(runner.io())),
      ws_(strand_),
      counts_(stats),
      pacing_timer_(strand_) {}

void WsSession::start() {
  after_attempt_slot(strand_, pacing_timer_, runner_, [self = shared_from_this()] {
    if (!self->stopping_) self->open();
  });
}

void WsSession::stop() {
  asio::post(strand_, [self = shared_from_this()] { self->on_stop(); });
}

void WsSession::open() {
  configure_websocket(ws_, options_);
  async_open_websocket(ws_, runner_, response_,
                       [self = shared_from_this()](OpenResult result) { self->on_open(result); });
}

void WsSession::on_open(const OpenResult& result) {
  if (result.ec) {
    if (stopping_ && result.ec == asio::error::operation_aborted) return;
    ++counts_.failed;
    count_open_failure(result, counts_.refusals, counts_.errors);
    return on_open_failed();
  }
  ++counts_.established;
  counts_.open.increment();
  open_ = true;
  if (stopping_) return begin_close();
  read_next();
  on_established();
}

void WsSession::read_next() {
  ws_.async_read(buffer_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    self->on_read(ec);
  });
}

void WsSession::on_read(boost::system::error_code ec) {
  if (!ec) return on_message();
  if (!open_) return;
  open_ = false;
  counts_.open.decrement();
  const bool by_server = !closing_;
  on_ended(by_server);
  if (!by_server) return;
  ++counts_.closed_by_server;
  if (ec == websocket::error::closed) {
    counts_.close_codes.add(std::to_string(ws_.reason().code));
  } else {
    counts_.close_codes.add("1006");  // no close frame
    counts_.errors.add(describe("read", ec));
  }
}

void WsSession::on_stop() {
  stopping_ = true;
  pacing_timer_.cancel();
  if (open_) return begin_close();
  if (!closing_) beast::get_lowest_layer(ws_).close();  // still connecting
}

void WsSession::begin_close() {
  if (closing_) return;
  closing_ = true;
  ws_.async_close(websocket::close_code::normal,
                  [self = shared_from_this()](boost::system::error_code ec) {
                    if (ec && ec != asio::error::operation_aborted) {
                      self->counts_.errors.add(describe("close", ec));
                    }
                  });
}

}  // namespace wsload
