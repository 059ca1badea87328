// http_upstream against real loopback servers written here: responses and statuses,
// keep-alive reuse and the idle pool's bound, the one transparent retry of a stale idle
// connection, connect errors, the one deadline, the size bound (memory stays bounded:
// the client stops reading), broken HTTP, cancel, bad URLs, HEAD and 1xx, IPv6, https.
//
// The servers are blocking, one thread per accepted connection, each running the test's
// script; the client's io_context runs on the test's thread (two threads in the
// concurrency case), driven until each completion with a bounded run_one_for loop.
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "run_io.hpp"
#include "wsvisor/http_upstream.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using wsvisor::upstream_attempt;
using wsvisor::upstream_reply;
using outcome = upstream_reply::outcome;
using request = http::request<http::string_body>;

namespace {

// One accepted connection, as a server script sees it (blocking calls).
class server_side {
 public:
  server_side(tcp::socket&& socket, int index) : socket(std::move(socket)), index(index) {}

  // The next request; nullopt once the client closed (or the server stops).
  template <class Stream>
  std::optional<request> read(Stream& stream) {
    request got;
    beast::error_code ec;
    http::read(stream, buffer, got, ec);
    if (ec) return std::nullopt;
    return got;
  }
  std::optional<request> read() { return read(socket); }

  // Bytes as they are; how many the socket took before an error.
  std::size_t write(std::string_view bytes) {
    beast::error_code ec;
    return asio::write(socket, asio::buffer(bytes.data(), bytes.size()), ec);
  }

  template <class Stream>
  bool respond(Stream& stream, unsigned status, std::string body,
               std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::response<http::string_body> response{static_cast<http::status>(status), 11};
    for (const auto& [name, value] : headers) response.set(name, value);
    response.body() = std::move(body);
    response.prepare_payload();
    beast::error_code ec;
    http::write(stream, response, ec);
    return !ec;
  }
  bool respond(unsigned status, std::string body,
               std::vector<std::pair<std::string, std::string>> headers = {}) {
    return respond(socket, status, std::move(body), std::move(headers));
  }

  // Waits (bounded) until the peer's kernel acknowledged every byte written: they are in
  // its socket's receive queue.
  bool acknowledged() {
    for (int i = 0; i < 5000; ++i) {
      int unacknowledged = 0;
      if (::ioctl(socket.native_handle(), TIOCOUTQ, &unacknowledged) != 0) return false;
      if (unacknowledged == 0) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  // Blocks until the client closes (or the server stops), reading what comes.
  void wait_for_close() {
    char byte = 0;
    beast::error_code ec;
    while (!ec) socket.read_some(asio::buffer(&byte, 1), ec);
  }

  tcp::socket socket;
  const int index;  // accept order, from 0
  beast::flat_buffer buffer;
};

class test_server {
 public:
  using script = std::function<void(server_side&)>;

  explicit test_server(script run, const char* address = "127.0.0.1")
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address(address), 0)), script_(std::move(run)) {
    accepting_ = std::thread([this] { accept_loop(); });
  }

