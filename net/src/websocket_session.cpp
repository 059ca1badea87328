#include "websocket_session.hpp"

#include <caf/send.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/zlib/error.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <sys/ioctl.h>

#include <algorithm>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include "http_responses.hpp"
#include "wsvisor/auth.hpp"
#include "wsvisor/connection_messages.hpp"
#include "wsvisor/frame_header.hpp"
#include "wsvisor/permessage_deflate.hpp"

namespace wsvisor {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;

// A message's first read asks for at most this many bytes (see do_read).
constexpr std::size_t kMaxFirstReadBytes = 512;
// Outbound slots a connection keeps once its queue is empty (more are freed).
constexpr std::size_t kKeptQueueSlots = 16;

websocket_session::websocket_session(transport_stream&& stream, request&& upgrade,
                                     std::shared_ptr<server_state> state, pending_handshake pending,
                                     steady_time accepted_at, std::string client_ip,
                                     std::string read_ahead, bool peer_trusted)
    : ws_(std::move(stream)),
      upgrade_(std::make_unique<request>(std::move(upgrade))),
      state_(std::move(state)),
      pending_(std::move(pending)),
      client_ip_(std::move(client_ip)),
      peer_trusted_(peer_trusted),
      opened_at_(std::chrono::steady_clock::now()),
      accepted_at_(accepted_at),
      last_frame_in_ns_(now_ns()),
      last_message_ns_(now_ns()),
      last_frame_out_ns_(now_ns()) {
  // The handshake deadline runs from accept (CONTRACT section 3).
  handshake_deadline_ = accepted_at + state_->config.server.handshake_timeout;
  // Frames the client sent with its upgrade request are read first (the HTTP parser
  // already took them from the socket).
  if (!read_ahead.empty()) ws_.next_layer().prime(std::move(read_ahead));
}

websocket_session::~websocket_session() = default;

net::steady_timer& websocket_session::deadline() {
  if (!deadline_) deadline_ = std::make_unique<net::steady_timer>(ws_.get_executor());
  return *deadline_;
}

int64_t websocket_session::now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void websocket_session::run() {
  const auto& config = state_->config;
  auto ticket = std::make_shared<admission_request>();
  ticket->port = shared_from_this();
  ticket->ip = client_ip_;
  const auto origin = upgrade_->find(http::field::origin);
  if (origin != upgrade_->end()) ticket->origin = std::string(origin->value());
  const identity who = identify(*upgrade_, config.auth, peer_trusted_);
  ticket->user = who.user;
  ticket->identity_missing = who.missing;
  ticket->identity_invalid = who.invalid;
  user_ = who.user;
  identity_problem_ = who.problem;
  // What the gateway's connect hook is told (CONTRACT 12.1).
  const bool hook = config.app.mode == "gateway" && !config.gateway.connect_path.empty();
  if (hook) {
    ticket->target = std::string(upgrade_->target());
    for (auto offered : offered_subprotocols(*upgrade_)) ticket->subprotocols.emplace_back(offered);
    for (const auto& name : config.upstream.forward_headers) {
      const auto field = upgrade_->find(name);
      if (field == upgrade_->end()) continue;
      std::string lower = name;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      ticket->forwarded_headers.emplace_back(std::move(lower), std::string(field->value()));
    }
  }
  ticket->reply = [self = shared_from_this()](admission_decision decision) {
    net::post(self->ws_.get_executor(), [self, decision = std::move(decision)]() mutable {
      self->on_admission(std::move(decision));
    });
  };

  // While admission is asked, the timer runs to whichever comes first: the handshake
  // deadline or admission_timeout (then the guard is taken as unavailable); a connect
  // hook adds its own upstream.timeout (the guard answers its failure itself).
  const auto handshake_deadline = handshake_deadline_;
  const auto admission_deadline = std::chrono::steady_clock::now() +
                                  config.limits.admission_timeout +
                                  (hook ? config.upstream.timeout : std::chrono::milliseconds(0));
  deadline().expires_at(std::min(handshake_deadline, admission_deadline));
  deadline().async_wait([self = shared_from_this(), handshake_deadline](beast::error_code ec) {
    if (ec || self->phase_ != phase::admitting) return;
    if (std::chrono::steady_clock::now() >= handshake_deadline) {
      self->record(close_reason::handshake_failed, 1006);
      return self->finish();
    }
    if (self->state_->refusal_log.admit("guard_unavailable"))
      log_event(
          spdlog::level::warn, "admission_timeout",
          "no admission answer within limits.admission_timeout: failing closed",
          {{"admission_timeout", format_duration(self->state_->config.limits.admission_timeout)},
           {"ip", self->client_ip_}});
    self->refuse(reject_reason::guard_unavailable,
                 jittered_retry_after(self->state_->config.limits.retry_after));
  });
  state_->tree.admit(std::move(ticket));
}

void websocket_session::on_admission(admission_decision decision) {
  if (phase_ != phase::admitting) {
    // Too late: the client already got its answer. An admitted slot dies at once.
    if (decision.admitted)
      caf::anon_send(decision.connection, peer_gone_atom::value, reason(), close_code(),
                     std::string());
    return;
  }
  if (!decision.admitted) return refuse(decision.reason, decision.retry_after, decision.status);

  actor_ = std::move(decision.connection);
  id_ = decision.connection_id;
  phase_ = phase::handshaking;
  const auto& config = state_->config;

  // Back to the handshake deadline alone (it runs from accept to the 101).
  deadline().expires_at(handshake_deadline_);
  deadline().async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->phase_ != phase::handshaking) return;
    self->record(close_reason::handshake_failed, 1006);
    self->finish();
  });

  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = websocket::stream_base::none();  // deadline_ instead
  timeouts.idle_timeout = websocket::stream_base::none();       // the janitor's heartbeat instead
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  ws_.read_message_max(config.server.max_message_bytes);
  ws_.auto_fragment(false);
  if (config.server.compression) {
    // Beast negotiates (RFC 7692 as the contract asks: the client's terms within the
    // caps) and inflates what it reads, within read_message_max, so a bomb is closed
    // 1009 before it inflates past max_message_bytes; the session deflates what it
    // frames (compress()), with no context takeover, which the server may always ask.
    websocket::permessage_deflate deflate;
    deflate.server_enable = true;
    deflate.server_no_context_takeover = true;
    deflate.server_max_window_bits = static_cast<int>(config.server.compression_window_bits);
    deflate.client_max_window_bits = static_cast<int>(config.server.compression_window_bits);
    deflate.memLevel = static_cast<int>(config.server.compression_mem_level);
    ws_.set_option(deflate);
  }
  // The connect hook's choice (one the client offered), else the server's own.
  const std::string subprotocol =
      decision.subprotocol.empty() ? select_subprotocol(*upgrade_) : decision.subprotocol;
  // Beast decorates after it has negotiated the extensions: the answer tells whether
  // this connection compresses (the session is alive while Beast accepts).
  ws_.set_option(
      websocket::stream_base::decorator([this, subprotocol](websocket::response_type& response) {
        response.set(http::field::server, "wsvisor");
        if (!subprotocol.empty()) response.set(http::field::sec_websocket_protocol, subprotocol);
        const auto extensions = response[http::field::sec_websocket_extensions];
        compressing_ = extensions.find("permessage-deflate") != beast::string_view::npos;
      }));
  ws_.control_callback([this](websocket::frame_type, beast::string_view) {
    // Pings, pongs and closes all prove the peer is alive (heartbeat).
    last_frame_in_ns_.store(now_ns(), std::memory_order_relaxed);
    ping_sent_ns_.store(0, std::memory_order_relaxed);
  });
  beast::get_lowest_layer(ws_).expires_never();
  ws_.async_accept(*upgrade_,
                   beast::bind_front_handler(&websocket_session::on_accept, shared_from_this()));
}

