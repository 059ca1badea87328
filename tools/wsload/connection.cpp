#include "connection.hpp"

#include "wsvisor/frame_header.hpp"
#include "wsvisor/permessage_deflate.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket/error.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <random>

namespace wsload {

namespace asio = boost::asio;
namespace http = boost::beast::http;

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string describe(const std::string& phase, const boost::system::error_code& ec) {
  return phase + ": " + ec.message();
}

boost::system::error_code prepare_socket(tcp::socket& socket, Runner& runner) {
  boost::system::error_code ec;
  auto source = runner.next_source();
  if (!source) return ec;  // the kernel chooses the source address at connect
  socket.open(runner.target().protocol(), ec);
  if (ec) return ec;
  using bind_address_no_port =
      asio::detail::socket_option::boolean<IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT>;
  socket.set_option(bind_address_no_port(true), ec);
  if (ec) return ec;
  socket.bind(tcp::endpoint(*source, 0), ec);
  return ec;
}

void configure_websocket(WsStream& ws, const Options& options, const Headers& extra) {
  ws.set_option(websocket::stream_base::decorator(
      [headers = options.headers, extra,
       subprotocol = options.subprotocol](websocket::request_type& req) {
        req.set(http::field::user_agent, "wsload");
        for (const auto& [name, value] : headers) req.insert(name, value);
        for (const auto& [name, value] : extra) req.insert(name, value);
        if (!subprotocol.empty()) req.set(http::field::sec_websocket_protocol, subprotocol);
      }));
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = to_duration(options.handshake_timeout_s);  // also bounds close
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  ws.set_option(timeouts);
  ws.read_message_max(64u << 20);
  if (options.compression) {
    // Each message is compressed on its own (append_masked_frame), which is what
    // client_no_context_takeover promises; the server's replies are inflated by Beast.
    websocket::permessage_deflate deflate;
    deflate.client_enable = true;
    deflate.client_no_context_takeover = true;
    ws.set_option(deflate);
  }
}

void async_open_tcp(beast::tcp_stream& stream, Runner& runner,
                    std::function<void(boost::system::error_code)> done) {
  if (auto ec = prepare_socket(stream.socket(), runner)) {
    asio::post(stream.get_executor(), [done = std::move(done), ec] { done(ec); });
    return;
  }
  stream.expires_after(to_duration(runner.options().handshake_timeout_s));
  stream.async_connect(runner.target(),
                       [&stream, done = std::move(done)](boost::system::error_code ec) {
                         stream.expires_never();
                         done(ec);
                       });
}

namespace {

// One client context for every connection: no verification (wsload measures a server
// of one's own, often with a self-signed certificate), TLS 1.2 and up.
std::shared_ptr<asio::ssl::context> client_tls_context() {
  static const auto context = [] {
    auto made = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    made->set_verify_mode(asio::ssl::verify_none);
    return made;
  }();
  return context;
}

// The upgrade, on a connected (and maybe TLS) stream.
void upgrade(WsStream& ws, const Runner& runner, websocket::response_type& response,
             std::function<void(OpenResult)> done) {
  ws.async_handshake(response, runner.options().host_header(), runner.options().path,
                     [&response, done = std::move(done)](boost::system::error_code ec) {
                       OpenResult result{ec, ec ? "handshake" : "", 0};
                       if (ec == websocket::error::upgrade_declined) {
                         result.status = static_cast<int>(response.result_int());
                       }
                       done(result);
                     });
}

}  // namespace

void async_open_websocket(WsStream& ws, Runner& runner, websocket::response_type& response,
                          std::function<void(OpenResult)> done) {
  auto& stream = beast::get_lowest_layer(ws);
  async_open_tcp(stream, runner, [&ws, &runner, &response, done = std::move(done)](auto ec) {
    if (ec) return done({ec, "connect", 0});
    if (!runner.options().tls) return upgrade(ws, runner, response, std::move(done));
    auto& transport = ws.next_layer().next_layer();
    transport.start_tls(client_tls_context());
    transport.next_layer().expires_after(to_duration(runner.options().handshake_timeout_s));
    transport.async_handshake(
        asio::ssl::stream_base::client,
        [&ws, &runner, &response, done = std::move(done)](boost::system::error_code ec) mutable {
          ws.next_layer().next_layer().next_layer().expires_never();
          if (ec) return done({ec, "tls", 0});
          upgrade(ws, runner, response, std::move(done));
        });
  });
}

void count_open_failure(const OpenResult& result, CounterMap& refusals, CounterMap& errors) {
  if (result.refused()) {
    refusals.add(std::to_string(result.status));
  } else {
    errors.add(describe(result.phase, result.ec));
  }
}

void after_attempt_slot(const Strand& strand, asio::steady_timer& timer, Runner& runner,
                        std::function<void()> then) {
  asio::post(strand, [&timer, &runner, then = std::move(then)]() mutable {
    timer.expires_at(runner.next_attempt_slot());
    timer.async_wait([then = std::move(then)](boost::system::error_code ec) {
      if (!ec) then();
    });
  });
}

namespace {

std::string base64(const unsigned char* data, std::size_t size) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < size; i += 3) {
    std::uint32_t chunk = std::uint32_t{data[i]} << 16;
    if (i + 1 < size) chunk |= std::uint32_t{data[i + 1]} << 8;
    if (i + 2 < size) chunk |= data[i + 2];
    out += alphabet[(chunk >> 18) & 63];
    out += alphabet[(chunk >> 12) & 63];
    out += i + 1 < size ? alphabet[(chunk >> 6) & 63] : '=';
    out += i + 2 < size ? alphabet[chunk & 63] : '=';
  }
  return out;
}

}  // namespace