  ~test_server() {
    stopping_ = true;
    {  // wakes the blocking accept
      beast::error_code ignored;
      tcp::socket waker(io_);
      waker.connect(acceptor_.local_endpoint(), ignored);
      accepting_.join();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const int fd : open_) ::shutdown(fd, SHUT_RDWR);  // ends every script's I/O
    }
    for (auto& connection : connections_) connection.join();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port()) + path;
  }
  int accepts() const { return accepts_; }
  int finished() const { return finished_; }  // scripts that returned

 private:
  void accept_loop() {
    for (int index = 0;; ++index) {
      tcp::socket socket(io_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      ++accepts_;
      const int fd = socket.native_handle();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        open_.insert(fd);
      }
      connections_.emplace_back([this, socket = std::move(socket), index, fd]() mutable {
        server_side side(std::move(socket), index);
        script_(side);
        {
          std::lock_guard<std::mutex> lock(mutex_);
          open_.erase(fd);  // before the close: the number may be reused at once
        }
        beast::error_code ignored;
        side.socket.close(ignored);
        ++finished_;
      });
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  script script_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepts_{0};
  std::atomic<int> finished_{0};
  std::mutex mutex_;
  std::set<int> open_;
  std::thread accepting_;
  std::vector<std::thread> connections_;  // touched by accepting_ only, until it joined
};

// What a server saw, read by the test after the fact.
template <class T>
class shared_log {
 public:
  void add(T item) {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.push_back(std::move(item));
  }
  std::vector<T> items() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return items_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<T> items_;
};

struct client {
  explicit client(wsvisor::http_upstream_options options = {})
      : port(wsvisor::make_http_upstream(io, options)) {}

  // Runs the io_context until `done()` holds or `limit` passed; whether it holds.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    return wsvisor::testing::run_io_until(io, done, limit);
  }

  // Starts `attempt` and runs until its completion, which must come exactly once.
  upstream_reply call(upstream_attempt attempt) {
    std::optional<upstream_reply> got;
    int calls = 0;
    port->start(std::move(attempt), [&](upstream_reply reply) {
      ++calls;
      got = std::move(reply);
    });
    REQUIRE(run_until([&] { return got.has_value(); }));
    io.restart();
    io.poll();  // whatever else was ready: never a second call
    CHECK(calls == 1);
    return *got;
  }

  asio::io_context io;
  std::shared_ptr<wsvisor::upstream_port> port;
};

upstream_attempt attempt(std::string url, std::string method = "GET",
                         std::chrono::milliseconds timeout = 5s) {
  upstream_attempt a;
  a.method = std::move(method);
  a.url = std::move(url);
  a.timeout = timeout;
  return a;
}

// Serves every request of a connection with 200 and `body`, until the client closes.
test_server::script answer_all(std::string body) {
  return [body](server_side& side) {
    while (side.read())
      if (!side.respond(200, body)) return;
  };
}

std::string field(const request& r, http::field name) {
  return std::string(r[name]);
}

// Waits (bounded) for a server-side condition, e.g. that scripts noticed a close.
bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 5000 && !done(); ++i) std::this_thread::sleep_for(1ms);
  return done();
}

std::string lower_case(std::string text) {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

}  // namespace

TEST_CASE("a 200 comes back with its headers (lower case) and body, the request as given") {
  shared_log<request> seen;
  test_server server([&](server_side& side) {
    while (auto got = side.read()) {
      seen.add(*got);
      side.respond(200, R"({"ok":true})",
                   {{"Content-Type", "application/json"}, {"X-Reply", "Yes"}});
    }
  });
  client c;
  auto a = attempt(server.url("/hook?x=1#fragment"), "POST");
  a.body = "hello";
  // Host, Content-Length and Connection are the port's: the caller's are not sent.
  a.headers = {{"X-Test", "a b"}, {"Content-Length", "999"}, {"Host", "evil"}};
  bool called = false;
  std::optional<upstream_reply> reply;
  c.port->start(a, [&](upstream_reply r) {
    called = true;
    reply = std::move(r);
  });
  CHECK_FALSE(called);  // never inline
  REQUIRE(c.run_until([&] { return reply.has_value(); }));

  CHECK(reply->result == outcome::response);
  CHECK(reply->status == 200);
  CHECK(reply->body == R"({"ok":true})");
  CHECK(reply->header("content-type") == "application/json");
  CHECK(reply->header("x-reply") == "Yes");
  for (const auto& [name, value] : reply->headers) CHECK(name == lower_case(name));

  const auto requests = seen.items();
  REQUIRE(requests.size() == 1);
  const auto& got = requests[0];
  CHECK(got.method() == http::verb::post);
  CHECK(got.target() == "/hook?x=1");
  CHECK(field(got, http::field::host) == "127.0.0.1:" + std::to_string(server.port()));
  CHECK(field(got, http::field::content_length) == "5");
  CHECK(got.count(http::field::content_length) == 1);
  CHECK(got.count(http::field::host) == 1);
  CHECK(field(got, http::field::connection) == "keep-alive");
  CHECK(got["X-Test"] == "a b");
  CHECK(got.body() == "hello");
}

