// The process_* series of /metrics, read from the kernel on every call so that a scrape
// sees the value of that moment and nothing has to keep them up to date. Names, units
// and meanings are those of the Prometheus client libraries' process collectors, so
// dashboards and alerts written for those work unchanged.
#pragma once

namespace wsvisor {

// Resident set size in bytes (/proc/self/statm); 0 when unreadable.
double process_resident_memory_bytes();

// Descriptors the process has open (/proc/self/fd); 0 when unreadable.
double process_open_fds();

// Soft RLIMIT_NOFILE: how many descriptors the process may have open; +Inf when
// unlimited. process_open_fds / process_max_fds is how close accept() is to EMFILE.
double process_max_fds();

// User plus system CPU time of all threads since the process started, in seconds
// (getrusage, microsecond resolution).
double process_cpu_seconds_total();

// Unix time in seconds at which the process started, from /proc/self/stat and the boot
// time in /proc/stat (resolution: one clock tick, 10 ms). Falls back to the time this
// library was initialised, shortly before main(), when /proc cannot be read.
double process_start_time_seconds();

}  // namespace wsvisor