// Every refusal is counted and logged here, once, as the client receives it.
void websocket_session::refuse(reject_reason reason, std::chrono::seconds retry_after,
                               unsigned status) {
  state_->stats.admissions_rejected(reason).Increment();
  if (state_->refusal_log.admit(to_string(reason))) {
    if (reason == reject_reason::unauthorized)
      log_event(spdlog::level::info, "refused", "admission refused",
                {{"reason", to_string(reason)},
                 {"detail", to_string(identity_problem_)},
                 {"ip", client_ip_}});
    else
      log_event(spdlog::level::info, "refused", "admission refused",
                {{"reason", to_string(reason)},
                 {"ip", client_ip_},
                 log_field::optional("user", user_),
                 {"retry_after_s", static_cast<int64_t>(retry_after.count())}});
  }
  phase_ = phase::closing;
  public_phase_ = 2;
  auto response = std::make_shared<http::response<http::string_body>>(
      refusal_response(reason, retry_after, upgrade_->version(), status));
  // Straight to the transport (TCP, or TLS over it), under the coalescing layer: its
  // completion must mean the socket has the answer, since finish() closes the socket
  // right after.
  http::async_write(ws_.next_layer().next_layer(), *response,
                    [self = shared_from_this(), response](beast::error_code, std::size_t) {
                      self->record(close_reason::handshake_failed, 1006);
                      self->finish();
                    });
}

