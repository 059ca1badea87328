// /api/send load for wsvisor's gateway mode (CONTRACT 12.3), for bench/gateway.sh. One
// process, one thread (Boost.Beast, no server code):
//   - opens --connections WebSocket connections to ws://127.0.0.1:PORT/ws, connection i
//     as user "u<i % users>" (header X-User-Id, for auth.mode = header), and counts every
//     frame they receive;
//   - once all are open, --senders keep-alive HTTP/1.1 connections POST /api/send with
//     X-API-Key, each with one request outstanding, as fast as answers come back; the
//     body addresses, by --target:
//        user   {"user":"u<k>"}, k round-robin over the users (each send reaches every
//               connection of that user)
//        users  {"users":["u0",...,"u<users-1>"]} (each send reaches every connection)
//     plus "data": a --size byte text;
//   - after --warmup seconds, counts over --duration seconds: sends answered 200,
//     frames received by the clients, and its own CPU time (getrusage) to tell whether
//     this process (the load side) was the bottleneck.
// Prints one JSON object on stdout. Bounded: the whole run ends by itself.
//
//   gw_push --port P --api-key K [--connections 3] [--users 1] [--senders 4]
//           [--target user|users] [--size 64] [--warmup 1] [--duration 5]
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Opts {
  int port = 0;
  std::string key;
  int connections = 3;
  int users = 1;
  int senders = 4;
  std::string target = "user";
  int size = 64;
  double warmup = 1;
  double duration = 5;
};

struct Stats {
  long long frames = 0;
  long long sends_ok = 0;
  long long sends_failed = 0;
  long long delivered_sum = 0;  // sum of {"delivered":n} of the 200s
  long long ws_open = 0;
  long long ws_failed = 0;
  long long ws_closed = 0;
  bool sending = false;
};

Stats g;
Opts o;
tcp::endpoint g_ep;

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

class Receiver : public std::enable_shared_from_this<Receiver> {
 public:
  Receiver(net::io_context& ioc, std::string user) : ws_(ioc), user_(std::move(user)) {}
  void start() {
    beast::get_lowest_layer(ws_).async_connect(
        g_ep, [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->fail();
          beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
          self->ws_.set_option(websocket::stream_base::decorator(
              [u = self->user_](websocket::request_type& r) { r.set("X-User-Id", u); }));
          self->ws_.async_handshake("127.0.0.1", "/ws", [self](beast::error_code ec2) {
            if (ec2) return self->fail();
            ++g.ws_open;
            self->read();
          });
        });
  }
  void close() {
    closing_ = true;
    if (open_)
      ws_.async_close(websocket::close_code::normal,
                      [self = shared_from_this()](beast::error_code) {});
  }

 private:
  void fail() { ++g.ws_failed; }
  void read() {
    open_ = true;
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        if (self->open_ && !self->closing_) ++g.ws_closed;
        self->open_ = false;
        return;
      }
      ++g.frames;
      self->buf_.consume(self->buf_.size());
      self->read();
    });
  }
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
  std::string user_;
  bool open_ = false;
  bool closing_ = false;
};

class Sender : public std::enable_shared_from_this<Sender> {
 public:
  Sender(net::io_context& ioc, int index) : stream_(ioc), next_user_(index) {}
  void start() {
    stream_.async_connect(g_ep, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        ++g.sends_failed;
        return;
      }
      self->stream_.socket().set_option(tcp::no_delay(true));
      self->send();
    });
  }

 private:
  void send() {
    if (!g.sending) return;
    static const std::string data(static_cast<std::size_t>(o.size), 'x');
    std::string body;
    if (o.target == "users") {
      static std::string list;
      if (list.empty()) {
        for (int u = 0; u < o.users; ++u) list += (u ? ",\"u" : "\"u") + std::to_string(u) + "\"";
      }
      body = "{\"users\":[" + list + "],\"data\":\"" + data + "\"}";
    } else {
      body =
          "{\"user\":\"u" + std::to_string(next_user_ % o.users) + "\",\"data\":\"" + data + "\"}";
      next_user_ += o.senders;
    }
    req_ = {};
    req_.method(http::verb::post);
    req_.target("/api/send");
    req_.version(11);
    req_.set(http::field::host, "127.0.0.1");
    req_.set("X-API-Key", o.key);
    req_.set(http::field::content_type, "application/json");
    req_.body() = std::move(body);
    req_.prepare_payload();
    http::async_write(
        stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
          if (ec) {
            ++g.sends_failed;
            return;
          }
          self->res_ = {};
          http::async_read(self->stream_, self->buf_, self->res_,
                           [self](beast::error_code ec2, std::size_t) {
                             if (ec2) {
                               ++g.sends_failed;
                               return;
                             }
                             if (self->res_.result_int() == 200) {
                               ++g.sends_ok;
                               const std::string& b = self->res_.body();
                               auto p = b.find("\"delivered\":");
                               if (p != std::string::npos)
                                 g.delivered_sum += std::atoll(b.c_str() + p + 12);
                             } else {
                               ++g.sends_failed;
                               if (g.sends_failed < 5)
                                 std::fprintf(stderr, "gw_push: /api/send answered %d %s\n",
                                              self->res_.result_int(), self->res_.body().c_str());
                             }
                             self->send();
                           });
        });
  }
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  long long next_user_;
};