std::string upgrade_request(const Options& options) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  unsigned char key[16];
  for (auto& byte : key) byte = static_cast<unsigned char>(random());
  std::string request = "GET " + options.path + " HTTP/1.1\r\n";
  request += "Host: " + options.host_header() + "\r\n";
  request += "User-Agent: wsload\r\n";
  request += "Upgrade: websocket\r\nConnection: Upgrade\r\n";
  request += "Sec-WebSocket-Key: " + base64(key, sizeof key) + "\r\n";
  request += "Sec-WebSocket-Version: 13\r\n";
  if (!options.subprotocol.empty()) {
    request += "Sec-WebSocket-Protocol: " + options.subprotocol + "\r\n";
  }
  for (const auto& [name, value] : options.headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  return request;
}

int parse_status(const std::string& head) {
  // "HTTP/1.1 101 Switching Protocols"
  if (head.rfind("HTTP/", 0) != 0) return 0;
  auto space = head.find(' ');
  if (space == std::string::npos || space + 4 > head.size()) return 0;
  int status = 0;
  for (std::size_t i = space + 1; i < space + 4; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    status = status * 10 + (head[i] - '0');
  }
  return status;
}

void async_raw_upgrade(beast::tcp_stream& stream, const Options& options, std::string& buffer,
                       std::function<void(boost::system::error_code, int)> done) {
  auto request = std::make_shared<std::string>(upgrade_request(options));
  stream.expires_after(to_duration(options.handshake_timeout_s));
  asio::async_write(stream, asio::buffer(*request),
                    [&stream, &buffer, request, done = std::move(done)](
                        boost::system::error_code ec, std::size_t) {
                      if (ec) {
                        stream.expires_never();
                        return done(ec, 0);
                      }
                      asio::async_read_until(stream, asio::dynamic_buffer(buffer), "\r\n\r\n",
                                             [&stream, &buffer, done](boost::system::error_code ec,
                                                                      std::size_t head_size) {
                                               stream.expires_never();
                                               if (ec) return done(ec, 0);
                                               int status = parse_status(buffer);
                                               buffer.erase(0, head_size);
                                               done(ec, status);
                                             });
                    });
}

TcpState probe_tcp_state(int fd) {
  tcp_info info{};
  socklen_t size = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return TcpState::reset;
  switch (info.tcpi_state) {
    case TCP_ESTABLISHED:
    case TCP_SYN_SENT:
    case TCP_SYN_RECV:
      return TcpState::open;
    case TCP_CLOSE:
      // A socket we have not closed ourselves only gets here through an RST.
      return TcpState::reset;
    default:  // CLOSE_WAIT and the other states after a FIN
      return TcpState::peer_closed;
  }
}

const char* to_string(TcpState state) {
  switch (state) {
    case TcpState::open:
      return "open";
    case TcpState::peer_closed:
      return "fin";
    case TcpState::reset:
      return "reset";
  }
  return "?";
}

void abortive_close(tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(tcp::socket::linger(true, 0), ignored);
  socket.close(ignored);
}

void FrameScanner::feed(const char* data, std::size_t size) {
  bytes += size;
  std::size_t at = 0;
  while (at < size) {
    if (!in_payload_) {
      header_.push_back(data[at++]);
      if (header_.size() == 2) {
        auto second = static_cast<unsigned char>(header_[1]);
        masked_ = (second & 0x80) != 0;
        int length7 = second & 0x7f;
        header_needed_ = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (masked_ ? 4 : 0);
      }
      if (header_.size() < 2 || header_.size() < header_needed_) continue;
      auto first = static_cast<unsigned char>(header_[0]);
      opcode_ = first & 0x0f;
      int length7 = static_cast<unsigned char>(header_[1]) & 0x7f;
      std::size_t offset = 2;
      if (length7 == 126) {
        payload_left_ = (std::uint64_t{static_cast<unsigned char>(header_[2])} << 8) |
                        static_cast<unsigned char>(header_[3]);
        offset = 4;
      } else if (length7 == 127) {
        payload_left_ = 0;
        for (int i = 0; i < 8; ++i) {
          payload_left_ = (payload_left_ << 8) | static_cast<unsigned char>(header_[2 + i]);
        }
        offset = 10;
      } else {
        payload_left_ = static_cast<std::uint64_t>(length7);
      }
      if (masked_) {
        for (int i = 0; i < 4; ++i) mask_[i] = static_cast<unsigned char>(header_[offset + i]);
      }
      header_.clear();
      header_needed_ = 2;
      control_payload_.clear();
      in_payload_ = true;
      if (payload_left_ == 0) finish_frame();
      continue;
    }
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payload_left_, size - at));
    if (opcode_ >= 8 && control_payload_.size() < 125) control_payload_.append(data + at, take);
    at += take;
    payload_left_ -= take;
    if (payload_left_ == 0) finish_frame();
  }
}

