// wsvisor::run: wires the configuration, the logger, the io_context, the actor system, the
// service tree, the HTTP client to the backend and the listeners, then waits for a signal
// and drains. Nothing else. The wsvisor binary and embedding programs both call it.
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <atomic>
#include <condition_variable>

#include <pthread.h>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "health_probe.hpp"
#include "wsvisor/wsvisor.hpp"

#include "wsvisor/config.hpp"
#include "wsvisor/http_upstream.hpp"
#include "wsvisor/log.hpp"
#include "wsvisor/metrics.hpp"
#include "wsvisor/redis_client.hpp"
#include "wsvisor/server.hpp"
#include "wsvisor/service.hpp"

namespace {

using namespace wsvisor;
namespace net = boost::asio;

// Set once the process may exit; main() waits for it.
class exit_latch {
 public:
  void open(int code) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_) return;
    open_ = true;
    code_ = code;
    opened_.notify_all();
  }
  int wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    opened_.wait(lock, [this] { return open_; });
    return code_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
  int code_ = 0;
};

// The drain of CONTRACT section 9, polled on the io_context: done when every
// connection is closed, or at drain_timeout (then the rest are closed hard).
class drain_watch : public std::enable_shared_from_this<drain_watch> {
 public:
  drain_watch(net::io_context& io, service& tree, const settings& config, exit_latch& latch)
      : timer_(io),
        tree_(tree),
        latch_(latch),
        deadline_(std::chrono::steady_clock::now() + config.shutdown.drain_timeout) {}

  void start() { poll(); }

 private:
  void poll() {
    // Done when every connection is closed and their lifecycle events are out
    // (CONTRACT 11.3: a drain waits for the queue up to drain_timeout).
    if (tree_.connections() == 0 && tree_.events_pending() == 0) {
      log_event(spdlog::level::info, "drain_complete", "drain complete: every connection closed");
      return latch_.open(0);
    }
    if (std::chrono::steady_clock::now() >= deadline_) {
      log_event(spdlog::level::warn, "drain_deadline",
                "drain deadline reached (shutdown.drain_timeout): closing the rest at once",
                {{"connections", tree_.connections()}});
      tree_.close_all_now();
      return latch_.open(0);
    }
    timer_.expires_after(std::chrono::milliseconds(20));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->poll();
    });
  }

  net::steady_timer timer_;
  service& tree_;
  exit_latch& latch_;
  std::chrono::steady_clock::time_point deadline_;
};

// Once a second, the summaries of throttled log lines (admission refusals) go out even
// when no new line comes to push them.
class log_summary_timer : public std::enable_shared_from_this<log_summary_timer> {
 public:
  explicit log_summary_timer(net::io_context& io) : timer_(io) {}
  void start() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      flush_log_summaries();
      self->start();
    });
  }
  void stop() { timer_.cancel(); }

 private:
  net::steady_timer timer_;
};

// Each connection is a descriptor: the soft RLIMIT_NOFILE goes up to the hard limit, as
// Go's runtime and nginx's worker_rlimit_nofile do, so that a platform's default soft
// limit (often 1024) does not cap the server far below limits.max_connections.
void raise_open_file_limit(const settings& config) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const auto before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  }
  const auto needed = config.limits.max_connections + config.limits.max_pending_handshakes + 100;
  log_event(limit.rlim_cur < needed ? spdlog::level::warn : spdlog::level::info, "open_files",
            limit.rlim_cur < needed
                ? "the open-file limit is below limits.max_connections + "
                  "max_pending_handshakes + 100: raise the hard limit (ulimit -Hn) or lower "
                  "limits.max_connections"
                : "open-file limit",
            {{"soft_before", static_cast<uint64_t>(before)},
             {"soft", static_cast<uint64_t>(limit.rlim_cur)},
             {"hard", static_cast<uint64_t>(limit.rlim_max)},
             {"needed", needed}});
}