void websocket_session::on_accept(beast::error_code ec) {
  upgrade_.reset();
  if (ec || phase_ != phase::handshaking) {
    if (ec)
      log_event(spdlog::level::debug, "handshake_failed", "WebSocket handshake failed",
                {{"id", id_}, {"ip", client_ip_}, {"error", ec.message()}});
    record(close_reason::handshake_failed, 1006);
    return finish();
  }
  pending_.release();
  deadline_.reset();  // cancels the handshake deadline; begin_close() makes a new one
  phase_ = phase::open;
  public_phase_ = 1;
  socket_fd_.store(beast::get_lowest_layer(ws_).socket().native_handle(),
                   std::memory_order_relaxed);
  const double handshake_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - accepted_at_).count();
  state_->stats.handshake_duration_seconds().Observe(handshake_s);
  log_event(spdlog::level::debug, "connection_opened", "connection opened (101 sent)",
            {{"id", id_},
             log_field::optional("user", user_),
             {"ip", client_ip_},
             {"handshake_ms", handshake_s * 1000}});
  std::string().swap(user_);  // only the refusal and open lines need it
  if (actor_) caf::anon_send(actor_, opened_atom::value);  // the application's on_open
  // A close that Beast writes on its own (its answer to the peer's close, or the close
  // that fails the connection on a protocol error) waits until the actor has handled
  // the messages read before it: their replies leave first.
  ws_.next_layer().hold_close_frames(true, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->on_close_held();
  });
  last_frame_in_ns_.store(now_ns(), std::memory_order_relaxed);
  last_message_ns_.store(now_ns(), std::memory_order_relaxed);
  do_read();
}

void websocket_session::do_read() {
  // A message's first read is small, since an idle connection waits in it: what the
  // buffer holds without the heap, or the last message's size up to kMaxFirstReadBytes
  // (so that a busy connection's small messages take one read each). The rest of a
  // message is read with Beast's own size hint (limit 0).
  const std::size_t limit =
      message_.size() == 0 ? std::max<std::size_t>(message_.capacity(), last_message_bytes_) : 0;
  ws_.async_read_some(message_, limit,
                      beast::bind_front_handler(&websocket_session::on_read, shared_from_this()));
}

void websocket_session::on_read(beast::error_code ec, std::size_t) {
  // A zombie (fault injection) reads nothing more, whatever this read brought; the
  // heartbeat closes it.
  if (fault_ && fault_->zombie) return;
  if (ec) {
    if (ec == websocket::error::closed) {
      // The peer's close frame: its own close, or the answer to ours.
      record(close_reason::client, ws_.reason().code);
    } else if (ec == websocket::error::message_too_big) {
      record(close_reason::protocol_error, 1009);  // Beast sent the 1009 itself
    } else if (ec == websocket::error::bad_frame_payload) {
      record(close_reason::protocol_error, 1007);  // invalid UTF-8: Beast sent 1007
    } else if (ec == websocket::condition::protocol_violation) {
      record(close_reason::protocol_error, 1002);
    } else if (ec.category() ==
               beast::zlib::make_error_code(beast::zlib::error::general).category()) {
      // A compressed message that does not inflate (RFC 7692 8: fail the connection).
      // Beast stops without a close frame; the client is told why before TCP closes.
      record(close_reason::protocol_error, 1007);
      return fail_with_close(1007, "invalid compressed data");
    } else {
      record(close_reason::client, 1006);  // vanished: EOF or reset, no close frame
    }
    return finish();
  }
  const int64_t now = now_ns();
  last_frame_in_ns_.store(now, std::memory_order_relaxed);
  if (!ws_.is_message_done()) return do_read();  // more frames or bytes of this message
  last_message_bytes_ = static_cast<uint32_t>(std::min(message_.size(), kMaxFirstReadBytes));
  last_message_ns_.store(now, std::memory_order_relaxed);
  ping_sent_ns_.store(0, std::memory_order_relaxed);
  state_->stats.messages_received().Increment();
  state_->stats.bytes_received().Increment(static_cast<double>(message_.size()));
  if (phase_ != phase::open) {
    // Closing: what the peer still sends is read (to see its close) but not handled.
    message_.clear();
    return do_read();
  }
  if (!within_inbound_rate()) {
    message_.clear();
    record(close_reason::rate_limit, 1008);
    pending_close_code_ = 1008;
    pending_close_reason_ = "rate limit";
    begin_close();
    return do_read();  // keep reading until the peer answers the close
  }
  if (actor_) {
    caf::anon_send(actor_, inbound_atom::value, message_.take(), ws_.got_text());
  } else {
    message_.clear();
  }
  do_read();
}

