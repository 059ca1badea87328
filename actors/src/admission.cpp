#include "wsvisor/admission.hpp"

#include <random>

namespace wsvisor {

std::chrono::seconds jittered_retry_after(std::chrono::milliseconds retry_after) {
  thread_local std::minstd_rand random{std::random_device{}()};
  const long long low =
      std::max<long long>(1, std::chrono::duration_cast<std::chrono::seconds>(retry_after).count());
  const long long high = std::max(low, low * 3 / 2);
  return std::chrono::seconds(std::uniform_int_distribution<long long>(low, high)(random));
}

}  // namespace wsvisor