TEST_CASE("a 503 and a 404 are responses with their status and body") {
  test_server server([](server_side& side) {
    while (auto got = side.read()) {
      if (got->target() == "/busy")
        side.respond(503, "try later", {{"Retry-After", "2"}});
      else
        side.respond(404, "no such hook");
    }
  });
  client c;
  const auto busy = c.call(attempt(server.url("/busy")));
  CHECK(busy.result == outcome::response);
  CHECK(busy.status == 503);
  CHECK(busy.header("retry-after") == "2");
  CHECK(busy.body == "try later");
  const auto missing = c.call(attempt(server.url("/nothing")));
  CHECK(missing.result == outcome::response);
  CHECK(missing.status == 404);
  CHECK(missing.body == "no such hook");
}

TEST_CASE("URL forms: a name, no path, a query alone, an upper-case scheme and host") {
  shared_log<std::pair<std::string, std::string>> seen;  // target, Host
  test_server server([&](server_side& side) {
    while (auto got = side.read()) {
      seen.add({std::string(got->target()), field(*got, http::field::host)});
      side.respond(200, "ok");
    }
  });
  const std::string port = std::to_string(server.port());
  client c;
  for (const auto& url : {"http://localhost:" + port, "http://127.0.0.1:" + port + "?q=1",
                          "HTTP://LocalHost:" + port + "/Path"}) {
    INFO(url);
    CHECK(c.call(attempt(url)).result == outcome::response);
  }
  const auto items = seen.items();
  REQUIRE(items.size() == 3);
  CHECK(items[0] == std::pair<std::string, std::string>{"/", "localhost:" + port});
  CHECK(items[1] == std::pair<std::string, std::string>{"/?q=1", "127.0.0.1:" + port});
  CHECK(items[2] == std::pair<std::string, std::string>{"/Path", "localhost:" + port});
}

TEST_CASE("an IPv6 literal in brackets") {
  shared_log<std::string> hosts;
  test_server server(
      [&](server_side& side) {
        while (auto got = side.read()) {
          hosts.add(field(*got, http::field::host));
          side.respond(200, "six");
        }
      },
      "::1");
  client c;
  const std::string where = "[::1]:" + std::to_string(server.port());
  const auto reply = c.call(attempt("http://" + where + "/v6"));
  CHECK(reply.result == outcome::response);
  CHECK(reply.body == "six");
  CHECK(hosts.items() == std::vector<std::string>{where});
}

TEST_CASE("keep-alive: 10 sequential requests use one TCP connection") {
  test_server server(answer_all("same"));
  client c;
  for (int i = 0; i < 10; ++i) {
    const auto reply = c.call(attempt(server.url("/n" + std::to_string(i))));
    CHECK(reply.result == outcome::response);
    CHECK(reply.body == "same");
  }
  CHECK(server.accepts() == 1);
}

TEST_CASE("a response with Connection: close, or one ended by EOF, is not reused") {
  test_server server([](server_side& side) {
    auto got = side.read();
    if (!got) return;
    if (got->target() == "/close") {
      side.respond(200, "closing", {{"Connection", "close"}});
      side.wait_for_close();  // left open: only the header says not to send more
    } else {                  // no length: the body ends with the connection
      side.write("HTTP/1.1 200 OK\r\n\r\nuntil the end");
    }
  });
  client c;
  CHECK(c.call(attempt(server.url("/close"))).body == "closing");
  CHECK(c.call(attempt(server.url("/eof"))).body == "until the end");
  CHECK(c.call(attempt(server.url("/close"))).body == "closing");
  CHECK(server.accepts() == 3);
}

