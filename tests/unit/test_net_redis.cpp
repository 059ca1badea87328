// The Redis client against real redis-servers (Debian's /usr/bin/redis-server, one per
// test case on a free loopback port, killed and reaped at its end): replies of every
// kind, 1,000 pipelined commands answered in order, binary values, AUTH and SELECT, a
// subscriber, connect failures and the connect deadline, the server killed with commands
// pending, close(), a dropped connection, the reply bound.
//
// The client's io_context runs on the test's thread, driven until each expected event
// with a bounded run_one_for loop, so every callback runs on the test's thread too.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "run_io.hpp"
#include "wsvisor/redis_client.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using wsvisor::redis_connection;
using wsvisor::redis_endpoint;
using wsvisor::redis_value;
using kind = wsvisor::redis_port::connection_kind;

namespace {

// A socket bound to a loopback port of the kernel's choosing, listening if asked. -1 on
// failure.
int loopback_socket(bool listening, int backlog = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      (listening && ::listen(fd, backlog) != 0)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// A port nobody listens on, as far as anyone can tell: the kernel's pick, given back.
// Someone may take it before it is used; redis_server retries when that happens.
uint16_t unused_port() {
  const int fd = loopback_socket(false);
  REQUIRE(fd >= 0);
  const uint16_t port = port_of(fd);
  ::close(fd);
  return port;
}

// A blocking connect to 127.0.0.1:port: the socket, or -1.
int connect_to_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool accepts_connections(uint16_t port) {
  const int fd = connect_to_loopback(port);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A loopback listener that never accepts. A full one has its accept queue (backlog 0:
// room for one) filled at once, so Linux drops every further SYN: a connect to it neither
// completes nor fails. (An unroutable address such as 10.255.255.1 does that on most
// machines, but not where outbound connections are intercepted: a sandbox's proxy may
// accept them all.) Otherwise the kernel completes connects, and nobody reads.
class silent_listener {
 public:
  explicit silent_listener(bool full) : listener_(loopback_socket(true, full ? 0 : 4)) {
    REQUIRE(listener_ >= 0);
    if (full) {
      filler_ = connect_to_loopback(port());
      REQUIRE(filler_ >= 0);
    }
  }
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;
  ~silent_listener() {
    if (filler_ >= 0) ::close(filler_);
    ::close(listener_);
  }
  uint16_t port() const { return port_of(listener_); }

 private:
  int listener_;
  int filler_ = -1;
};

// One redis-server of the test's own: no persistence, its files (log, nothing else) in a
// temporary directory, killed (SIGKILL) and reaped at the end; and killed with the test
// binary should that die first (PR_SET_PDEATHSIG).
class redis_server {
 public:
  explicit redis_server(std::vector<std::string> extra_arguments = {}) {
    std::string directory = (std::filesystem::temp_directory_path() / "wsvisor-redis-XXXXXX");
    REQUIRE(::mkdtemp(directory.data()) != nullptr);
    directory_ = directory;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = unused_port();
      if (start(extra_arguments)) return;
      kill();  // most likely the port was taken meanwhile: another one
    }
    const auto log = directory_ / "redis.log";
    FAIL_CHECK("redis-server did not start; its log: " << log.string());
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
    FAIL("no redis-server");
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  ~redis_server() {
    kill();
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  uint16_t port() const { return port_; }

  redis_endpoint endpoint() const {
    redis_endpoint where;
    where.host = "127.0.0.1";
    where.port = port_;
    return where;
  }

  // SIGKILL, as a crash would: no goodbye on its connections.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  // Spawns it and waits (bounded) until it accepts connections.
  bool start(const std::vector<std::string>& extra_arguments) {
    std::vector<std::string> arguments{"/usr/bin/redis-server",
                                       "--port",
                                       std::to_string(port_),
                                       "--bind",
                                       "127.0.0.1",
                                       "--save",
                                       "",
                                       "--appendonly",
                                       "no",
                                       "--daemonize",
                                       "no",
                                       "--dir",
                                       directory_.string(),
                                       "--logfile",
                                       (directory_ / "redis.log").string()};
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);

    const pid_t parent = ::getpid();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // The child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // the test died before the prctl
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // exited: it could not bind, say
        return false;
      }
      if (accepts_connections(port_)) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::filesystem::path directory_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Everything a connection's handlers were called with, in order.
struct recorded {
  std::optional<std::string> ready;  // on_ready's error ("" = up)
  std::vector<redis_value> pushes;
  int lost_calls = 0;
  std::string lost;
  std::vector<std::string> events;  // "ready", "push", "lost", "done" (from track())
};

// One command's completion, as it came.
struct answer {
  int calls = 0;
  bool no_reply = false;  // called with nullptr
  redis_value reply;
};

struct client {
  explicit client(wsvisor::redis_client_options options = {})
      : port(wsvisor::make_redis_client(io, options)) {}

  // Runs the io_context until `done()` holds or `limit` passed; whether it holds.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    return wsvisor::testing::run_io_until(io, done, limit);
  }

  // Runs the io_context for `duration`, whatever happens.
  void run_for(std::chrono::milliseconds duration) {
    run_until([] { return false; }, duration);
  }

  std::shared_ptr<redis_connection> connect(const redis_endpoint& where, kind connection_kind,
                                            const std::shared_ptr<recorded>& log) {
    wsvisor::redis_handlers handlers;
    handlers.on_ready = [log](const std::string& error) {
      CHECK_FALSE(log->ready.has_value());  // once
      log->ready = error;
      log->events.push_back("ready");
    };
    handlers.on_push = [log](redis_value pushed) {
      log->pushes.push_back(std::move(pushed));
      log->events.push_back("push");
    };
    handlers.on_lost = [log](const std::string& why) {
      ++log->lost_calls;
      log->lost = why;
      log->events.push_back("lost");
    };
    return port->connect(where, connection_kind, std::move(handlers));
  }

  // Connects and waits for on_ready, which must say the connection is up.
  std::shared_ptr<redis_connection> open(const redis_endpoint& where,
                                         kind connection_kind = kind::command,
                                         std::shared_ptr<recorded> log = nullptr) {
    if (!log) log = std::make_shared<recorded>();
    auto connection = connect(where, connection_kind, log);
    REQUIRE(run_until([&] { return log->ready.has_value(); }));
    REQUIRE(*log->ready == "");
    return connection;
  }

  // Sends a command; its completion lands in the answer returned.
  std::shared_ptr<answer> track(redis_connection& connection, std::vector<std::string> argv,
                                std::shared_ptr<recorded> log = nullptr) {
    auto got = std::make_shared<answer>();
    connection.send(std::move(argv), [got, log](const redis_value* reply) {
      ++got->calls;
      got->no_reply = reply == nullptr;
      if (reply) got->reply = *reply;
      if (log) log->events.push_back("done");
    });
    return got;
  }

  // Sends a command and runs until its reply, which must come exactly once.
  redis_value call(redis_connection& connection, std::vector<std::string> argv) {
    auto got = track(connection, std::move(argv));
    CHECK(got->calls == 0);  // never inline
    REQUIRE(run_until([&] { return got->calls > 0; }));
    io.restart();
    io.poll();  // whatever else was ready: never a second call
    CHECK(got->calls == 1);
    REQUIRE_FALSE(got->no_reply);
    return got->reply;
  }

  asio::io_context io;
  std::shared_ptr<wsvisor::redis_port> port;
};

// A reply in one line: +status, -error, :integer, "string", nil, [elements].
std::string describe(const redis_value& value) {
  switch (value.kind) {
    case redis_value::type::nil:
      return "nil";
    case redis_value::type::integer:
      return ":" + std::to_string(value.integer);
    case redis_value::type::string:
      return "\"" + value.text + "\"";
    case redis_value::type::status:
      return "+" + value.text;
    case redis_value::type::error:
      return "-" + value.text;
    case redis_value::type::array: {
      std::string out = "[";
      for (const auto& element : value.elements) {
        if (out.size() > 1) out += ", ";
        out += describe(element);
      }
      return out + "]";
    }
  }
  return "?";
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool all_answered(const std::vector<std::shared_ptr<answer>>& commands) {
  return std::all_of(commands.begin(), commands.end(),
                     [](const auto& command) { return command->calls > 0; });
}

// INFO's connected_clients, as a connection `observer` asks.
int connected_clients(client& c, redis_connection& observer) {
  const auto info = c.call(observer, {"INFO", "clients"}).text;
  const auto at = info.find("connected_clients:");
  REQUIRE(at != std::string::npos);
  return std::atoi(info.c_str() + at + std::string("connected_clients:").size());
}

}  // namespace

TEST_CASE("replies of every kind: status, string, nil, integer and error, as Redis sent them") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.connect(server.endpoint(), kind::command, log);
  CHECK_FALSE(log->ready.has_value());  // never inline
  // Sent before on_ready: it waits, then goes.
  auto early = c.track(*connection, {"SET", "greeting", "hello"});
  REQUIRE(c.run_until([&] { return early->calls > 0; }));
  CHECK(*log->ready == "");
  CHECK(describe(early->reply) == "+OK");

  CHECK(describe(c.call(*connection, {"GET", "greeting"})) == "\"hello\"");
  CHECK(describe(c.call(*connection, {"GET", "no-such-key"})) == "nil");
  CHECK(describe(c.call(*connection, {"INCR", "counter"})) == ":1");
  CHECK(describe(c.call(*connection, {"INCRBY", "counter", "-5"})) == ":-4");
  CHECK(describe(c.call(*connection, {"PING"})) == "+PONG");
  const auto error = c.call(*connection, {"INCR", "greeting"});
  CHECK(error.is_error());
  CHECK(describe(error) == "-ERR value is not an integer or out of range");
  CHECK(c.call(*connection, {"NO-SUCH-COMMAND"}).is_error());
  // An error reply is an answer: the connection goes on.
  CHECK(describe(c.call(*connection, {"GET", "greeting"})) == "\"hello\"");
  CHECK(log->lost_calls == 0);
}

TEST_CASE("array replies: a Lua script's nested array, an empty one, a nil one, nil inside") {
  redis_server server;
  client c;
  auto connection = c.open(server.endpoint());
  CHECK(describe(c.call(*connection, {"EVAL", "return {1, 'two', {3, {'four'}}, {}}", "0"})) ==
        "[:1, \"two\", [:3, [\"four\"]], []]");
  CHECK(describe(c.call(*connection, {"LRANGE", "no-such-list", "0", "-1"})) == "[]");
  // A timed-out BLPOP is RESP2's nil array ("*-1"): hiredis makes it a plain nil.
  CHECK(describe(c.call(*connection, {"BLPOP", "no-such-list", "0.01"})) == "nil");
  c.call(*connection, {"SET", "k", "v"});
  CHECK(describe(c.call(*connection, {"MGET", "k", "no-such-key"})) == "[\"v\", nil]");
  // Eight arrays deep is as deep as hiredis 0.14 reads.
  CHECK(describe(c.call(*connection, {"EVAL", "return {{{{{{{{1}}}}}}}}", "0"})) ==
        "[[[[[[[[:1]]]]]]]]");
}

TEST_CASE("an array nested deeper than hiredis 0.14 reads: a protocol error, the connection lost") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  auto deep = c.track(*connection, {"EVAL", "return {{{{{{{{{1}}}}}}}}}", "0"}, log);
  REQUIRE(c.run_until([&] { return log->lost_calls > 0; }));
  CHECK(deep->calls == 1);
  CHECK(deep->no_reply);
  CHECK(log->lost == "protocol error: No support for nested multi bulk replies with depth > 7");
  CHECK(log->events == std::vector<std::string>{"ready", "done", "lost"});
}

TEST_CASE("1,000 pipelined INCRs: each answered, in order, 1 to 1000") {
  redis_server server;
  client c;
  auto connection = c.open(server.endpoint());
  std::vector<std::pair<int, int64_t>> answers;  // (which command, its reply)
  for (int i = 0; i < 1000; ++i)
    connection->send({"INCR", "pipelined"}, [&answers, i](const redis_value* reply) {
      REQUIRE(reply != nullptr);
      REQUIRE(reply->kind == redis_value::type::integer);
      answers.emplace_back(i, reply->integer);
    });
  CHECK(answers.empty());  // never inline
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(c.run_until([&] { return answers.size() == 1000; }));
  const auto took = std::chrono::steady_clock::now() - started;
  MESSAGE("1000 INCRs in " << std::chrono::duration_cast<std::chrono::microseconds>(took).count()
                           << " us");
  for (int i = 0; i < 1000; ++i) {
    CHECK(answers[static_cast<std::size_t>(i)].first == i);
    CHECK(answers[static_cast<std::size_t>(i)].second == i + 1);
  }
}

TEST_CASE("a 1 MiB value with NUL bytes, CR and LF round-trips byte for byte") {
  redis_server server;
  client c;
  auto connection = c.open(server.endpoint());
  std::string value(1 << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i)
    value[i] = static_cast<char>((i * 7 + i / 256) % 256);  // every byte, NUL and CRLF included
  const std::string key("binary\0key\r\n", 12);
  CHECK(describe(c.call(*connection, {"SET", key, value})) == "+OK");
  CHECK(describe(c.call(*connection, {"STRLEN", key})) == ":1048576");
  const auto got = c.call(*connection, {"GET", key});
  CHECK(got.kind == redis_value::type::string);
  CHECK(got.text.size() == value.size());
  CHECK(got.text == value);
}

TEST_CASE("AUTH: the right password works, a wrong one fails on_ready naming AUTH, none: NOAUTH") {
  redis_server server({"--requirepass", "s3cret"});
  client c;

  auto where = server.endpoint();
  where.password = "s3cret";
  {
    auto connection = c.open(where);
    CHECK(describe(c.call(*connection, {"PING"})) == "+PONG");
  }
  {
    auto as_default_user = where;  // Redis 6 ACL's form: AUTH default s3cret
    as_default_user.user = "default";
    auto connection = c.open(as_default_user);
    CHECK(describe(c.call(*connection, {"PING"})) == "+PONG");
  }
  {
    auto wrong = where;
    wrong.password = "guess";
    auto log = std::make_shared<recorded>();
    auto connection = c.connect(wrong, kind::command, log);
    auto waiting = c.track(*connection, {"PING"});
    REQUIRE(c.run_until([&] { return log->ready.has_value() && waiting->calls > 0; }));
    CHECK(starts_with(*log->ready, "AUTH: WRONGPASS"));
    CHECK(waiting->no_reply);  // sent before on_ready: never written, no reply
    c.run_for(50ms);
    CHECK(log->lost_calls == 0);  // after an on_ready error nothing else is called
  }
  {
    auto unknown_user = where;
    unknown_user.user = "nobody";
    auto log = std::make_shared<recorded>();
    auto connection = c.connect(unknown_user, kind::command, log);
    REQUIRE(c.run_until([&] { return log->ready.has_value(); }));
    CHECK(starts_with(*log->ready, "AUTH: WRONGPASS"));
  }
  {
    auto connection = c.open(server.endpoint());  // no password: up, but not let in
    const auto refused = c.call(*connection, {"GET", "k"});
    CHECK(refused.is_error());
    CHECK(starts_with(refused.text, "NOAUTH"));
  }
}

TEST_CASE("SELECT: database 3 from the endpoint, another connection on 3 sees it, one on 0 not") {
  redis_server server;
  client c;
  auto on_3 = server.endpoint();
  on_3.database = 3;
  auto writer = c.open(on_3);
  CHECK(contains(c.call(*writer, {"CLIENT", "INFO"}).text, " db=3 "));
  CHECK(describe(c.call(*writer, {"SET", "where", "three"})) == "+OK");
  auto reader = c.open(on_3);
  CHECK(describe(c.call(*reader, {"GET", "where"})) == "\"three\"");
  auto on_0 = c.open(server.endpoint());
  CHECK(contains(c.call(*on_0, {"CLIENT", "INFO"}).text, " db=0 "));
  CHECK(describe(c.call(*on_0, {"GET", "where"})) == "nil");

  auto out_of_range = server.endpoint();
  out_of_range.database = 99;  // Redis has 16 by default
  auto log = std::make_shared<recorded>();
  auto failed = c.connect(out_of_range, kind::command, log);
  REQUIRE(c.run_until([&] { return log->ready.has_value(); }));
  CHECK(*log->ready == "SELECT 99: ERR DB index is out of range");
}

TEST_CASE("AUTH and SELECT together: both before on_ready, in that order") {
  redis_server server({"--requirepass", "s3cret"});
  client c;
  auto where = server.endpoint();
  where.password = "s3cret";
  where.database = 5;
  auto connection = c.open(where);
  CHECK(contains(c.call(*connection, {"CLIENT", "INFO"}).text, " db=5 "));
}

TEST_CASE("subscriber: SUBSCRIBE's confirmation and each PUBLISH come to on_push") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto subscriber = c.open(server.endpoint(), kind::subscriber, log);
  subscriber->send({"SUBSCRIBE", "ch"}, {});  // no `done` on a subscriber
  REQUIRE(c.run_until([&] { return log->pushes.size() == 1; }));
  CHECK(describe(log->pushes[0]) == "[\"subscribe\", \"ch\", :1]");

  auto publisher = c.open(server.endpoint());
  const std::string payload("pay\0load\r\n", 10);
  CHECK(describe(c.call(*publisher, {"PUBLISH", "ch", payload})) == ":1");  // one subscriber
  REQUIRE(c.run_until([&] { return log->pushes.size() == 2; }));
  const auto& message = log->pushes[1];
  REQUIRE(message.kind == redis_value::type::array);
  REQUIRE(message.elements.size() == 3);
  CHECK(message.elements[0].text == "message");
  CHECK(message.elements[1].text == "ch");
  CHECK(message.elements[2].text == payload);

  // A `done` given anyway is ignored: the reply is a push.
  bool called = false;
  subscriber->send({"PING"}, [&](const redis_value*) { called = true; });
  REQUIRE(c.run_until([&] { return log->pushes.size() == 3; }));
  CHECK(describe(log->pushes[2]) == "[\"pong\", \"\"]");
  CHECK_FALSE(called);
  CHECK(log->lost_calls == 0);
}

TEST_CASE("SUBSCRIBE on a command connection: the reply nobody asked for ends it") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  // One reply per channel: the first answers the command, the second is nobody's.
  auto subscribed = c.track(*connection, {"SUBSCRIBE", "a", "b"});
  REQUIRE(c.run_until([&] { return log->lost_calls > 0; }));
  CHECK(describe(subscribed->reply) == "[\"subscribe\", \"a\", :1]");
  CHECK(starts_with(log->lost, "a reply no command was waiting for"));
}

