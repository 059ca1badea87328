#pragma once

// The whole public interface of the supervision library.
#include "wsvisor/supervision/atoms.hpp"
#include "wsvisor/supervision/backoff_policy.hpp"
#include "wsvisor/supervision/child_kind.hpp"
#include "wsvisor/supervision/child_spec.hpp"
#include "wsvisor/supervision/child_status.hpp"
#include "wsvisor/supervision/restart_intensity.hpp"
#include "wsvisor/supervision/restart_strategy.hpp"
#include "wsvisor/supervision/restart_type.hpp"
#include "wsvisor/supervision/restart_window.hpp"
#include "wsvisor/supervision/shutdown_policy.hpp"
#include "wsvisor/supervision/supervision_error.hpp"
#include "wsvisor/supervision/supervisor.hpp"
#include "wsvisor/supervision/supervisor_spec.hpp"
#include "wsvisor/supervision/supervisor_tree.hpp"
