#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace wsvisor {

struct supervisor_tree;

/// One child as the tree query reports it.
struct child_status {
  std::string id;
  bool running = false;
  /// How often the supervisor restarted this child.
  std::size_t restarts = 0;
  /// The child's own tree if it is a running supervisor that answered in
  /// time; null otherwise.
  std::shared_ptr<const supervisor_tree> subtree;
};

}  // namespace wsvisor
