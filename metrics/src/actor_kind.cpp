#include "wsvisor/actor_kind.hpp"

namespace wsvisor {

const char* to_string(actor_kind k) {
  switch (k) {
    case actor_kind::connection:
      return "connection";
    case actor_kind::limit_guard:
      return "limit_guard";
    case actor_kind::janitor:
      return "janitor";
    case actor_kind::shard:
      return "shard";
    case actor_kind::upstream:
      return "upstream";
    case actor_kind::events:
      return "events";
    case actor_kind::hub:
      return "hub";
    case actor_kind::cluster:
      return "cluster";
    case actor_kind::count_:
      break;
  }
  return "unknown";
}

}  // namespace wsvisor
