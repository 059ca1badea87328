// Centrifugo's HTTP server API in hub mode (CONTRACT 13.6): POST /api/<method> for each
// method of service::hub_call, and POST /api/batch. The key and the body limit are
// checked before a handler runs (http_session.cpp), and every answer is counted in
// wsvisor_api_requests_total there. What a method does is the actors'; here is only
// HTTP: the body read as a JSON object, the answer in the error mode the request asks
// for (hub_api_protocol.cpp).
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "http_exchange.hpp"
#include "hub_api.hpp"

namespace wsvisor {
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

bool transport_error_mode(const http_exchange& call) {
  const auto field = call.request->find("X-Centrifugo-Error-Mode");
  if (field == call.request->end()) return hub_transport_error_mode(std::nullopt);
  return hub_transport_error_mode(std::string_view(field->value().data(), field->value().size()));
}

void send(const http_exchange& call, hub_http_answer answer) {
  call.answer_text(static_cast<http::status>(answer.status), std::move(answer.body));
}

endpoint_handler hub_method(std::string method) {
  return [method = std::move(method)](http_exchange& call) {
    const bool transport = transport_error_mode(call);
    auto parsed = hub_request_body(call.request->body());
    if (const auto* refused = std::get_if<hub_api_reply>(&parsed))
      return send(call, hub_method_answer(*refused, transport));
    call.state->tree.hub_call(method, std::move(std::get<json::object>(parsed)),
                              [call, transport](hub_api_reply reply) {
                                send(call, hub_method_answer(reply, transport));
                              });
  };
}

// A batch runs its commands one after another: the next goes to the actors when the
// previous one's reply is in, so that a batch's publications to one channel keep their
// order. That is Centrifugo's default; "parallel": true only allows another order, so
// it is served the same way.
class batch_run : public std::enable_shared_from_this<batch_run> {
 public:
  batch_run(http_exchange call, std::vector<hub_batch_command> commands)
      : call_(std::move(call)), commands_(std::move(commands)) {
    replies_.reserve(commands_.size());
  }

  // Called once to begin, then by each reply (from an actor's thread, or inline from
  // hub_call, which answers some errors at once). Only one call is out at a time, so
  // the state has one writer at a time. A reply that comes back while step() is still
  // on the stack (inline, or on another thread before hub_call returned) leaves the
  // next command to that step()'s loop: a batch of 1000 commands answered inline does
  // not nest 1000 calls deep. The counter's read-modify-writes also order the writes of
  // one thread before the reads of the next.
  void step() {
    if (wanted_.fetch_add(1, std::memory_order_acq_rel) != 0) return;
    do {
      for (; next_ < commands_.size() && commands_[next_].refused; ++next_)
        replies_.push_back(hub_batch_reply(commands_[next_].method, *commands_[next_].refused));
      if (next_ == commands_.size()) return send(call_, hub_batch_answer(replies_));
      auto& command = commands_[next_];
      call_.state->tree.hub_call(
          command.method, std::move(command.params),
          [self = shared_from_this()](hub_api_reply reply) {
            self->replies_.push_back(hub_batch_reply(self->commands_[self->next_].method, reply));
            ++self->next_;
            self->step();
          });
    } while (wanted_.fetch_sub(1, std::memory_order_acq_rel) != 1);
  }

 private:
  const http_exchange call_;
  std::vector<hub_batch_command> commands_;
  boost::json::array replies_;
  std::size_t next_ = 0;
  // step() calls not yet run by the loop: 0 when no step() is on any stack.
  std::atomic<unsigned> wanted_{0};
};

void hub_batch(http_exchange& call) {
  const bool transport = transport_error_mode(call);
  auto parsed = hub_request_body(call.request->body());
  if (const auto* refused = std::get_if<hub_api_reply>(&parsed))
    return send(call, hub_method_answer(*refused, transport));
  auto commands = parse_hub_batch(std::get<json::object>(parsed));
  if (const auto* refused = std::get_if<hub_api_reply>(&commands))
    return send(call, hub_method_answer(*refused, transport));
  std::make_shared<batch_run>(call, std::move(std::get<std::vector<hub_batch_command>>(commands)))
      ->step();
}

}  // namespace

void add_hub_api_endpoints(route_table& routes) {
  for (const auto& method : hub_api_methods())
    routes.add({"/api/" + method,
                {"POST"},
                endpoint_family::api,
                endpoint_auth::api_key,
                hub_method(method)});
  routes.add({"/api/batch", {"POST"}, endpoint_family::api, endpoint_auth::api_key, hub_batch});
}

}  // namespace wsvisor
