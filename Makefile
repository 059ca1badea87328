# Two commands set everything up on a fresh Debian bookworm machine (as root):
#   make run    install what is missing, build Release, start build/wsvisor on port 8080
#   make test   the same set-up, then every test through ctest
BUILD_DIR ?= build
BUILD_TYPE ?= Release
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps configure build run test bench format clean

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

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
