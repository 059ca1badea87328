// The command line (CONTRACT section 1): which action to take, which file to read, and the
// --set overrides; everything else is load_settings' job.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "config_internal.hpp"
#include "wsvisor/config.hpp"

extern char** environ;

namespace wsvisor {

#ifndef WSVISOR_VERSION
#error "WSVISOR_VERSION must be defined by the build (config/CMakeLists.txt)"
#endif

environment process_environment() {
  environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const size_t equals = text.find('=');
    if (equals == std::string::npos) continue;
    env.emplace(text.substr(0, equals), text.substr(equals + 1));
  }
  return env;
}

std::string detail::read_config_file(const std::string& path) {
  const std::string where = "--config " + path;
  std::error_code error;
  if (!std::filesystem::exists(path, error))
    throw config_error(error_message(where, "", "no such file"));
  if (std::filesystem::is_directory(path, error))
    throw config_error(error_message(where, "", "is a directory, not a file"));
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw config_error(
        error_message(where, "", std::string("cannot read: ") + std::strerror(errno)));
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad())
    throw config_error(
        error_message(where, "", std::string("cannot read: ") + std::strerror(errno)));
  return text.str();
}

cli_result parse_command_line(int argc, const char* const* argv, const environment& env,
                              const std::string& default_config_path) {
  CLI::App app{"wsvisor " WSVISOR_VERSION
               ": a WebSocket server whose connections are supervised actors.",
               "wsvisor"};
  // Help and version are ordinary flags so that asking for them is an answer (an action
  // main() carries out), not an exception in the middle of parsing.
  app.set_help_flag();
  bool help_requested = false;
  bool version_requested = false;
  bool check_requested = false;
  bool health_requested = false;
  std::string config_path;
  std::vector<std::string> assignments;
  app.add_flag("-h,--help", help_requested, "Print this help and exit.");
  app.add_flag("--version", version_requested, "Print \"wsvisor <version>\" and exit.");
  app.add_option("-c,--config", config_path,
                 "Read the configuration from FILE (TOML). Without it, " + default_config_path +
                     " is read when it exists, else the built-in defaults apply. A missing "
                     "or unreadable FILE is an error.")
      ->type_name("FILE");
  app.add_option("--set", assignments,
                 "Override one key, e.g. --set limits.max_connections=5000 or --set "
                 "'server.allowed_origins=[\"https://a.example\"]'. VALUE is read as TOML; a "
                 "bare word that is not TOML is a string (--set janitor.ping_interval=2s). "
                 "Repeatable; the last one for a key wins.")
      ->type_name("SECTION.KEY=VALUE")
      ->allow_extra_args(false);
  app.add_flag("--check-config", check_requested,
               "Validate the configuration, print the effective configuration with secrets "
               "redacted, and exit 0 (2 on an error).");
  app.add_flag("--health", health_requested,
               "Probe the server this configuration describes: GET /health/live on "
               "server.host (0.0.0.0 as 127.0.0.1, :: as ::1) and server.port, within 2 s. "
               "Prints one line and exits 0 on a 200, 1 otherwise, 2 on a configuration "
               "error. For a container HEALTHCHECK: give it the server's --config and --set.")
      ->excludes("--check-config");
  app.footer(
      "Precedence, lowest first: built-in defaults < the file < PORT (sets server.port) < "
      "WSVISOR_<SECTION>_<KEY> (e.g. WSVISOR_LIMITS_MAX_CONNECTIONS=5000) < --set.\n"
      "Secrets come only from the environment: " +
      detail::secret_variables() +
      ".\n"
      "Durations are strings with a unit: \"250ms\", \"10s\", \"5m\", \"1h\".\n"
      "Exit status: 0 after a drain, 1 when the listener cannot bind or the supervisor "
      "gives up, 2 on a configuration or command-line error.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    throw config_error("command line error: " + std::string(error.what()) + " (see --help)");
  }

  cli_result result;
  if (help_requested) {
    result.action = cli_action::help;
    result.help_text = app.help();
    return result;
  }
  if (version_requested) {
    result.action = cli_action::version;
    result.help_text = "wsvisor " WSVISOR_VERSION;
    return result;
  }

  std::optional<std::string> toml_text;
  if (!config_path.empty()) {
    toml_text = detail::read_config_file(config_path);
    result.config_path = config_path;
  } else if (!default_config_path.empty() && std::filesystem::exists(default_config_path)) {
    toml_text = detail::read_config_file(default_config_path);
    result.config_path = default_config_path;
  }
  result.config = load_settings(toml_text, result.config_path, env, assignments);
  result.action = check_requested    ? cli_action::check_config
                  : health_requested ? cli_action::health
                                     : cli_action::run;
  return result;
}

}  // namespace wsvisor