TEST_CASE("50 at once from another thread: all answered, then the idle pool keeps its bound") {
  shared_log<std::string> bodies_seen;
  test_server server([&](server_side& side) {
    while (auto got = side.read()) {
      bodies_seen.add(got->body());
      if (!side.respond(200, "echo " + got->body())) return;
    }
  });
  wsvisor::http_upstream_options options;
  options.max_idle_per_host = 8;
  client c(options);

  std::mutex mutex;
  std::vector<upstream_reply> replies;
  std::atomic<int> answered{0};
  auto start_batch = [&](int count, int first) {
    // start() from a thread that is not the io_context's.
    std::thread starter([&] {
      for (int i = first; i < first + count; ++i) {
        auto a = attempt(server.url("/concurrent"), "POST");
        a.body = std::to_string(i);
        c.port->start(std::move(a), [&](upstream_reply reply) {
          std::lock_guard<std::mutex> lock(mutex);
          replies.push_back(std::move(reply));
          ++answered;
        });
      }
    });
    starter.join();
  };
  // Every attempt is posted before the io_context runs: none finds an idle connection.
  start_batch(50, 0);
  {
    // The client on two io threads (its strand keeps it safe).
    auto work = asio::make_work_guard(c.io);
    std::thread io_a([&] { c.io.run(); }), io_b([&] { c.io.run(); });
    const bool all = eventually([&] { return answered == 50; });
    work.reset();
    c.io.stop();
    io_a.join();
    io_b.join();
    REQUIRE(all);
  }
  std::set<std::string> bodies;
  for (const auto& reply : replies) {
    CHECK(reply.result == outcome::response);
    bodies.insert(reply.body);
  }
  CHECK(bodies.size() == 50);  // each its own answer
  CHECK(bodies.count("echo 49") == 1);
  CHECK(server.accepts() == 50);
  // 8 kept idle, the other 42 closed by the client.
  CHECK(eventually([&] { return server.finished() == 42; }));
  CHECK(server.finished() == 42);

  // The 8 idle ones carry the next 8 at once.
  start_batch(8, 50);
  REQUIRE(c.run_until([&] { return answered == 58; }));
  CHECK(server.accepts() == 50);
  CHECK(bodies_seen.items().size() == 58);
}

TEST_CASE("a reused connection the server closed on our request is retried once, fresh") {
  shared_log<std::string> deliveries;  // X-Wsvisor-Delivery of every request read
  test_server server([&](server_side& side) {
    int served = 0;
    while (auto got = side.read()) {
      deliveries.add(std::string((*got)["X-Wsvisor-Delivery"]));
      // The first connection answers once, then closes on the next request unanswered
      // (its keep-alive timeout crossed it), as servers do.
      if (side.index == 0 && served == 1) return;
      side.respond(200, "connection " + std::to_string(side.index));
      ++served;
    }
  });
  client c;
  auto first = attempt(server.url());
  first.headers = {{"X-Wsvisor-Delivery", "7:1"}};
  CHECK(c.call(first).body == "connection 0");
  auto second = attempt(server.url());
  second.headers = {{"X-Wsvisor-Delivery", "7:2"}};
  const auto reply = c.call(second);
  CHECK(reply.result == outcome::response);
  CHECK(reply.body == "connection 1");
  CHECK(server.accepts() == 2);
  // The backend saw it twice, with the same delivery id: it drops the duplicate.
  CHECK(deliveries.items() == std::vector<std::string>{"7:1", "7:2", "7:2"});
}

TEST_CASE("the retry is once: a fresh connection that fails too is a connect_error") {
  test_server server([](server_side& side) {
    if (!side.read()) return;
    if (side.index != 0) return;  // a fresh connection: its request read and dropped
    side.respond(200, "first");
    side.read();  // the next one too
  });
  client c;
  CHECK(c.call(attempt(server.url())).body == "first");
  const auto reply = c.call(attempt(server.url()));
  CHECK(reply.result == outcome::connect_error);
  CHECK(server.accepts() == 2);  // the reused one and one fresh, no third
}

TEST_CASE("never retried: a fresh connection, or a reused one after a byte of the response") {
  SUBCASE("a fresh connection closed on the request") {
    test_server server([](server_side& side) { side.read(); });
    client c;
    const auto reply = c.call(attempt(server.url()));
    CHECK(reply.result == outcome::connect_error);
    CHECK(server.accepts() == 1);
  }
  SUBCASE("a reused connection whose response was cut short") {
    test_server server([](server_side& side) {
      if (!side.read()) return;
      side.respond(200, "whole");
      if (!side.read()) return;
      side.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    });
    client c;
    CHECK(c.call(attempt(server.url())).body == "whole");
    const auto reply = c.call(attempt(server.url()));
    CHECK(reply.result == outcome::malformed);
    CHECK(server.accepts() == 1);
  }
}

