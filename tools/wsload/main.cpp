// wsload: load and misbehaviour client for wsvisor (see `wsload --help`).
#include "json_output.hpp"
#include "modes.hpp"
#include "options.hpp"
#include "runner.hpp"

#include <sys/resource.h>

#include <exception>
#include <iostream>
#include <map>

namespace {

// A run may hold ~19,000 sockets; the default soft limit (often 1024) would refuse
// them long before the server does.
rlim_t raise_open_files_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wsload;
  ParseResult parsed = parse_options(argc, argv);
  if (parsed.outcome == ParseOutcome::help) {
    std::cout << usage_text();
    return 0;
  }
  if (parsed.outcome == ParseOutcome::error) {
    std::cerr << "wsload: " << parsed.error << "\n(see wsload --help)\n";
    return 2;
  }
  const Options& options = parsed.options;
  static const std::map<std::string, boost::json::object (*)(Runner&)> modes = {
      {"echo", run_echo},           {"connect", run_connect},     {"hold", run_hold},
      {"storm", run_storm},         {"zombie", run_zombie},       {"slow", run_slow},
      {"slowloris", run_slowloris}, {"subscribe", run_subscribe}, {"publish", run_publish},
      {"reconnect", run_reconnect}};

  try {
    auto open_files_limit = raise_open_files_limit();
    // Each connection is one descriptor; a few more are wsload's own.
    if (static_cast<rlim_t>(options.connections) + 64 > open_files_limit) {
      std::cerr << "wsload: warning: --connections " << options.connections
                << " is close to or above the open files limit " << open_files_limit
                << "; the excess will fail with 'Too many open files'\n";
    }
    Runner runner(options);
    boost::json::object result = modes.at(options.mode)(runner);
    boost::json::object summary;
    summary["mode"] = options.mode;
    summary["target"] = options.host_header() + options.path;
    summary["threads"] = options.threads;
    summary["duration_s"] = options.duration_s;
    summary["elapsed_s"] = runner.elapsed_s();
    summary["hard_deadline_hit"] = runner.hard_deadline_hit();
    summary["interrupted"] = runner.interrupted();
    summary["open_files_limit"] = static_cast<std::uint64_t>(open_files_limit);
    for (auto& [key, value] : result) summary[key] = value;
    std::cout << to_json_line(summary) << std::endl;
  } catch (const std::exception& failure) {
    std::cerr << "wsload: " << failure.what() << "\n";
    return 1;
  }
  return 0;
}
