#include "wsvisor/supervision/detail/child_table.hpp"

namespace wsvisor::detail {

child_table::key child_table::insert(child_spec spec) {
  auto k = next_key_++;
  if (!spec.id.empty()) key_by_id_.emplace(spec.id, k);
  records_.emplace(k, child_record{std::move(spec)});
  return k;
}

void child_table::erase(key k) {
  auto i = records_.find(k);
  if (i == records_.end()) return;
  if (i->second.handle) key_by_actor_.erase(i->second.handle->id());
  if (!i->second.spec.id.empty()) key_by_id_.erase(i->second.spec.id);
  records_.erase(i);
}

child_record* child_table::find(key k) {
  auto i = records_.find(k);
  return i == records_.end() ? nullptr : &i->second;
}

std::optional<child_table::key> child_table::key_of_id(const std::string& id) const {
  auto i = key_by_id_.find(id);
  if (i == key_by_id_.end()) return std::nullopt;
  return i->second;
}

std::optional<child_table::key> child_table::key_of_actor(caf::actor_id id) const {
  auto i = key_by_actor_.find(id);
  if (i == key_by_actor_.end()) return std::nullopt;
  return i->second;
}

void child_table::bind(key k, caf::actor actor) {
  auto* child = find(k);
  if (child == nullptr) return;
  if (child->handle) key_by_actor_.erase(child->handle->id());
  key_by_actor_.emplace(actor->id(), k);
  child->handle = std::move(actor);
}

void child_table::unbind(key k) {
  auto* child = find(k);
  if (child == nullptr || !child->handle) return;
  key_by_actor_.erase(child->handle->id());
  child->handle = nullptr;
}

}  // namespace wsvisor::detail