bool websocket_session::within_inbound_rate() {
  const auto& limits = state_->config.limits;
  if (limits.messages_per_second <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  const double burst = static_cast<double>(limits.messages_burst);
  if (rate_refilled_ == steady_time{}) {
    rate_tokens_ = burst;
  } else {
    const double elapsed = std::chrono::duration<double>(now - rate_refilled_).count();
    rate_tokens_ = std::min(burst, rate_tokens_ + elapsed * limits.messages_per_second);
  }
  rate_refilled_ = now;
  if (rate_tokens_ < 1.0 - 1e-9) return false;
  rate_tokens_ = std::max(0.0, rate_tokens_ - 1.0);
  return true;
}

bool websocket_session::running_on_executor() const {
  // Only the plain io_context executor (one io thread) is checked: with strands, an
  // actor never runs on a session's strand, so the answer there is always no.
  return state_->single_io_thread && state_->io.get_executor().running_in_this_thread();
}

template <class Work>
void websocket_session::on_executor(Work&& work) {
  if (running_on_executor()) return work();
  net::post(ws_.get_executor(), std::forward<Work>(work));
}

void websocket_session::send(std::string payload, bool text) {
  // Called for every outbound message: inline, it costs neither a handler nor a copy
  // of this session's shared pointer.
  if (running_on_executor()) return enqueue(outbound(std::move(payload), text));
  net::post(ws_.get_executor(),
            [self = shared_from_this(), payload = std::move(payload), text]() mutable {
              self->enqueue(outbound(std::move(payload), text));
            });
}

// A shared frame is a publication, and publications come in bursts (a shard handles
// several in one go): corked, the write waits for the end of the current handler, so
// that a burst leaves in one system call per subscriber, not one per publication, as
// uWebSockets' topic tree drains its publications once per loop iteration.
void websocket_session::send_shared(shared_payload payload, bool text) {
  if (running_on_executor()) return enqueue(outbound(std::move(payload), text), true);
  net::post(ws_.get_executor(),
            [self = shared_from_this(), payload = std::move(payload), text]() mutable {
              self->enqueue(outbound(std::move(payload), text), true);
            });
}

void websocket_session::compress(outbound& message) const {
  const auto& server = state_->config.server;
  const bool text = message.header.text();
  outbound compressed(
      deflate_message(message.payload(), static_cast<int>(server.compression_window_bits),
                      static_cast<int>(server.compression_mem_level)),
      text, /*compressed=*/true);
  compressed.heartbeat = message.heartbeat;
  compressed.release_ms = message.release_ms;
  message = std::move(compressed);
}

void websocket_session::enqueue(outbound&& message, bool corked) {
  if (phase_ != phase::open) return;  // closing: nothing more goes out
  if (fault_) {
    if (fault_->zombie || dropped_by_fault(message)) return;
    if (fault_->latency_ms > 0) {
      // M +- J ms from now; the queue is written in order, so a message held less than
      // the one before it still waits for it (order kept).
      const int64_t jitter =
          fault_->jitter_ms == 0
              ? 0
              : static_cast<int64_t>(std::llround((2 * next_random() - 1) * fault_->jitter_ms));
      const int64_t hold_ms = static_cast<int64_t>(fault_->latency_ms) + jitter;
      // Rounded up to the ms: never released before its hold.
      const int64_t elapsed_ms = (now_ns() - fault_->epoch_ns + 999999) / 1000000;
      message.release_ms = static_cast<uint32_t>(elapsed_ms + hold_ms);
    }
  }
  if (compressing_ && message.payload().size() >= state_->config.server.compression_threshold)
    compress(message);
  const auto size = message.payload().size();
  const auto backlog = queued_bytes_.load();
  // The backlog is what counts: one message (up to max_message_bytes, which may be
  // larger than send_queue_bytes) always fits an empty queue, so a large echo is not a
  // slow consumer; a client that leaves earlier messages unread is.
  if (backlog > 0 && backlog + size > state_->config.limits.send_queue_bytes) {
    // Slow consumer: drop what it did not read and tell it why (CONTRACT section 5).
    // This message is never queued, so it is never counted.
    drop_queue();
    state_->stats.evictions(eviction_reason::slow_consumer).Increment();
    record(close_reason::slow_consumer, 1008);
    pending_close_code_ = 1008;
    pending_close_reason_ = "slow consumer";
    return begin_close();
  }
  queued_bytes_.fetch_add(size);
  state_->stats.send_queue_bytes().Increment(static_cast<double>(size));
  queue_.push_back(std::move(message));
  last_frame_out_ns_.store(now_ns(), std::memory_order_relaxed);
  if (writing_) return;  // on_write takes what is queued
  if (!corked) return do_write();
  cork();
}

void websocket_session::cork() {
  if (flush_posted_) return;
  flush_posted_ = true;
  if (!state_->single_io_thread) {
    net::post(ws_.get_executor(), [self = shared_from_this()] { self->write_corked(); });
    return;
  }
  auto& corked = state_->corked_sessions;
  if (corked.empty()) net::post(state_->io, [state = state_] { write_all_corked(*state); });
  corked.push_back(shared_from_this());
}

void websocket_session::write_all_corked(server_state& state) {
  auto corked = std::move(state.corked_sessions);
  state.corked_sessions.clear();
  for (auto& session : corked) session->write_corked();
}

void websocket_session::write_corked() {
  flush_posted_ = false;
  if (!writing_ && !queue_.empty() && phase_ != phase::closed) do_write();
}

void websocket_session::drop_queue() {
  // The batch being written stays: on_write pops it.
  const std::size_t keep = writing_ ? std::min(batch_size_, queue_.size()) : 0;
  uint64_t dropped = 0;
  while (queue_.size() > keep) {
    dropped += queue_.back().payload().size();
    queue_.pop_back();
  }
  queued_bytes_.fetch_sub(dropped);
  state_->stats.send_queue_bytes().Decrement(static_cast<double>(dropped));
}

// Everything queued leaves as one batch of whole data frames, framed here and handed to
// the coalescing layer in one call (Beast writes one frame per operation, and so one
// system call per message). The layer takes the bytes at once, keeps them in order with
// Beast's own control frames, and completes when the socket can take more.
void websocket_session::do_write() {
  const std::size_t due = fault_ ? due_under_fault() : queue_.size();
  if (due == 0) return;  // held by a fault: its timer comes back here
  writing_ = true;
  batch_size_ = due;
  // On the stack for batches of up to 16 messages: a batch of one is every message of a
  // request/response client, and should not cost an allocation.
  boost::container::small_vector<net::const_buffer, 32> frames;
  frames.reserve(2 * batch_size_);
  for (std::size_t i = 0; i < batch_size_; ++i) {
    const auto& message = queue_[i];
    frames.emplace_back(message.header.data(), message.header.size);
    const auto& payload = message.payload();
    frames.emplace_back(payload.data(), payload.size());
  }
  ws_.next_layer().async_write_some(
      frames, beast::bind_front_handler(&websocket_session::on_write, shared_from_this()));
}

void websocket_session::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  uint64_t written = 0;
  for (std::size_t i = 0; i < batch_size_; ++i) written += queue_[i].payload().size();
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(batch_size_));
  // A burst's storage goes back; a steady stream keeps its few slots.
  if (queue_.empty() && queue_.capacity() > kKeptQueueSlots) std::vector<outbound>().swap(queue_);
  const auto messages = batch_size_;
  batch_size_ = 0;
  queued_bytes_.fetch_sub(written);
  state_->stats.send_queue_bytes().Decrement(static_cast<double>(written));
  if (fault_ && fault_->zombie) return;  // cancelled by become_zombie(): write no more
  if (ec) {
    record(close_reason::client, 1006);
    return finish();
  }
  state_->stats.messages_sent().Increment(static_cast<double>(messages));
  state_->stats.bytes_sent().Increment(static_cast<double>(written));
  if (!queue_.empty()) return do_write();
  if (phase_ == phase::closing && !close_sent_) begin_close();
}

