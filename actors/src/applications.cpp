// The applications wsvisor ships (CONTRACT section 10): echo (section 5) and gateway
// (section 12.2). The hub is a third (hub_application.cpp).
#include <algorithm>
#include <cctype>
#include <memory>
#include <string>

#include "hub_application.hpp"
#include "wsvisor/application.hpp"

namespace wsvisor {
namespace {

// app.mode = "echo": every text or binary message comes back unchanged, same opcode.
class echo_application final : public application {
 public:
  void on_message(connection_handle& connection, std::string& payload, bool text) override {
    connection.send(std::move(payload), text);
  }
};

// A 200's body goes to the client as text when its Content-Type is text/* or
// application/json, else as binary (CONTRACT 12.2).
bool is_text_type(std::string_view content_type) {
  std::string type(content_type.substr(0, content_type.find(';')));
  type.erase(
      std::remove_if(type.begin(), type.end(), [](unsigned char c) { return std::isspace(c); }),
      type.end());
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return type.rfind("text/", 0) == 0 || type == "application/json";
}

// app.mode = "gateway": each client message is POSTed to upstream.url + message_path
// through the connection's upstream queue; the backend's answer goes back to that client.
// Failures never close the WebSocket: with gateway.error_frames, the client gets a text
// frame saying why (CONTRACT 12.2).
class gateway_application final : public application {
 public:
  void on_message(connection_handle& connection, std::string& payload, bool text) override {
    upstream_call call;
    call.hook = upstream_hook::message;
    call.path = connection.config().gateway.message_path;
    call.body = std::move(payload);
    call.content_type = text ? "text/plain; charset=utf-8" : "application/octet-stream";
    connection.call_upstream(std::move(call));
  }

  void on_upstream(connection_handle& connection, upstream_result& result) override {
    switch (result.outcome) {
      case upstream_outcome::ok:
        // 200 with a body: to the client; 200 empty, 204 (or any other 2xx): nothing.
        if (result.status == 200 && !result.body.empty())
          connection.send(std::move(result.body), is_text_type(result.content_type));
        return;
      case upstream_outcome::cancelled:
        return;
      case upstream_outcome::rejected:
        return error_frame(connection, "rejected", result);
      case upstream_outcome::busy:
        return error_frame(connection, "busy", result);
      default:
        return error_frame(connection, "upstream_unavailable", result);
    }
  }

 private:
  static void error_frame(connection_handle& connection, const char* error,
                          const upstream_result& result) {
    if (!connection.config().gateway.error_frames) return;
    // The delivery id is "<node_id>.<n>:<seq>": [a-z0-9.:-], nothing to escape.
    std::string frame =
        std::string("{\"error\":\"") + error + "\",\"delivery\":\"" + result.delivery + "\"";
    if (result.outcome == upstream_outcome::rejected)
      frame += ",\"status\":" + std::to_string(result.status);
    frame += "}";
    connection.send(std::move(frame), true);
  }
};

}  // namespace

application_registry application_registry::with_builtins() {
  application_registry registry;
  registry.add("echo", [] { return std::make_unique<echo_application>(); });
  registry.add("gateway", [] { return std::make_unique<gateway_application>(); });
  registry.add("hub", [] { return make_hub_application(); });
  return registry;
}

}  // namespace wsvisor