TEST_CASE("a refused connection fails on_ready at once, and waiting commands get no reply") {
  client c;
  redis_endpoint nobody;
  nobody.port = unused_port();
  auto log = std::make_shared<recorded>();
  const auto started = std::chrono::steady_clock::now();
  auto connection = c.connect(nobody, kind::command, log);
  auto waiting = c.track(*connection, {"PING"});
  REQUIRE(c.run_until([&] { return log->ready.has_value() && waiting->calls > 0; }, 3s));
  CHECK(std::chrono::steady_clock::now() - started < 1s);
  CHECK(*log->ready == "connect: Connection refused");
  CHECK(waiting->no_reply);
  // After the failure: no reply, and not inline.
  auto late = c.track(*connection, {"PING"});
  CHECK(late->calls == 0);
  REQUIRE(c.run_until([&] { return late->calls > 0; }));
  CHECK(late->no_reply);
}

TEST_CASE("connect_timeout bounds a connect nobody answers, and an AUTH nobody answers") {
  client c;
  SUBCASE("connect") {
    silent_listener nowhere(true);
    redis_endpoint where;
    where.port = nowhere.port();
    where.connect_timeout = 200ms;
    auto log = std::make_shared<recorded>();
    const auto started = std::chrono::steady_clock::now();
    auto connection = c.connect(where, kind::command, log);
    REQUIRE(c.run_until([&] { return log->ready.has_value(); }, 3s));
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited >= 200ms);
    CHECK(waited < 1500ms);
    CHECK(*log->ready == "connect: timed out after 200 ms");
  }
  SUBCASE("AUTH") {
    silent_listener mute(false);
    redis_endpoint where;
    where.port = mute.port();
    where.password = "s3cret";
    where.connect_timeout = 200ms;
    auto log = std::make_shared<recorded>();
    const auto started = std::chrono::steady_clock::now();
    auto connection = c.connect(where, kind::command, log);
    REQUIRE(c.run_until([&] { return log->ready.has_value(); }, 3s));
    CHECK(std::chrono::steady_clock::now() - started < 1500ms);
    CHECK(*log->ready == "AUTH: timed out after 200 ms");
  }
}