TEST_CASE("an idle connection the server wrote on and closed is dropped: a 408 is no answer") {
  std::atomic<bool> closed_idle{false};
  test_server server([&](server_side& side) {
    if (!side.read()) return;
    side.respond(200, "connection " + std::to_string(side.index));
    if (side.index == 0) {
      side.write("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      ::shutdown(side.socket.native_handle(), SHUT_WR);
      closed_idle = side.acknowledged();  // in the client's socket now, before it sends
      side.wait_for_close();
      return;
    }
    while (side.read()) side.respond(200, "connection " + std::to_string(side.index));
  });
  client c;
  CHECK(c.call(attempt(server.url())).body == "connection 0");
  REQUIRE(eventually([&] { return closed_idle.load(); }));
  const auto reply = c.call(attempt(server.url()));
  CHECK(reply.status == 200);
  CHECK(reply.body == "connection 1");
  CHECK(server.accepts() == 2);
}

TEST_CASE("connection refused, and a name that does not resolve, are connect_error") {
  unsigned short closed_port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed_port = probe.local_endpoint().port();
  }
  client c;
  const auto refused = c.call(attempt("http://127.0.0.1:" + std::to_string(closed_port) + "/"));
  CHECK(refused.result == outcome::connect_error);
  CHECK(refused.error.find("connect") != std::string::npos);
  // RFC 6761: .invalid never resolves.
  const auto unknown = c.call(attempt("http://no-such-host.invalid/"));
  CHECK(unknown.result == outcome::connect_error);
  CHECK(unknown.error.find("resolve") != std::string::npos);
}

TEST_CASE("one deadline: a server that never answers, or trickles, ends as timeout") {
  SUBCASE("never answers") {
    test_server server([](server_side& side) {
      side.read();
      side.wait_for_close();
    });
    client c;
    const auto began = std::chrono::steady_clock::now();
    const auto reply = c.call(attempt(server.url(), "GET", 200ms));
    const auto took = std::chrono::steady_clock::now() - began;
    CHECK(reply.result == outcome::timeout);
    CHECK(took >= 200ms);
    CHECK(took < 1500ms);
    // The connection was closed, not pooled.
    CHECK(eventually([&] { return server.finished() == 1; }));
  }
  SUBCASE("a byte every 20 ms: the deadline covers the whole response, not each read") {
    test_server server([](server_side& side) {
      side.read();
      if (side.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") == 0) return;
      for (int i = 0; i < 1000 && side.write("x") == 1; ++i) std::this_thread::sleep_for(20ms);
    });
    client c;
    const auto began = std::chrono::steady_clock::now();
    const auto reply = c.call(attempt(server.url(), "GET", 300ms));
    const auto took = std::chrono::steady_clock::now() - began;
    CHECK(reply.result == outcome::timeout);
    CHECK(took < 1500ms);
  }
}

TEST_CASE("too_large: 100 MB declared or to EOF, or a never-ending chunked body") {
  // The server writes until the client stops reading; what it managed to write shows the
  // client read no more than its limit plus what the kernel buffers hold.
  std::atomic<std::size_t> written{0};
  std::atomic<bool> server_done{false};
  const std::string block(64 * 1024, 'x');
  auto flood = [&](const std::string& head, bool chunked) {
    return [&, head, chunked](server_side& side) {
      side.read();
      std::size_t total = side.write(head);
      std::string chunk = block;
      if (chunked) chunk = "10000\r\n" + block + "\r\n";  // 64 KiB chunks, no last one
      while (total < (std::size_t{100} << 20)) {
        const std::size_t n = side.write(chunk);
        total += n;
        if (n < chunk.size()) break;
      }
      written = total;
      server_done = true;
    };
  };
  const std::size_t bound = 16u << 20;  // far below 100 MB: the client stopped reading
  struct variant {
    const char* name;
    std::string head;
    bool chunked;
  };
  for (const auto& v :
       {variant{"declared", "HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n", false},
        variant{"to EOF", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false},
        variant{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true}}) {
    INFO(v.name);
    written = 0;
    server_done = false;
    test_server server(flood(v.head, v.chunked));
    client c;
    const auto reply = c.call(attempt(server.url(), "GET", 20s));
    CHECK(reply.result == outcome::too_large);
    CHECK(reply.body.empty());
    REQUIRE(eventually([&] { return server_done.load(); }));
    CHECK(written < bound);
  }
}

TEST_CASE("max_response_bytes counts head and body as they came: at the limit fine, past it not") {
  // A response of exactly `total` bytes on the wire.
  auto exact = [](std::size_t total) {
    for (std::size_t body = total;; --body) {
      const std::string head =
          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n";
      if (head.size() + body == total) return head + std::string(body, 'b');
    }
  };
  std::string many_chunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 1001; ++i) many_chunks += "1\r\nc\r\n";
  many_chunks += "0\r\n\r\n";
  test_server server([&](server_side& side) {
    while (auto got = side.read()) {
      if (got->target() == "/at")
        side.write(exact(4096));
      else if (got->target() == "/past")
        side.write(exact(4097));
      else if (got->target() == "/head")  // a head alone past the limit
        side.write("HTTP/1.1 200 OK\r\nX-Big: " + std::string(5000, 'h') + "\r\n\r\n");
      else  // chunk framing counts too
        side.write(many_chunks);
    }
  });
  wsvisor::http_upstream_options options;
  options.max_response_bytes = 4096;
  client c(options);
  const auto at = c.call(attempt(server.url("/at")));
  CHECK(at.result == outcome::response);
  CHECK(at.body.size() > 4000);
  CHECK(c.call(attempt(server.url("/past"))).result == outcome::too_large);
  CHECK(c.call(attempt(server.url("/head"))).result == outcome::too_large);
  // 1001 bytes of body, over 6000 on the wire.
  CHECK(c.call(attempt(server.url("/chunks"))).result == outcome::too_large);
}

