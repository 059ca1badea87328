// A fast HTTP/1.1 backend for wsvisor's gateway mode (CONTRACT 12), for bench/gateway.sh:
// one thread, epoll, non-blocking sockets, keep-alive, no allocation per request beyond
// the connection's buffers. It is the cheapest thing that can stand behind wsvisor, so
// that a gateway benchmark measures wsvisor and not the backend.
//
//   fast_backend PORT
//
// Routes (anything else: 404; every answer has a Content-Length and keeps the connection):
//   POST /ws/message   the message hook (12.2): 200 with the request body as the reply,
//                      Content-Type text/plain, so the client gets its message back (an
//                      echo through the backend). X-Wsvisor-* headers are not looked at.
//   POST /connect      the connect hook (12.1): 200 {"user":"u<n>"}, n counting from 0
//                      modulo USERS (env FAST_BACKEND_USERS, 1000), so that one client
//                      tool opening N connections gets N % USERS distinct users.
//   POST /events       lifecycle events (11.3): 204.
// Pipelined requests are answered in order. Request bodies must carry a Content-Length
// (wsvisor's upstream client always sends one); chunked requests get 501 and a close.
// SIGINT/SIGTERM end it; it prints "requests N" on stderr when it exits.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct Conn {
  int fd = -1;
  std::string in;
  std::string out;
  std::size_t out_off = 0;
  bool close_after = false;
};

unsigned long long g_requests = 0;
unsigned long long g_connect_calls = 0;
unsigned long long g_users = 1000;

bool iequals_prefix(std::string_view line, std::string_view name) {
  if (line.size() < name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char a = line[i], b = name[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

void respond(Conn& c, int status, std::string_view reason, std::string_view type,
             std::string_view body) {
  char head[256];
  int n;
  if (type.empty()) {
    n = std::snprintf(head, sizeof head, "HTTP/1.1 %d %.*s\r\nContent-Length: %zu\r\n\r\n", status,
                      static_cast<int>(reason.size()), reason.data(), body.size());
  } else {
    n = std::snprintf(head, sizeof head,
                      "HTTP/1.1 %d %.*s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n\r\n",
                      status, static_cast<int>(reason.size()), reason.data(),
                      static_cast<int>(type.size()), type.data(), body.size());
  }
  c.out.append(head, static_cast<std::size_t>(n));
  c.out.append(body);
}

// Parses and answers every complete request in c.in. Returns false on a fatal error.
bool handle_requests(Conn& c) {
  std::size_t pos = 0;
  while (true) {
    std::string_view rest(c.in.data() + pos, c.in.size() - pos);
    std::size_t end = rest.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (rest.size() > 65536) return false;
      break;
    }
    std::string_view head = rest.substr(0, end);
    std::size_t line_end = head.find("\r\n");
    std::string_view request_line = head.substr(0, line_end);
    std::size_t content_length = 0;
    bool chunked = false, want_close = false;
    std::size_t p = line_end == std::string_view::npos ? head.size() : line_end + 2;
    while (p < head.size()) {
      std::size_t e = head.find("\r\n", p);
      if (e == std::string_view::npos) e = head.size();
      std::string_view h = head.substr(p, e - p);
      if (iequals_prefix(h, "content-length:")) {
        content_length = std::strtoull(std::string(h.substr(15)).c_str(), nullptr, 10);
      } else if (iequals_prefix(h, "transfer-encoding:")) {
        chunked = true;
      } else if (iequals_prefix(h, "connection:") && h.find("close") != std::string_view::npos) {
        want_close = true;
      }
      p = e + 2;
    }
    if (chunked) {
      respond(c, 501, "Not Implemented", "", "");
      c.close_after = true;
      c.in.clear();
      return true;
    }
    if (rest.size() < end + 4 + content_length) break;  // body not complete yet
    std::string_view body = rest.substr(end + 4, content_length);
    ++g_requests;
    std::size_t sp1 = request_line.find(' ');
    std::size_t sp2 = request_line.find(' ', sp1 + 1);
    std::string_view path = sp1 == std::string_view::npos
                                ? std::string_view()
                                : request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (std::size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
    if (path == "/ws/message") {
      respond(c, 200, "OK", "text/plain; charset=utf-8", body);
    } else if (path == "/connect") {
      char user[64];
      int n = std::snprintf(user, sizeof user, "{\"user\":\"u%llu\"}", g_connect_calls++ % g_users);
      respond(c, 200, "OK", "application/json",
              std::string_view(user, static_cast<std::size_t>(n)));
    } else if (path == "/events") {
      respond(c, 204, "No Content", "", "");
    } else {
      respond(c, 404, "Not Found", "", "");
    }
    pos += end + 4 + content_length;
    if (want_close) {
      c.close_after = true;
      break;
    }
  }
  c.in.erase(0, pos);
  return true;
}

// Writes what c.out holds. Returns false when the connection must close.
bool flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      return false;
    }
    c.out_off += static_cast<std::size_t>(n);
  }
  c.out.clear();
  c.out_off = 0;
  return !c.close_after;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fast_backend PORT\n");
    return 2;
  }
  if (const char* u = std::getenv("FAST_BACKEND_USERS"))
    g_users = std::max(1ULL, std::strtoull(u, nullptr, 10));
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(lfd, 1024) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, Conn> conns;
  epoll_event events[256];
  char buf[65536];

  auto close_conn = [&](int fd) {
    ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns.erase(fd);
  };

  while (!g_stop) {
    int n = ::epoll_wait(ep, events, 256, 200);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        while (true) {
          int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.fd = cfd;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
          conns[cfd].fd = cfd;
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      bool ok = true;
      if (events[i].events & EPOLLIN) {
        while (true) {
          ssize_t r = ::recv(fd, buf, sizeof buf, 0);
          if (r > 0) {
            c.in.append(buf, static_cast<std::size_t>(r));
            if (static_cast<std::size_t>(r) < sizeof buf) break;
            continue;
          }
          if (r == 0)
            ok = false;
          else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            ok = false;
          break;
        }
        if (ok) ok = handle_requests(c);
      }
      if (ok && (events[i].events & (EPOLLERR | EPOLLHUP))) ok = false;
      bool had_out = !c.out.empty();
      if (ok && had_out) ok = flush(c);
      if (!ok) {
        close_conn(fd);
        continue;
      }
      // Wait for writability only while output is pending.
      epoll_event cev{};
      cev.events = EPOLLIN | EPOLLRDHUP | (c.out.empty() ? 0u : static_cast<unsigned>(EPOLLOUT));
      cev.data.fd = fd;
      if (had_out || (events[i].events & EPOLLOUT)) ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
    }
  }
  for (auto& [fd, c] : conns) ::close(fd);
  std::fprintf(stderr, "requests %llu\n", g_requests);
  return 0;
}