void FrameScanner::finish_frame() {
  in_payload_ = false;
  switch (opcode_) {
    case 0x1:
    case 0x2:
      ++data_frames;
      break;
    case 0x8:
      if (control_payload_.size() >= 2) {
        auto byte = [&](int i) {
          return static_cast<unsigned char>(control_payload_[i]) ^ (masked_ ? mask_[i] : 0);
        };
        close_code = (byte(0) << 8) | byte(1);
      } else {
        close_code = 1005;  // a close frame without a status code
      }
      break;
    case 0x9:
      ++pings;
      break;
    case 0xa:
      ++pongs;
      break;
    default:
      break;
  }
}

DrainResult drain_socket(int fd, FrameScanner& scanner, int idle_wait_ms, double max_seconds,
                         std::uint64_t max_bytes) {
  auto give_up_at = Clock::now() + to_duration(max_seconds);
  char chunk[65536];
  std::uint64_t drained = 0;
  while (Clock::now() < give_up_at && drained < max_bytes) {
    auto received = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (received > 0) {
      drained += static_cast<std::uint64_t>(received);
      scanner.feed(chunk, static_cast<std::size_t>(received));
      continue;
    }
    if (received == 0) return {TcpState::peer_closed, false};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return {TcpState::reset, false};
    // Only a stream that was flowing is worth waiting for: the server may still hold
    // data (and its close frame) that our full receive window kept back.
    if (idle_wait_ms <= 0 || drained == 0) return {probe_tcp_state(fd), false};
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, idle_wait_ms) == 0) return {probe_tcp_state(fd), false};
  }
  return {probe_tcp_state(fd), true};
}

namespace {

// JSON-like text of exactly `size` bytes: records with repeated field names and
// numbers that depend on (stream, sequence), so every message differs and compresses as
// an API's payload does.
void fill_json_payload(std::string& out, std::uint64_t stream_id, std::uint64_t sequence,
                       std::size_t size) {
  out.clear();
  out += "{\"stream\":" + std::to_string(stream_id) + ",\"seq\":" + std::to_string(sequence) +
         ",\"items\":[";
  for (std::uint64_t i = 0; out.size() < size; ++i) {
    const std::uint64_t n = (sequence * 7919 + i * 104729 + stream_id) % 100000;
    out += "{\"id\":" + std::to_string(i) + ",\"name\":\"item-" + std::to_string(n % 977) +
           "\",\"price\":" + std::to_string(n / 100) + "." + std::to_string(n % 100) +
           ",\"in_stock\":" + (n % 3 ? "true" : "false") + "},";
  }
  out.resize(size);
}

}  // namespace

void fill_payload(std::string& out, std::uint64_t stream_id, std::uint64_t sequence,
                  std::size_t size, bool binary, bool json) {
  if (json) return fill_json_payload(out, stream_id, sequence, size);
  out.resize(size);
  // splitmix64 over (stream, sequence): cheap, and every message differs, so an echo
  // that comes back out of order or corrupted is caught.
  std::uint64_t state = stream_id * 0x9E3779B97F4A7C15ull ^ (sequence + 0x632BE59BD9B4E019ull);
  std::uint64_t word = 0;
  for (std::size_t i = 0; i < size; ++i) {
    if (i % 8 == 0) {
      state += 0x9E3779B97F4A7C15ull;
      word = state;
      word = (word ^ (word >> 30)) * 0xBF58476D1CE4E5B9ull;
      word = (word ^ (word >> 27)) * 0x94D049BB133111EBull;
      word ^= word >> 31;
    }
    auto byte = static_cast<unsigned char>(word >> ((i % 8) * 8));
    // Text messages stay printable ASCII so that they are valid UTF-8.
    out[i] = binary ? static_cast<char>(byte) : static_cast<char>('a' + byte % 26);
  }
}

void append_masked_frame(std::string& out, const std::string& uncompressed, bool binary,
                         std::uint64_t salt, bool compress) {
  // Window 15 and memLevel 8, zlib's defaults (the server's window is its own to cap).
  const std::string compressed = compress ? wsvisor::deflate_message(uncompressed, 15, 8) : "";
  const std::string& payload = compress ? compressed : uncompressed;
  const std::size_t size = payload.size();
  const wsvisor::frame_header header(!binary, size, /*masked=*/true, compress);
  out.append(header.data(), header.size);
  std::uint64_t mixed = (salt + 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  char key[4];
  for (int i = 0; i < 4; ++i) key[i] = static_cast<char>(mixed >> (8 * (i + 2)));
  out.append(key, 4);
  const std::size_t start = out.size();
  out.append(payload);
  for (std::size_t i = 0; i < size; ++i) out[start + i] ^= key[i % 4];
}

}  // namespace wsload
