# Two commands set everything up on a fresh Debian bookworm machine (as root):
#   make run    install what is missing, build Release, start build/wsvisor on port 8080
#   make test   the same set-up, then every test through ctest
#   make image  the container image (Dockerfile) with docker or podman
BUILD_DIR ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)
CTEST_ARGS ?=
IMAGE ?= wsvisor:latest
# docker or podman; empty: docker when an engine answers, else podman (see image:).
ENGINE ?=

FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps configure build run test bench fuzz format image clean

all: build

deps:
	@./tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	./$(BUILD_DIR)/wsvisor --config config/wsvisor.toml

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j 2 $(CTEST_ARGS)

bench: build
	@./bench/run.sh

# The libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan), each run FUZZ_SECONDS.
fuzz:
	@./tools/install-deps.sh fuzz
	@cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DWSVISOR_FUZZ=ON
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzzers
	@./tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

# docker only when `docker info` works: the client alone (no engine) cannot build. podman
# builds with chroot isolation, which needs no OCI runtime (so it works inside containers
# and sandboxes where the runtime cannot), and in the docker image format, since the OCI
# format has no HEALTHCHECK and podman would drop it.
image:
	@engine="$(ENGINE)"; \
	if [ -z "$$engine" ]; then \
	  if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then engine=docker; \
	  elif command -v podman >/dev/null 2>&1; then engine=podman; \
	  else echo "make image: needs podman, or docker with an engine that answers 'docker info'" >&2; exit 1; fi; \
	fi; \
	flags=""; [ "$$engine" = podman ] && flags="--isolation=chroot --format docker"; \
	echo "$$engine build $$flags -t $(IMAGE) ."; \
	$$engine build $$flags -t $(IMAGE) .

clean:
	rm -rf $(BUILD_DIR)