TEST_CASE(
    "Redis killed (SIGKILL) with 10 commands pending: each gets no reply, then on_lost once") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  // The first blocks Redis's reading of this connection; the other nine wait behind it.
  std::vector<std::shared_ptr<answer>> pending;
  for (int i = 0; i < 10; ++i)
    pending.push_back(c.track(*connection, {"BLPOP", "never-pushed", "0"}, log));
  c.run_for(100ms);  // written and read by Redis
  for (const auto& command : pending) CHECK(command->calls == 0);

  server.kill();
  REQUIRE(c.run_until([&] { return log->lost_calls > 0; }));
  c.run_for(50ms);
  for (const auto& command : pending) {
    CHECK(command->calls == 1);
    CHECK(command->no_reply);
  }
  CHECK(log->lost_calls == 1);
  MESSAGE("on_lost: " << log->lost);
  CHECK((log->lost == "Redis closed the connection" || starts_with(log->lost, "read: ")));
  // Every `done` before on_lost.
  REQUIRE(log->events.size() == 12);
  CHECK(log->events.front() == "ready");
  CHECK(log->events.back() == "lost");

  auto late = c.track(*connection, {"PING"});
  CHECK(late->calls == 0);  // not inline
  REQUIRE(c.run_until([&] { return late->calls > 0; }));
  CHECK(late->no_reply);
  CHECK(log->lost_calls == 1);
}

