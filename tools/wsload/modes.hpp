// One function per mode: each runs its load on the runner and returns its own JSON
// fields (main adds the fields common to every mode).
#pragma once

#include "runner.hpp"

#include <boost/json/object.hpp>

namespace wsload {

boost::json::object run_echo(Runner& runner);
boost::json::object run_connect(Runner& runner);
boost::json::object run_hold(Runner& runner);
boost::json::object run_storm(Runner& runner);
boost::json::object run_zombie(Runner& runner);
boost::json::object run_slow(Runner& runner);
boost::json::object run_slowloris(Runner& runner);
boost::json::object run_subscribe(Runner& runner);
boost::json::object run_publish(Runner& runner);
boost::json::object run_reconnect(Runner& runner);

}  // namespace wsload