TEST_CASE("malformed: garbage instead of HTTP, a broken chunk (a good chunked body decodes)") {
  test_server server([](server_side& side) {
    while (auto got = side.read()) {
      // The connection stays open: the parser itself must say no, not an EOF.
      if (got->target() == "/garbage")
        side.write("SSH-2.0-OpenSSH_9.2\r\n\r\n");
      else if (got->target() == "/bad-chunk")
        side.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
      else if (got->target() == "/bad-length")
        side.write("HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc");
      else
        side.write(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
            "chunked\r\n\r\n4\r\nwiki\r\n6\r\npedia!\r\n0\r\n\r\n");
    }
  });
  client c;
  for (const char* path : {"/garbage", "/bad-chunk", "/bad-length"}) {
    INFO(path);
    const auto reply = c.call(attempt(server.url(path), "GET", 5s));
    CHECK(reply.result == outcome::malformed);
    CHECK(reply.body.empty());
    CHECK_FALSE(reply.error.empty());
  }
  const auto good = c.call(attempt(server.url("/good")));
  CHECK(good.result == outcome::response);
  CHECK(good.body == "wikipedia!");
}

TEST_CASE("HEAD's answer has no body, and a 1xx before the answer is passed over") {
  test_server server([](server_side& side) {
    while (auto got = side.read()) {
      if (got->method() == http::verb::head)
        side.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
      else
        side.write(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal");
    }
  });
  client c;
  const auto head = c.call(attempt(server.url(), "HEAD", 2s));
  CHECK(head.result == outcome::response);
  CHECK(head.status == 200);
  CHECK(head.header("content-length") == "5");
  CHECK(head.body.empty());
  const auto after = c.call(attempt(server.url(), "GET", 2s));
  CHECK(after.status == 200);
  CHECK(after.body == "final");
  CHECK(server.accepts() == 1);  // the HEAD's connection carried on
}

TEST_CASE("cancel: a running attempt ends cancelled, once, and its socket is closed") {
  std::atomic<int> requests{0};
  test_server server([&](server_side& side) {
    if (side.read()) ++requests;
    side.wait_for_close();
  });
  client c;
  int calls = 0;
  std::optional<upstream_reply> reply;
  const uint64_t id = c.port->start(attempt(server.url()), [&](upstream_reply r) {
    ++calls;
    reply = std::move(r);
  });
  REQUIRE(c.run_until([&] { return requests == 1; }));
  CHECK_FALSE(reply.has_value());
  c.port->cancel(id);
  REQUIRE(c.run_until([&] { return reply.has_value(); }));
  CHECK(reply->result == outcome::cancelled);
  CHECK(eventually([&] { return server.finished() == 1; }));  // the server saw it close
  // Again, and an id never given: nothing.
  c.port->cancel(id);
  c.port->cancel(id + 1000);
  c.run_until([] { return false; }, 50ms);
  CHECK(calls == 1);

  // Cancelled before it even ran: still one call, cancelled.
  int early_calls = 0;
  std::optional<upstream_reply> early;
  const uint64_t early_id = c.port->start(attempt(server.url()), [&](upstream_reply r) {
    ++early_calls;
    early = std::move(r);
  });
  c.port->cancel(early_id);
  REQUIRE(c.run_until([&] { return early.has_value(); }));
  c.run_until([] { return false; }, 50ms);
  CHECK(early->result == outcome::cancelled);
  CHECK(early_calls == 1);
}

TEST_CASE("a URL that does not parse, or a header that would break the request: connect_error") {
  test_server server(answer_all("never"));
  const std::string port = std::to_string(server.port());
  client c;
  for (const std::string& url : std::vector<std::string>{
           "", "127.0.0.1:" + port + "/", "ftp://127.0.0.1:" + port + "/", "http://", "http:///x",
           "http://user:pw@127.0.0.1:" + port + "/", "http://127.0.0.1:0/",
           "http://127.0.0.1:65536/", "http://127.0.0.1:8x/", "http://[::1/", "http://[not-hex]/",
           "http://a b/", "http://127.0.0.1:" + port + "/a b",
           "http://127.0.0.1:" + port + "/\r\nX-Evil: 1"}) {
    INFO(url);
    const auto reply = c.call(attempt(url));
    CHECK(reply.result == outcome::connect_error);
    CHECK(reply.error.rfind("invalid URL", 0) == 0);
  }
  auto bad_method = attempt(server.url());
  bad_method.method = "GE T";
  auto bad_name = attempt(server.url());
  bad_name.headers = {{"Bad Name", "x"}};
  auto injected = attempt(server.url());
  injected.headers = {{"X-Value", "a\r\nX-Injected: 1"}};
  for (const auto& a : {bad_method, bad_name, injected}) {
    const auto reply = c.call(a);
    CHECK(reply.result == outcome::connect_error);
    CHECK(reply.error.rfind("invalid", 0) == 0);
  }
  CHECK(server.accepts() == 0);  // none of them left the process
}

namespace {

// A self-signed certificate for `names` (subjectAltName syntax, e.g. "DNS:localhost").
class test_certificate {
 public:
  explicit test_certificate(const char* names) : key_(EVP_EC_gen("P-256")), cert_(X509_new()) {
    REQUIRE(key_ != nullptr);
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 24 * 3600);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("wsvisor test"), -1, -1, 0);
    X509_set_issuer_name(cert_, name);
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, cert_, cert_, nullptr, nullptr, 0);
    for (const auto& [nid, value] : {std::pair<int, const char*>{NID_subject_alt_name, names},
                                     {NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
      REQUIRE(extension != nullptr);
      X509_add_ext(cert_, extension, -1);
      X509_EXTENSION_free(extension);
    }
    REQUIRE(X509_sign(cert_, key_, EVP_sha256()) > 0);
  }
  ~test_certificate() {
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  test_certificate(const test_certificate&) = delete;
  test_certificate& operator=(const test_certificate&) = delete;

  std::string pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert_);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return text;
  }

  // A server context presenting this certificate.
  std::unique_ptr<ssl::context> server_context() const {
    auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
    REQUIRE(SSL_CTX_use_certificate(context->native_handle(), cert_) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(context->native_handle(), key_) == 1);
    return context;
  }

 private:
  static inline long serial_ = 0;
  EVP_PKEY* key_;
  X509* cert_;
};