namespace {

// A close frame carries at most 123 bytes of reason (RFC 6455 5.5): a longer one is cut
// before the first character that would not fit whole. Beast's reason_string throws past
// 123 bytes, and that inside an I/O handler ended the process: a reason from the hub API
// or a backend's proxy answer reaches here as given.
std::string fitted_reason(std::string reason) {
  constexpr std::size_t kMaxReasonBytes = 123;
  if (reason.size() <= kMaxReasonBytes) return reason;
  std::size_t keep = kMaxReasonBytes;
  while (keep > 0 && (static_cast<unsigned char>(reason[keep]) & 0xC0) == 0x80) --keep;
  reason.resize(keep);
  return reason;
}

}  // namespace

void websocket_session::close(uint16_t code, std::string reason, close_reason why) {
  reason = fitted_reason(std::move(reason));
  // The last gate before the wire: a code from a backend's answer or an application
  // that the RFC forbids on a close frame (1005, 1006, 0, 5000...) would make the
  // client fail the connection with a protocol error instead; 1011 says what happened.
  if (!is_sendable_close_code(code)) code = 1011;
  // Recorded at once: the actor may die before the session's executor runs the close.
  record(why, code);
  on_executor([self = shared_from_this(), code, reason = std::move(reason)]() mutable {
    if (self->phase_ == phase::closed) return;
    if (self->peer_closing_) return;  // the peer's close is being answered already
    if (self->phase_ != phase::open) {
      // Not upgraded yet (or already closing): nothing to say to the peer.
      if (self->phase_ != phase::closing) self->finish();
      return;
    }
    self->pending_close_code_ = code;
    self->pending_close_reason_ = std::move(reason);
    self->begin_close();
  });
}

