#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>

#include "wsvisor/supervision/detail/child_record.hpp"

namespace wsvisor::detail {

/// A supervisor's children in start order, found by key, id or actor id in
/// O(log n) or better so that dynamic supervisors scale to many thousands of
/// children without scanning on any event.
class child_table {
 public:
  /// Increases with every insertion, so key order is start order; a
  /// restarted child keeps its key and thus its place.
  using key = uint64_t;
  using records = std::map<key, child_record>;

  /// Precondition: the spec's id is empty or not yet taken.
  key insert(child_spec spec);
  void erase(key k);

  child_record* find(key k);
  std::optional<key> key_of_id(const std::string& id) const;
  std::optional<key> key_of_actor(caf::actor_id id) const;

  /// Makes `actor` the child's current actor, found by key_of_actor.
  void bind(key k, caf::actor actor);
  /// Forgets the child's current actor.
  void unbind(key k);

  records::iterator begin() { return records_.begin(); }
  records::iterator end() { return records_.end(); }
  /// The first child started after `k`.
  records::iterator after(key k) { return records_.upper_bound(k); }
  records::iterator at(key k) { return records_.find(k); }

  std::size_t size() const { return records_.size(); }
  bool empty() const { return records_.empty(); }
  std::size_t running_count() const { return key_by_actor_.size(); }

 private:
  key next_key_ = 0;
  records records_;
  std::unordered_map<std::string, key> key_by_id_;
  std::unordered_map<caf::actor_id, key> key_by_actor_;
};

}  // namespace wsvisor::detail