TEST_CASE("close() with commands pending: each gets no reply, no on_lost, and it is idempotent") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  auto observer = c.open(server.endpoint());
  std::vector<std::shared_ptr<answer>> pending;
  for (int i = 0; i < 10; ++i)
    pending.push_back(c.track(*connection, {"BLPOP", "never-pushed", "0"}));
  c.run_for(50ms);
  connection->close();
  connection->close();
  for (const auto& command : pending) CHECK(command->calls == 0);  // not inline
  REQUIRE(c.run_until([&] { return all_answered(pending); }));
  connection->close();
  c.run_for(50ms);
  for (const auto& command : pending) {
    CHECK(command->calls == 1);
    CHECK(command->no_reply);
  }
  CHECK(log->lost_calls == 0);
  auto late = c.track(*connection, {"PING"});
  CHECK(late->calls == 0);
  REQUIRE(c.run_until([&] { return late->calls > 0; }));
  CHECK(late->no_reply);
  // Redis saw it go: only the observer is left.
  REQUIRE(c.run_until([&] { return connected_clients(c, *observer) == 1; }));
}

TEST_CASE("close() before on_ready: no handler is called, waiting commands get no reply") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.connect(server.endpoint(), kind::command, log);
  auto waiting = c.track(*connection, {"PING"});
  connection->close();
  REQUIRE(c.run_until([&] { return waiting->calls > 0; }));
  c.run_for(100ms);
  CHECK(waiting->no_reply);
  CHECK(log->events.empty());
}

