#include "event_stream.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "dashboard_feed.hpp"
#include "wsvisor/event_journal.hpp"
#include "wsvisor/log.hpp"

namespace wsvisor {
namespace net = boost::asio;

namespace {

void append_event(std::string& out, std::string_view name, std::string_view data) {
  out += "event: ";
  out += name;
  out += "\ndata: ";
  out += data;  // one line of JSON: its strings hold no raw newline
  out += "\n\n";
}

}  // namespace

event_stream::event_stream(transport_stream stream, std::shared_ptr<server_state> state,
                           pending_handshake slot, std::string peer)
    : stream_(std::move(stream)),
      timer_(stream_.get_executor()),
      state_(std::move(state)),
      slot_(std::move(slot)),
      peer_(std::move(peer)) {
  state_->stats.dashboard_streams().Increment();
}

event_stream::~event_stream() {
  state_->stats.dashboard_streams().Decrement();
}

void event_stream::run() {
  boost::system::error_code ignored;
  stream_.next_layer().socket().set_option(net::socket_base::send_buffer_size(kSendBufferBytes),
                                           ignored);
  log_event(spdlog::level::info, "dashboard_opened", "dashboard event stream opened",
            {{"ip", peer_}});
  std::string head =
      "HTTP/1.1 200 OK\r\n"
      "Content-Type: text/event-stream; charset=utf-8\r\n"
      "Cache-Control: no-store\r\n"
      "X-Accel-Buffering: no\r\n"
      "Connection: close\r\n\r\n";
  append_event(head, "hello", dashboard_hello(*state_, static_cast<unsigned>(kInterval.count())));
  append_events(head);
  write(std::move(head));
  read_until_closed();
  tick();  // the first snapshot at once, then one per interval
}

void event_stream::tick() {
  if (ended_) return;
  if (writing_) {
    if (std::chrono::steady_clock::now() - write_started_ >= kStallLimit) {
      state_->stats.dashboard_stalls().Increment();
      return end("stalled: the dashboard read nothing for 10 s");
    }
  } else if (!collecting_) {
    collecting_ = true;
    collect_dashboard_snapshot(state_, [self = shared_from_this()](std::string snapshot) {
      net::post(self->stream_.get_executor(), [self, snapshot = std::move(snapshot)]() mutable {
        self->on_snapshot(std::move(snapshot));
      });
    });
  }
  timer_.expires_after(kInterval);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->tick();
  });
}

void event_stream::on_snapshot(std::string snapshot) {
  collecting_ = false;
  // Still writing the hello: this snapshot is dropped, the next tick brings a newer one.
  if (ended_ || writing_) return;
  std::string text;
  append_events(text);
  append_event(text, "snapshot", snapshot);
  write(std::move(text));
}

void event_stream::append_events(std::string& out) {
  auto batch = lifecycle_journal().since(last_seq_);
  last_seq_ = batch.last_seq;
  if (batch.missed > 0)
    append_event(out, "gap", R"({"missed":)" + std::to_string(batch.missed) + "}");
  for (const auto& entry : batch.entries) append_event(out, "lifecycle", entry);
}

void event_stream::write(std::string text) {
  out_ = std::move(text);
  writing_ = true;
  write_started_ = std::chrono::steady_clock::now();
  net::async_write(stream_, net::buffer(out_),
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     self->writing_ = false;
                     self->out_.clear();
                     self->out_.shrink_to_fit();
                     if (ec) self->end("write failed");
                   });
}

void event_stream::read_until_closed() {
  // A dashboard sends nothing: a read that completes tells that it went away.
  stream_.async_read_some(net::buffer(discard_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                            if (ec) return self->end("closed by the dashboard");
                            self->read_until_closed();
                          });
}

void event_stream::end(const char* why) {
  if (ended_) return;
  ended_ = true;
  log_event(spdlog::level::info, "dashboard_closed", "dashboard event stream closed",
            {{"ip", peer_}, {"why", why}});
  boost::system::error_code ignored;
  timer_.cancel();
  stream_.next_layer().socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_.next_layer().socket().close(ignored);
}

}  // namespace wsvisor