void usage() {
  std::fprintf(stderr,
               "usage: gw_push --port P --api-key K [--connections N] [--users U] [--senders S]\n"
               "               [--target user|users] [--size B] [--warmup S] [--duration S]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    std::string v = argv[++i];
    if (a == "--port")
      o.port = std::atoi(v.c_str());
    else if (a == "--api-key")
      o.key = v;
    else if (a == "--connections")
      o.connections = std::atoi(v.c_str());
    else if (a == "--users")
      o.users = std::max(1, std::atoi(v.c_str()));
    else if (a == "--senders")
      o.senders = std::max(1, std::atoi(v.c_str()));
    else if (a == "--target")
      o.target = v;
    else if (a == "--size")
      o.size = std::atoi(v.c_str());
    else if (a == "--warmup")
      o.warmup = std::atof(v.c_str());
    else if (a == "--duration")
      o.duration = std::atof(v.c_str());
    else
      usage();
  }
  if (o.port <= 0 || o.key.empty() || (o.target != "user" && o.target != "users")) usage();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  net::io_context ioc(1);
  g_ep = tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(o.port));
  std::vector<std::shared_ptr<Receiver>> receivers;
  for (int i = 0; i < o.connections; ++i) {
    receivers.push_back(std::make_shared<Receiver>(ioc, "u" + std::to_string(i % o.users)));
    receivers.back()->start();
  }
  std::vector<std::shared_ptr<Sender>> senders;

  // Phases, driven by one timer: ramp (all receivers up, at most 20 s), warm-up, window,
  // drain (1 s for frames still on their way), close.
  net::steady_timer timer(ioc);
  const auto started = Clock::now();
  Clock::time_point window_start, window_end;
  long long f0 = 0, s0 = 0, f1 = 0, s1 = 0;
  double c0 = 0, c1 = 0;
  int phase = 0;
  std::function<void()> tick = [&] {
    const auto now = Clock::now();
    if (phase == 0) {  // ramp
      if (g.ws_open + g.ws_failed >= o.connections || now - started > std::chrono::seconds(20)) {
        std::fprintf(stderr, "gw_push: %lld open, %lld failed; sending\n", g.ws_open, g.ws_failed);
        phase = 1;
        g.sending = true;
        for (int i = 0; i < o.senders; ++i) {
          senders.push_back(std::make_shared<Sender>(ioc, i));
          senders.back()->start();
        }
        timer.expires_after(
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup)));
      } else {
        timer.expires_after(std::chrono::milliseconds(20));
      }
    } else if (phase == 1) {  // window opens
      phase = 2;
      window_start = now;
      f0 = g.frames, s0 = g.sends_ok, c0 = cpu_seconds();
      std::fprintf(stderr, "gw_push: window open\n");
      timer.expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration)));
    } else if (phase == 2) {  // window closes; stop sending
      phase = 3;
      window_end = now;
      f1 = g.frames, s1 = g.sends_ok, c1 = cpu_seconds();
      std::fprintf(stderr, "gw_push: window closed\n");
      g.sending = false;
      timer.expires_after(std::chrono::seconds(1));
    } else if (phase == 3) {
      phase = 4;
      for (auto& r : receivers) r->close();
      timer.expires_after(std::chrono::seconds(1));
    } else {
      ioc.stop();
      return;
    }
    timer.async_wait([&](beast::error_code ec) {
      if (!ec) tick();
    });
  };
  tick();
  ioc.run();

  const double secs = std::chrono::duration<double>(window_end - window_start).count();
  std::printf(
      "{\"connections\":%d,\"users\":%d,\"senders\":%d,\"target\":\"%s\",\"size\":%d,"
      "\"ws_open\":%lld,\"ws_failed\":%lld,\"ws_closed_by_server\":%lld,\"window_s\":%.3f,"
      "\"sends_per_second\":%.1f,\"deliveries_per_second\":%.1f,\"client_cpu_share\":%.3f,"
      "\"sends_ok\":%lld,\"sends_failed\":%lld,\"delivered_sum\":%lld,\"frames_received\":%lld}\n",
      o.connections, o.users, o.senders, o.target.c_str(), o.size, g.ws_open, g.ws_failed,
      g.ws_closed, secs, secs > 0 ? (s1 - s0) / secs : 0.0, secs > 0 ? (f1 - f0) / secs : 0.0,
      secs > 0 ? (c1 - c0) / secs : 0.0, g.sends_ok, g.sends_failed, g.delivered_sum, g.frames);
  return g.ws_open == o.connections ? 0 : 1;
}
