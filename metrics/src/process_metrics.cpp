#include "wsvisor/process_metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

namespace wsvisor {

namespace {

double seconds_since_epoch() {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double>(since_epoch).count();
}

// Taken during static initialisation, before main(): the fallback start time.
const double library_initialised_at = seconds_since_epoch();

double seconds_of(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// Clock ticks from boot to the start of this process: field 22 of /proc/self/stat.
std::optional<double> start_ticks_since_boot() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat;
  if (!std::getline(stat_file, stat)) return std::nullopt;
  // Field 2 is the command name in parentheses, which may itself hold spaces and
  // parentheses; the fields after it begin behind the last ')'.
  const auto name_end = stat.rfind(')');
  if (name_end == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(name_end + 1));
  std::string skipped;
  for (int field = 3; field < 22; ++field) fields >> skipped;
  double start_ticks = 0;
  if (!(fields >> start_ticks)) return std::nullopt;
  return start_ticks;
}

// Unix time of the boot: the btime line of /proc/stat.
std::optional<double> boot_time() {
  std::ifstream proc_stat("/proc/stat");
  std::string key;
  while (proc_stat >> key) {
    if (key == "btime") {
      double btime = 0;
      if (proc_stat >> btime) return btime;
      return std::nullopt;
    }
    proc_stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

double read_start_time() {
  const auto ticks = start_ticks_since_boot();
  const auto boot = boot_time();
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  if (!ticks || !boot || ticks_per_second <= 0) return library_initialised_at;
  return *boot + *ticks / static_cast<double>(ticks_per_second);
}

}  // namespace

double process_resident_memory_bytes() {
  // /proc/self/statm: total program size, then resident set size, both in pages.
  std::ifstream statm("/proc/self/statm");
  double total_pages = 0;
  double resident_pages = 0;
  if (!(statm >> total_pages >> resident_pages)) return 0;
  return resident_pages * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double process_open_fds() {
  DIR* fd_dir = ::opendir("/proc/self/fd");
  if (fd_dir == nullptr) return 0;
  // The directory stream holds a descriptor of its own, listed while we count; it is not
  // one of the process's, so it is left out.
  const int own_fd = ::dirfd(fd_dir);
  double open_fds = 0;
  while (const dirent* entry = ::readdir(fd_dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || name == std::to_string(own_fd)) continue;
    ++open_fds;
  }
  ::closedir(fd_dir);
  return open_fds;
}

double process_max_fds() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur == RLIM_INFINITY) return std::numeric_limits<double>::infinity();
  return static_cast<double>(limit.rlim_cur);
}

double process_cpu_seconds_total() {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
}

double process_start_time_seconds() {
  // Read once: it cannot change, and a scrape should not reparse /proc/stat for it.
  static const double start_time = read_start_time();
  return start_time;
}

}  // namespace wsvisor
