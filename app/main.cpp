// The wsvisor binary: the server with the applications it ships (echo, gateway).
#include "wsvisor/wsvisor.hpp"

int main(int argc, char** argv) {
  return wsvisor::run(argc, argv, wsvisor::application_registry::with_builtins());
}
