// One WebSocket connection on the I/O side: admission, the handshake, the read loop,
// the outbound queue and the close. It is the session_port of its connection actor:
// actors hand it bytes and closes, which run on the session's executor: inline when the
// caller already runs there (an actor on the single io thread), posted otherwise.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <caf/actor.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server_state.hpp"
#include "wsvisor/admission.hpp"
#include "wsvisor/auth.hpp"
#include "wsvisor/frame_header.hpp"
#include "wsvisor/message_buffer.hpp"
#include "wsvisor/session_port.hpp"
#include "wsvisor/transport_stream.hpp"
#include "wsvisor/write_coalescing_stream.hpp"

namespace wsvisor {

class websocket_session final : public session_port,
                                public std::enable_shared_from_this<websocket_session> {
 public:
  using request = boost::beast::http::request<boost::beast::http::string_body>;

  // `read_ahead`: bytes the HTTP parser read past the upgrade request (the client's
  // first frames, sent in the same write). `peer_trusted`: the TCP peer may assert the
  // user header (auth.mode = "header").
  websocket_session(transport_stream&& stream, request&& upgrade,
                    std::shared_ptr<server_state> state, pending_handshake pending,
                    steady_time accepted_at, std::string client_ip, std::string read_ahead,
                    bool peer_trusted);
  ~websocket_session() override;

  // Asks for admission; then the handshake and the read loop.
  void run();

  // session_port
  void send(std::string payload, bool text) override;
  void send_shared(shared_payload payload, bool text) override;
  void close(uint16_t code, std::string reason, close_reason why) override;
  void abort(close_reason why) override;
  void ping() override;
  void ping_message(shared_payload payload) override;
  void input_handled() override;
  void actor_gone() override;
  liveness_times liveness() const override;
  uint64_t unread_bytes() const override;
  void apply_fault(const client_fault& fault) override;

 private:
  enum class phase : uint8_t { admitting, handshaking, open, closing, closed };
  // A whole data frame: the header is built when the message is queued (a server's
  // frames are not masked).
  // Its bytes are its own (a reply, an echo) or shared with other recipients (a hub
  // publication, framed once for all of them).
  struct outbound {
    outbound(std::string&& bytes, bool text, bool compressed = false)
        : owned(std::move(bytes)), header(text, owned.size(), /*masked=*/false, compressed) {}
    outbound(shared_payload bytes, bool text)
        : shared(std::move(bytes)), header(text, shared->size(), /*masked=*/false) {}
    const std::string& payload() const { return shared ? *shared : owned; }
    std::string owned;
    shared_payload shared;
    frame_header header;
    // Faults toward the client only, in the header's padding (the slot stays 64 bytes):
    // whether it is the application's heartbeat (see ping_message), and when it may be
    // written, in ms from fault_state::epoch_ns (0 = at once).
    bool heartbeat = false;
    uint32_t release_ms = 0;
  };
  static_assert(sizeof(outbound) <= 64, "an outbound slot fits one cache line");
  // Faults toward the client (CONTRACT 8), made by the first one: a connection that
  // never had one pays a null pointer.
  struct fault_state {
    fault_state(const boost::asio::any_io_executor& executor, int64_t now_ns)
        : epoch_ns(now_ns), timer(executor) {}
    const int64_t epoch_ns;      // outbound::release_ms counts from here
    int64_t stall_until_ns = 0;  // nothing written before this
    uint32_t latency_ms = 0;     // each message held latency_ms +- jitter_ms (order kept)
    uint32_t jitter_ms = 0;
    double drop_ratio = 0;          // that share of data messages discarded
    bool drop_pushes_only = false;  // hub mode: only shared frames (publications)
    bool zombie = false;            // neither read nor written again
    bool reset = false;             // finish() sends RST: no shutdown, linger 0
    // Wakes the writer when the next held message is due (or the stall ends).
    boost::asio::steady_timer timer;
    int64_t timer_due_ns = 0;  // 0 = not armed
    uint64_t random_state = 0;
  };

  void on_admission(admission_decision decision);
  void refuse(reject_reason reason, std::chrono::seconds retry_after, unsigned status = 0);
  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  // send() and send_shared(), on the executor. `corked`: the write waits for the end of
  // the current handler (see send_shared).
  void enqueue(outbound&& message, bool corked = false);
  // permessage-deflate was negotiated and the message is large enough: its payload
  // becomes the compressed one (owned, even when it was shared), RSV1 set.
  void compress(outbound& message) const;
  void do_write();
  // Corked frames (send_shared) are written at the end of the current handler: with one
  // io thread, by one handler for every corked session (server_state::corked_sessions);
  // with strands, by one post to this session's strand.
  void cork();
  void write_corked();
  static void write_all_corked(server_state& state);
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  // Faults toward the client: how many queued messages may be written now (arming the
  // timer for the rest), whether this message is dropped, when a held write resumes.
  std::size_t due_under_fault();
  bool dropped_by_fault(const outbound& message);
  void hold_until(int64_t due_ns);
  void resume_held_writes();
  void become_zombie();
  void reset_now();
  double next_random();
  void begin_close();
  // Open -> closing: the peer has close_timeout from now, then TCP closes.
  void start_closing();
  // Beast failed the connection without a close frame of its own (a compressed message
  // that does not inflate): this one (reason under 124 bytes), then finish().
  void fail_with_close(uint16_t code, std::string_view reason);
  void on_close_held();  // Beast wrote a close of its own (see write_coalescing_stream)
  void release_close();
  void finish();  // closes TCP and tells the actor; idempotent
  // The first reason recorded wins; reason() is it, or the default when none was:
  // handshake_failed before the 101, client after.
  void record(close_reason why, uint16_t code);
  close_reason reason() const;
  uint16_t close_code() const;
  // The close frame's reason text: ours when we closed first, else the peer's.
  std::string close_text() const;
  void drop_queue();
  boost::asio::steady_timer& deadline();  // created on first use
  // Whether the caller already runs on this session's executor; on_executor() runs
  // work there: at once if so, else posted.
  bool running_on_executor() const;
  template <class Work>
  void on_executor(Work&& work);
  bool within_inbound_rate();
  static int64_t now_ns();

  // Frames queued while a write is in flight leave in one system call (see
  // write_coalescing_stream.hpp), and under TLS in one record of up to 16 KiB.
  boost::beast::websocket::stream<write_coalescing_stream<transport_stream>> ws_;
  message_buffer message_;            // the message being read (see message_buffer.hpp)
  uint32_t last_message_bytes_ = 0;   // sizes the next message's first read (do_read)
  std::unique_ptr<request> upgrade_;  // freed once the handshake is done
  std::shared_ptr<server_state> state_;
  pending_handshake pending_;
  // Handshake, then close_timeout; none while the connection is open, so that an idle
  // connection does not pay for a timer it is not using (see deadline()).
  std::unique_ptr<boost::asio::steady_timer> deadline_;
  std::unique_ptr<fault_state> fault_;
  caf::actor actor_;
  std::string client_ip_;
  std::string user_;  // for the log: who the upgrade said it was
  bool peer_trusted_ = false;
  identity_problem identity_problem_ = identity_problem::none;  // why a 401, for the log
  // Oldest first; the first batch_size_ are being written. Empty until the first send
  // (an idle connection pays 24 bytes), then a few slots that one heap block holds.
  std::vector<outbound> queue_;
  uint64_t id_ = 0;
  uint16_t pending_close_code_ = 1000;
  std::string pending_close_reason_;
  phase phase_ = phase::admitting;
  bool writing_ = false;
  bool flush_posted_ = false;   // a corked write is due at the end of the current handler
  std::size_t batch_size_ = 0;  // messages at the queue's front being written
  bool close_sent_ = false;
  bool compressing_ = false;  // the 101 accepted permessage-deflate (server.compression)
  bool ping_in_flight_ = false;
  // The peer's input ended (its close, or a protocol error) and Beast's close frame is
  // held until the actor has handled what was read before it (input_handled).
  bool peer_closing_ = false;
  bool release_with_protocol_error_ = false;  // the peer's close code is forbidden: 1002
  // limits.messages_per_second (burst messages_burst): a token bucket per connection.
  double rate_tokens_ = 0;
  steady_time rate_refilled_{};

  // Read from other threads (sweeps, metrics) without asking the session's executor.
  // (close_reason + 1) << 16 | close code; 0 until a reason is recorded. One atomic,
  // so that a reader never pairs one close's reason with another's code.
  std::atomic<uint32_t> ending_{0};
  std::atomic<int> socket_fd_{-1};  // for unread_bytes() from other threads; -1 once closed
  std::atomic<uint8_t> public_phase_{0};
  std::atomic<uint64_t> queued_bytes_{0};
  const steady_time opened_at_;
  const steady_time accepted_at_;
  steady_time handshake_deadline_;
  std::atomic<int64_t> last_frame_in_ns_;
  std::atomic<int64_t> last_message_ns_;
  std::atomic<int64_t> ping_sent_ns_{0};
  std::atomic<int64_t> last_frame_out_ns_;
};

}  // namespace wsvisor