// The close frame goes after everything already queued; then the peer has
// close_timeout to answer before TCP is closed.
void websocket_session::begin_close() {
  // Our own close frame goes in order, after what is queued (on_write waits for it).
  ws_.next_layer().hold_close_frames(false);
  if (phase_ == phase::open) start_closing();
  if (writing_ || close_sent_) return;     // on_write comes back here when the queue is empty
  if (!queue_.empty()) return do_write();  // corked frames first, then the close
  // A zombie writes nothing (close_timeout ends it). A stall holds the messages, and so
  // the close behind them; a close with nothing queued goes (a slow consumer's 1008:
  // its queue was dropped), since the bound is what a stall must not escape.
  if (fault_ && fault_->zombie) return;
  close_sent_ = true;
  ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(pending_close_code_),
                                          pending_close_reason_),
                  [self = shared_from_this()](beast::error_code ec) {
                    // An evicted peer may well be dead: its slot is already free, so
                    // TCP closes once the frame is out. Otherwise the read loop ends
                    // when the peer's close arrives (or close_timeout does).
                    if (ec || self->reason() == close_reason::evicted) self->finish();
                  });
}

// Beast answered the peer's close, or failed the connection on a protocol error, and
// its close frame is held. The actor is asked to handle everything it received first
// (input_end_atom, behind those messages in its mailbox); input_handled() releases the
// frame, or close_timeout does.
void websocket_session::on_close_held() {
  if (phase_ == phase::closed) return release_close();
  peer_closing_ = true;
  public_phase_ = 2;
  const auto peer = ws_.reason();
  if (peer.code != websocket::close_code::none) {
    // The peer's own close: Beast accepts codes of 5000 and above, which RFC 6455
    // (7.4.2) leaves undefined; such a close fails the connection with 1002.
    const bool forbidden = peer.code >= 5000;
    release_with_protocol_error_ = forbidden;
    record(forbidden ? close_reason::protocol_error : close_reason::client,
           forbidden ? uint16_t{1002} : static_cast<uint16_t>(peer.code));
  }
  if (!actor_) return release_close();
  caf::anon_send(actor_, input_end_atom::value);
  deadline().expires_after(state_->config.janitor.close_timeout);
  deadline().async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->release_close();
  });
}

void websocket_session::start_closing() {
  phase_ = phase::closing;
  public_phase_ = 2;
  deadline().expires_after(state_->config.janitor.close_timeout);
  deadline().async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->finish();
  });
}

void websocket_session::fail_with_close(uint16_t code, std::string_view reason) {
  // Beast has given the connection up: the close frame goes under it, then TCP closes.
  auto frame = std::make_shared<std::string>();
  frame->push_back('\x88');
  frame->push_back(static_cast<char>(2 + reason.size()));
  frame->push_back(static_cast<char>(code >> 8));
  frame->push_back(static_cast<char>(code & 0xff));
  frame->append(reason);
  if (phase_ == phase::open) start_closing();
  // Accepted is not yet written: the layer's teardown waits until it is, then shuts
  // the transport down (close_timeout bounds a peer that never ends it).
  ws_.next_layer().async_write_some(
      net::buffer(*frame), [self = shared_from_this(), frame](beast::error_code ec, std::size_t) {
        if (ec) return self->finish();
        async_teardown(beast::role_type::server, self->ws_.next_layer(),
                       [self](beast::error_code) { self->finish(); });
      });
}

void websocket_session::release_close() {
  if (!ws_.next_layer().close_frame_held()) return;
  ws_.next_layer().release_close(release_with_protocol_error_ ? std::optional<uint16_t>(1002)
                                                              : std::nullopt);
}

void websocket_session::input_handled() {
  on_executor([self = shared_from_this()] {
    if (self->peer_closing_) self->release_close();
  });
}

uint64_t websocket_session::unread_bytes() const {
  // FIONREAD on a descriptor another thread may close meanwhile: at worst it answers
  // for a closed (EBADF: 0) or reused descriptor, and a sweep keeps a connection one
  // look longer.
  const int fd = socket_fd_.load(std::memory_order_relaxed);
  int available = 0;
  if (fd < 0 || ::ioctl(fd, FIONREAD, &available) != 0 || available < 0) return 0;
  return static_cast<uint64_t>(available);
}

void websocket_session::abort(close_reason why) {
  record(why, 1006);  // at once, as in close()
  on_executor([self = shared_from_this()] { self->finish(); });
}

