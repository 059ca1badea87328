// The only TU that sees the commit, so that a new commit recompiles this file alone.
#include "wsvisor/build_info.hpp"

#if !defined(WSVISOR_VERSION) || !defined(WSVISOR_GIT_COMMIT)
#error \
    "WSVISOR_VERSION and WSVISOR_GIT_COMMIT must be defined by the build (metrics/CMakeLists.txt)"
#endif

namespace wsvisor {

const char* build_version() {
  return WSVISOR_VERSION;
}

const char* build_commit() {
  return WSVISOR_GIT_COMMIT;
}

}  // namespace wsvisor
