// What the running binary was built from, as wsvisor_build_info{version,commit} shows it.
#pragma once

namespace wsvisor {

// The project version of CMakeLists.txt, e.g. "0.1.0".
const char* build_version();

// `git rev-parse --short=12 HEAD` when the build was configured (CMake re-runs it when
// HEAD moves), WSVISOR_GIT_COMMIT when that cache variable is set, "unknown" without git.
// Uncommitted changes are not marked.
const char* build_commit();

}  // namespace wsvisor