int serve(const settings& config, const application_factory& application) {
  // Before any thread exists, so that every thread made from here on inherits the mask:
  // SIGINT, SIGTERM and SIGHUP are then taken only by the signal thread below
  // (sigtimedwait), never by a default action in some other thread (SIGHUP's would end
  // the process).
  sigset_t handled_signals;
  sigemptyset(&handled_signals);
  sigaddset(&handled_signals, SIGINT);
  sigaddset(&handled_signals, SIGTERM);
  sigaddset(&handled_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled_signals, nullptr);
  raise_open_file_limit(config);
  const unsigned io_threads = io_thread_count(config);
  const unsigned shard_count = actor_thread_count(config);
  net::io_context io(static_cast<int>(io_threads));
  auto work = net::make_work_guard(io);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < io_threads; ++i) threads.emplace_back([&io] { io.run(); });

  caf::actor_system_config actor_config;
  if (config.server.scheduler == "io") {
    use_io_scheduler(actor_config, io);
  } else {
    actor_config.set("scheduler.max-threads", static_cast<size_t>(shard_count));
  }
  actor_config.set("logger.verbosity", caf::atom("quiet"));

  int exit_code = 0;
  {
    caf::actor_system system{actor_config};
    metrics stats;
    service tree(system, config, stats, shard_count);
    tree.use_application(application);
    if (!config.upstream.url.empty() || !config.events.url.empty()) {
      http_upstream_options options;
      options.max_response_bytes = config.upstream.max_response_bytes;
      // As many idle connections as there can be requests at once (hooks, plus the
      // events' 16): a smaller pool closes a connection after each answer under load,
      // which is no keep-alive at all (TIME-WAIT piles up, every call pays a connect).
      options.max_idle_per_host = config.upstream.max_inflight + 16;
      tree.use_upstream(make_http_upstream(io, options));
    }
    if (config.cluster.enabled()) tree.use_redis(make_redis_client(io));
    exit_latch latch;
    // The root supervisor gave up (restart intensity exceeded): exit 1, so that the
    // container platform restarts the process (CONTRACT section 9).
    tree.on_give_up([&tree, &latch] {
      tree.close_all_now();
      latch.open(1);
    });
    tree.start();
    server listener(io, config, tree, stats);
    // SIGTERM, SIGINT and POST /admin/drain all begin the same drain, once.
    std::atomic<bool> drain_begun{false};
    auto begin_drain = [&] {
      if (drain_begun.exchange(true)) return;
      tree.begin_drain();
      std::make_shared<drain_watch>(io, tree, config, latch)->start();
    };
    listener.on_drain_request(begin_drain);
    auto summaries = std::make_shared<log_summary_timer>(io);
    summaries->start();
    // SIGINT, SIGTERM and SIGHUP are blocked in every thread (serve's first step) and
    // taken here, by one thread of their own, one at a time.
    std::atomic<bool> signals_done{false};
    std::thread signal_thread([&] {
      int signals_seen = 0;
      const timespec tick{0, 100 * 1000 * 1000};  // how soon the thread notices the exit
      while (!signals_done.load()) {
        const int signal_number = sigtimedwait(&handled_signals, nullptr, &tick);
        if (signal_number == SIGHUP) {
          // The certificate and key again (CONTRACT 16); nothing else is reloaded.
          listener.reload_tls();
          continue;
        }
        if (signal_number != SIGINT && signal_number != SIGTERM) continue;  // tick, EINTR
        const char* name = signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
        if (++signals_seen == 1 && !drain_begun) {
          log_event(spdlog::level::info, "signal",
                    "signal received: draining (a second signal closes everything now)",
                    {{"signal", name}});
          net::post(io, begin_drain);
        } else {
          log_event(spdlog::level::info, "signal",
                    "signal received again: closing every connection at once", {{"signal", name}});
          tree.close_all_now();
          latch.open(0);
        }
      }
    });

    if (const auto error = listener.load_tls(); !error.empty()) {
      // A configuration error, found only when the files are read: exit 2, as for the
      // loader's errors.
      log_event(spdlog::level::critical, "tls_failed", "cannot start TLS: " + error);
      exit_code = 2;
    } else if (const auto error = listener.listen(); !error.empty()) {
      log_event(spdlog::level::critical, "listen_failed", error);
      exit_code = 1;
    } else {
      tree.set_listening();
      log_event(spdlog::level::info, "listening", "wsvisor listening",
                {{"address", host_port(config.server.host, listener.port())},
                 {"ws_path", config.server.ws_path},
                 {"scheduler", config.server.scheduler},
                 {"io_threads", io_threads},
                 {"shards", shard_count}});
      exit_code = latch.wait();
    }
    // The exit code is decided; signals from here on stay pending (blocked everywhere),
    // so a platform's SIGTERM repeated while the process winds down cannot turn it into
    // death by that signal.
    signals_done = true;
    signal_thread.join();
    summaries->stop();
    listener.stop_accepting();
    tree.close_all_now();
    // Give aborted sessions a moment to tell their actors, so the tree stops empty.
    for (int i = 0; i < 100 && tree.connections() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // Cluster mode: the lease and whatever entries are left go now, not at lease_ttl.
    tree.leave_cluster();
    tree.stop();
    system.await_all_actors_done();
    // CAF keeps a thread-local reference to its logger in every thread that spawned an
    // actor, and ~actor_system waits for the last one: the io threads must be gone
    // before it. What they leave queued, the io scheduler runs while it stops.
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
  }
  flush_log_summaries();
  log_event(spdlog::level::info, "exit", "wsvisor exiting", {{"code", exit_code}});
  return exit_code;
}

}  // namespace

namespace wsvisor {

int run(int argc, char** argv, const application_registry& applications) {
  cli_result cli;
  try {
    cli = parse_command_line(argc, argv, process_environment());
  } catch (const config_error& error) {
    std::fprintf(stderr, "wsvisor: %s\n", error.what());
    return 2;
  }
  if ((cli.action == cli_action::run || cli.action == cli_action::check_config) &&
      !applications.find(cli.config.app.mode)) {
    std::string known;
    for (const auto& mode : applications.modes()) known += (known.empty() ? "" : ", ") + mode;
    std::fprintf(stderr,
                 "wsvisor: config error: app.mode: no application is registered as \"%s\"; "
                 "this program has: %s\n",
                 cli.config.app.mode.c_str(), known.c_str());
    return 2;
  }
  switch (cli.action) {
    case cli_action::help:
      std::fputs(cli.help_text.c_str(), stdout);
      return 0;
    case cli_action::version:
      std::printf("wsvisor %s\n", WSVISOR_VERSION);
      return 0;
    case cli_action::check_config:
      std::fputs(render_effective(cli.config, cli.config_path).c_str(), stdout);
      return 0;
    case cli_action::health:
      return run_health_probe(cli.config);
    case cli_action::run:
      break;
  }
  setup_logging(cli.config.log.level,
                cli.config.log.format == "json" ? log_format::json : log_format::text);
  log_event(spdlog::level::info, "starting", "wsvisor starting",
            {{"version", WSVISOR_VERSION},
             {"config", cli.config_path.empty() ? "built-in defaults" : cli.config_path}});
  return serve(cli.config, *applications.find(cli.config.app.mode));
}

}  // namespace wsvisor