TEST_CASE("a dropped connection answers its pending commands, then closes: Redis sees it go") {
  redis_server server;
  client c;
  auto observer = c.open(server.endpoint());
  std::vector<std::shared_ptr<answer>> pending;
  {
    auto connection = c.open(server.endpoint());
    CHECK(connected_clients(c, *observer) == 2);
    for (int i = 0; i < 3; ++i) pending.push_back(c.track(*connection, {"PING"}));
  }  // the only reference is gone, with three commands in flight
  REQUIRE(c.run_until([&] { return all_answered(pending); }));
  for (const auto& command : pending) CHECK(describe(command->reply) == "+PONG");
  REQUIRE(c.run_until([&] { return connected_clients(c, *observer) == 1; }));

  {  // a subscriber has nothing in flight: it closes at once
    auto log = std::make_shared<recorded>();
    auto subscriber = c.open(server.endpoint(), kind::subscriber, log);
    subscriber->send({"SUBSCRIBE", "ch"}, {});
    REQUIRE(c.run_until([&] { return log->pushes.size() == 1; }));
    CHECK(connected_clients(c, *observer) == 2);
  }
  REQUIRE(c.run_until([&] { return connected_clients(c, *observer) == 1; }));
}

TEST_CASE("a reply over max_reply_bytes ends the connection, whole or still arriving") {
  redis_server server;
  wsvisor::redis_client_options options;
  options.max_reply_bytes = 4096;
  client c(options);
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  CHECK(describe(c.call(*connection, {"SET", "small", std::string(4000, 's')})) == "+OK");
  CHECK(c.call(*connection, {"GET", "small"}).text.size() ==
        4000);  // 4,009 bytes: within the bound
  CHECK(describe(c.call(*connection, {"SET", "big", std::string(1 << 20, 'b')})) == "+OK");

  SUBCASE("still arriving: 1 MiB comes in many reads") {
    auto got = c.track(*connection, {"GET", "big"});
    REQUIRE(c.run_until([&] { return log->lost_calls > 0; }));
    CHECK(got->no_reply);
    CHECK(starts_with(log->lost, "a reply over max_reply_bytes (4096): "));
    CHECK(contains(log->lost, "and more to come"));
  }
  SUBCASE("whole in one read") {
    CHECK(describe(c.call(*connection, {"SET", "medium", std::string(5000, 'm')})) == "+OK");
    auto got = c.track(*connection, {"GET", "medium"});
    REQUIRE(c.run_until([&] { return log->lost_calls > 0; }));
    CHECK(got->no_reply);
    CHECK(log->lost == "a reply over max_reply_bytes (4096): 5009 bytes");
  }
}

TEST_CASE("an empty command is not sent: it gets an error reply made here, in its turn") {
  redis_server server;
  client c;
  auto log = std::make_shared<recorded>();
  auto connection = c.open(server.endpoint(), kind::command, log);
  std::vector<std::string> replies;
  const auto collect = [&replies](const redis_value* reply) {
    replies.push_back(reply ? describe(*reply) : "no reply");
  };
  connection->send({"PING", "first"}, collect);
  connection->send({}, collect);
  connection->send({"PING", "third"}, collect);
  connection->send({}, collect);
  REQUIRE(c.run_until([&] { return replies.size() == 4; }));
  CHECK(replies == std::vector<std::string>{"\"first\"", "-ERR empty command (not sent)",
                                            "\"third\"", "-ERR empty command (not sent)"});
  CHECK(describe(c.call(*connection, {"PING"})) == "+PONG");  // still in step
  CHECK(log->lost_calls == 0);
}