void websocket_session::ping() {
  on_executor([self = shared_from_this()] {
    if (self->phase_ != phase::open || self->ping_in_flight_) return;
    if (const auto& fault = self->fault_) {
      if (fault->zombie) {
        // Nothing goes out, so no pong comes back: the heartbeat's pong_timeout runs
        // from here and frees the slot, as for any dead peer.
        if (self->ping_sent_ns_.load(std::memory_order_relaxed) == 0)
          self->ping_sent_ns_.store(now_ns(), std::memory_order_relaxed);
        return;
      }
      if (now_ns() < fault->stall_until_ns) return;  // stalled: nothing is written
    }
    self->ping_in_flight_ = true;
    self->ping_sent_ns_.store(now_ns(), std::memory_order_relaxed);
    self->ws_.async_ping({}, [self](beast::error_code) { self->ping_in_flight_ = false; });
  });
}

void websocket_session::ping_message(shared_payload payload) {
  on_executor([self = shared_from_this(), payload = std::move(payload)]() mutable {
    if (self->phase_ != phase::open) return;
    if (self->fault_) {
      // Held or never written: the pong timeout starts once it is (due_under_fault), or
      // now for a zombie, whose heartbeat is never answered.
      if (self->fault_->zombie && self->ping_sent_ns_.load(std::memory_order_relaxed) == 0)
        self->ping_sent_ns_.store(now_ns(), std::memory_order_relaxed);
      outbound heartbeat(std::move(payload), true);
      heartbeat.heartbeat = true;
      return self->enqueue(std::move(heartbeat));
    }
    self->ping_sent_ns_.store(now_ns(), std::memory_order_relaxed);
    self->enqueue(outbound(std::move(payload), true));
  });
}

void websocket_session::actor_gone() {
  on_executor([self = shared_from_this()] {
    self->actor_ = nullptr;
    // A close already under way (eviction, 1011 after a crash, the peer's close waiting
    // for the actor) ends by itself within close_timeout; anything else must not
    // outlive its actor.
    if (self->peer_closing_) return self->release_close();
    if (self->phase_ == phase::closing) return;
    if (self->phase_ != phase::closed) self->finish();
  });
}

void websocket_session::apply_fault(const client_fault& fault) {
  on_executor([self = shared_from_this(), fault] {
    if (self->phase_ == phase::closed) return;
    if (!self->fault_) {
      self->fault_ = std::make_unique<fault_state>(self->ws_.get_executor(), now_ns());
      // Seeded per session: the drops of two connections are independent.
      self->fault_->random_state =
          static_cast<uint64_t>(now_ns()) ^ (self->id_ * 0x9e3779b97f4a7c15ULL);
    }
    auto& state = *self->fault_;
    if (fault.clear) {
      // Every standing fault goes, and what it held leaves now (a zombie stays one: its
      // read was cancelled).
      state.latency_ms = state.jitter_ms = 0;
      state.drop_ratio = 0;
      state.stall_until_ns = 0;
      for (auto& message : self->queue_) message.release_ms = 0;
      return self->resume_held_writes();
    }
    switch (fault.action) {
      case client_fault_action::stall:
        state.stall_until_ns =
            std::max(state.stall_until_ns, now_ns() + static_cast<int64_t>(fault.ms) * 1000000);
        return self->hold_until(state.stall_until_ns);
      case client_fault_action::latency:
        state.latency_ms = fault.ms;
        state.jitter_ms = std::min(fault.jitter_ms, fault.ms);
        return;
      case client_fault_action::drop:
        state.drop_ratio = fault.ratio;
        state.drop_pushes_only = fault.pushes_only;
        return;
      case client_fault_action::zombie:
        return self->become_zombie();
      case client_fault_action::reset:
        return self->reset_now();
      default:
        return;  // close and restart are close() calls
    }
  });
}

std::size_t websocket_session::due_under_fault() {
  auto& state = *fault_;
  if (state.zombie) return 0;
  const int64_t now = now_ns();
  if (now < state.stall_until_ns) {
    hold_until(state.stall_until_ns);
    return 0;
  }
  const auto release_ns = [&state](const outbound& message) {
    return state.epoch_ns + static_cast<int64_t>(message.release_ms) * 1000000;
  };
  std::size_t due = 0;
  while (due < queue_.size() && release_ns(queue_[due]) <= now) {
    // The application's heartbeat counts from when it really goes out.
    if (queue_[due].heartbeat && ping_sent_ns_.load(std::memory_order_relaxed) == 0)
      ping_sent_ns_.store(now, std::memory_order_relaxed);
    ++due;
  }
  if (due == 0) hold_until(release_ns(queue_.front()));
  return due;
}

bool websocket_session::dropped_by_fault(const outbound& message) {
  const auto& state = *fault_;
  if (state.drop_ratio <= 0 || message.heartbeat) return false;
  if (state.drop_pushes_only && !message.shared) return false;
  if (next_random() >= state.drop_ratio) return false;
  state_->stats.faults_dropped().Increment();
  return true;
}

