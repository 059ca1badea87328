// Hub mode across nodes (CONTRACT 14): what one node tells the others of a channel, as
// the text of one Redis Pub/Sub message (and, for publications, one entry of the
// channel's history list in Redis). Each message is one letter and its fields:
//   p<offset>:<epoch>:<publication>   a publication (offset 0, epoch "": no history)
//   j<client info>                    a join push
//   l<client info>                    a leave push
//   u<user><client>                   the API's unsubscribe ("" client: every one)
// where every string is a netstring-like "<length>:<bytes>" (data is raw JSON, kept
// byte for byte: a publication reaches every node exactly as it was published). The
// offset and epoch are written by the publish script in Redis, which is why they are
// plain text ahead of the body.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "wsvisor/hub/protocol.hpp"

namespace wsvisor::hub::wire {

// The publication without offset: what the publish script gets, and prefixes with
// "p<offset>:<epoch>:".
std::string encode_publication_body(const publication& pub);
std::string encode_publication(const publication& pub, const std::string& epoch);
std::string encode_client_info(const client_info& info);
std::string encode_join(const client_info& info);
std::string encode_leave(const client_info& info);
std::string encode_unsubscribe(const std::string& user, const std::string& client);

struct published {
  publication pub;  // with its offset
  std::string epoch;
};
struct joined {
  client_info info;
};
struct left {
  client_info info;
};
struct unsubscribed {
  std::string user, client;
};
using message = std::variant<published, joined, left, unsubscribed>;

// nullopt for anything malformed (a message of a newer version, a truncated one).
std::optional<message> decode(std::string_view text);
std::optional<client_info> decode_client_info(std::string_view text);

}  // namespace wsvisor::hub::wire