// The "system CA store" of this process: OpenSSL reads SSL_CERT_FILE when the client
// loads its default paths (on its first https attempt), so it trusts `trusted` alone
// besides the real store.
const test_certificate& trusted_certificate() {
  static const test_certificate trusted("DNS:localhost");
  static const std::string path = [] {
    const auto file = std::filesystem::temp_directory_path() /
                      ("wsvisor_test_ca_" + std::to_string(::getpid()) + ".pem");
    std::ofstream(file) << trusted.pem();
    ::setenv("SSL_CERT_FILE", file.c_str(), 1);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove(std::getenv("SSL_CERT_FILE"), ignored);
    });
    return file.string();
  }();
  (void)path;
  return trusted;
}

// Answers every request over TLS with 200 and the name the client asked for (SNI).
test_server::script tls_answer(ssl::context& context, std::atomic<int>& handshakes) {
  return [&context, &handshakes](server_side& side) {
    ssl::stream<tcp::socket&> tls(side.socket, context);
    beast::error_code ec;
    tls.handshake(ssl::stream_base::server, ec);
    if (ec) return;
    ++handshakes;
    const char* sni = SSL_get_servername(tls.native_handle(), TLSEXT_NAMETYPE_host_name);
    while (side.read(tls)) side.respond(tls, 200, std::string("sni=") + (sni ? sni : "none"));
  };
}

}  // namespace

