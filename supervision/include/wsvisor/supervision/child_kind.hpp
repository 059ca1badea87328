#pragma once

namespace wsvisor {

/// Whether a child is a plain worker or a supervisor itself. The tree query
/// asks supervisor children for their own tree and nests it.
enum class child_kind { worker, supervisor };

}  // namespace wsvisor
