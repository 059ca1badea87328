// Label values of wsvisor_sweeps_total{kind}: what started a janitor sweep.
#pragma once

namespace wsvisor {

enum class sweep_kind {
  periodic,
  emergency,
  admin,
  count_  // number of values, not a value
};

// The label value: a static string, "unknown" for count_ or a value out of range.
const char* to_string(sweep_kind k);

}  // namespace wsvisor