TEST_CASE("https: the peer verified against the CA store, with SNI, and kept alive") {
  const auto& trusted = trusted_certificate();
  auto context = trusted.server_context();
  std::atomic<int> handshakes{0};
  test_server server(tls_answer(*context, handshakes));
  client c;
  const std::string url = "https://localhost:" + std::to_string(server.port()) + "/secure";
  for (int i = 0; i < 2; ++i) {
    const auto reply = c.call(attempt(url));
    CHECK(reply.result == outcome::response);
    CHECK(reply.status == 200);
    CHECK(reply.body == "sni=localhost");
  }
  CHECK(server.accepts() == 1);
  CHECK(handshakes == 1);
}

TEST_CASE("https: a certificate for another name, or from an unknown issuer, is connect_error") {
  trusted_certificate();
  std::atomic<int> handshakes{0};
  SUBCASE("the trusted certificate names localhost, not 127.0.0.1") {
    auto context = trusted_certificate().server_context();
    test_server server(tls_answer(*context, handshakes));
    client c;
    const auto reply = c.call(attempt("https://127.0.0.1:" + std::to_string(server.port()) + "/"));
    CHECK(reply.result == outcome::connect_error);
    CHECK(reply.error.find("TLS handshake") != std::string::npos);
  }
  SUBCASE("a self-signed certificate nobody trusts") {
    const test_certificate stranger("DNS:localhost");
    auto context = stranger.server_context();
    test_server server(tls_answer(*context, handshakes));
    client c;
    const auto reply = c.call(attempt("https://localhost:" + std::to_string(server.port()) + "/"));
    CHECK(reply.result == outcome::connect_error);
    CHECK(reply.error.find("TLS handshake") != std::string::npos);
  }
  CHECK(handshakes == 0);
}

// Not run by default (a figure, not a check):
//   build/tests/test_net_http_upstream --no-skip -tc='bench*'
TEST_CASE("bench: sequential requests/s, keep-alive against a new connection each" *
          doctest::skip()) {
  test_server server(answer_all("pong"));
  for (const std::size_t idle : {std::size_t{32}, std::size_t{0}}) {
    wsvisor::http_upstream_options options;
    options.max_idle_per_host = idle;
    client c(options);
    const int requests = 2000;
    const auto began = std::chrono::steady_clock::now();
    for (int i = 0; i < requests; ++i) REQUIRE(c.call(attempt(server.url())).body == "pong");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    const std::string what = idle ? "keep-alive" : "a new connection each";
    MESSAGE(what << ": " << static_cast<long>(requests / seconds) << " requests/s");
  }
}