void websocket_session::hold_until(int64_t due_ns) {
  auto& state = *fault_;
  if (state.timer_due_ns != 0 && state.timer_due_ns <= due_ns) return;  // sooner already
  state.timer_due_ns = due_ns;
  state.timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(due_ns)));
  state.timer.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;  // re-armed sooner, or the session finished
    self->fault_->timer_due_ns = 0;
    self->resume_held_writes();
  });
}

void websocket_session::resume_held_writes() {
  if (phase_ == phase::closed || writing_) return;  // on_write goes on by itself
  if (!queue_.empty()) return do_write();
  if (phase_ == phase::closing && !close_sent_) begin_close();
}

// Neither read nor written again, TCP left open: what a host that died without a FIN
// looks like. The heartbeat finds it (ping() and ping_message() start its pong timeout)
// and frees the slot as for any zombie.
void websocket_session::become_zombie() {
  auto& state = *fault_;
  if (state.zombie || phase_ != phase::open) return;
  state.zombie = true;
  // Unread input is a sweep's evidence of a backlogged, living peer: a zombie has none.
  socket_fd_.store(-1, std::memory_order_relaxed);
  // The pending read (and a write in flight) end with operation_aborted, and their
  // handlers stop there.
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().cancel(ignored);
}

void websocket_session::reset_now() {
  record(close_reason::admin, 1006);
  fault_->reset = true;
  finish();
}

double websocket_session::next_random() {
  // splitmix64: cheap, and only a fault's drops and jitter read it.
  uint64_t z = (fault_->random_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

void websocket_session::finish() {
  if (phase_ == phase::closed) return;
  // Nothing recorded yet: the socket just went away (before the 101: the handshake
  // failed). Recorded before the phase changes, which reason()'s default reads.
  record(public_phase_.load() == 0 ? close_reason::handshake_failed : close_reason::client, 1006);
  phase_ = phase::closed;
  public_phase_ = 3;
  pending_.release();
  deadline_.reset();  // cancels a pending wait
  socket_fd_.store(-1, std::memory_order_relaxed);
  // A close frame still held goes (and fails) with the socket, so that the Beast
  // operation waiting behind it completes.
  release_close();
  beast::error_code ignored;
  auto& socket = beast::get_lowest_layer(ws_).socket();
  if (fault_) {
    fault_->timer.cancel();
    // A reset fault: linger 0 and no shutdown, so that close() sends RST, not FIN.
    if (fault_->reset) socket.set_option(net::socket_base::linger(true, 0), ignored);
  }
  if (!fault_ || !fault_->reset) socket.shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
  drop_queue();
  if (actor_) {
    // How it ended travels with the actor's exit to the shard that releases the slot.
    caf::anon_send(actor_, peer_gone_atom::value, reason(), close_code(), close_text());
    actor_ = nullptr;  // the shard holds the slot until the actor is down
  }
}

void websocket_session::record(close_reason why, uint16_t code) {
  uint32_t unset = 0;
  ending_.compare_exchange_strong(unset, (static_cast<uint32_t>(why) + 1) << 16 | code);
}

close_reason websocket_session::reason() const {
  const uint32_t ending = ending_.load();
  if (ending != 0) return static_cast<close_reason>((ending >> 16) - 1);
  return public_phase_.load() == 0 ? close_reason::handshake_failed : close_reason::client;
}

std::string websocket_session::close_text() const {
  if (close_sent_ && !peer_closing_) return pending_close_reason_;
  const auto& peer = ws_.reason();
  return std::string(peer.reason.data(), peer.reason.size());
}

uint16_t websocket_session::close_code() const {
  const uint32_t ending = ending_.load();
  return ending != 0 ? static_cast<uint16_t>(ending & 0xffff) : 1006;
}

liveness_times websocket_session::liveness() const {
  liveness_times times;
  const auto from_ns = [](int64_t ns) {
    return steady_time(
        std::chrono::duration_cast<steady_time::duration>(std::chrono::nanoseconds(ns)));
  };
  times.opened_at = opened_at_;
  times.last_frame_in = from_ns(last_frame_in_ns_.load(std::memory_order_relaxed));
  times.last_message = from_ns(last_message_ns_.load(std::memory_order_relaxed));
  times.last_frame_out = from_ns(last_frame_out_ns_.load(std::memory_order_relaxed));
  const auto ping_ns = ping_sent_ns_.load(std::memory_order_relaxed);
  times.ping_sent_at = ping_ns ? from_ns(ping_ns) : steady_time{};
  times.queued_bytes = queued_bytes_.load(std::memory_order_relaxed);
  const auto p = public_phase_.load();
  times.open = p == 1;
  times.closing = p == 2;
  return times;
}

}  // namespace wsvisor
