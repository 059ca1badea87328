// An application of one's own behind wsvisor (CONTRACT section 10, "Embedding"): every
// text message comes back in capitals, numbered per connection; "crash" throws, to show
// that a handler that throws is restarted with a fresh instance (the count starts over)
// while the client stays connected. Run it like the wsvisor binary, with
// --set app.mode=shout; every other key and guarantee is wsvisor's.
#include <cctype>
#include <memory>
#include <stdexcept>
#include <string>

#include <wsvisor/wsvisor.hpp>

namespace {

class shout final : public wsvisor::application {
 public:
  void on_message(wsvisor::connection_handle& connection, std::string& payload,
                  bool text) override {
    if (payload == "crash") throw std::runtime_error("asked to crash");
    if (text)
      for (auto& c : payload) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    connection.send(std::to_string(++count_) + " " + payload, text);
  }

 private:
  unsigned count_ = 0;  // the application's state: a restart starts it over
};

}  // namespace

int main(int argc, char** argv) {
  auto applications = wsvisor::application_registry::with_builtins();
  applications.add("shout", [] { return std::make_unique<shout>(); });
  return wsvisor::run(argc, argv, applications);
}
