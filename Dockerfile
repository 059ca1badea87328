# wsvisor container image: built from source on Debian bookworm (the platform the project
# targets), run on bookworm-slim with only the shared libraries the binary loads.
#
#   docker build -t wsvisor .                   (or `make image`: docker or podman)
#   podman build --format docker -t wsvisor .   (the docker format keeps the HEALTHCHECK)
#   docker run -p 8080:8080 wsvisor
#
# Apt packages are not pinned to exact versions on purpose: Debian stable keeps only the
# newest point and security revision of each package in its archive, so an exact pin
# stops building after the next security update. The suite (bookworm) fixes the major
# versions, and the runtime package names carry the library SONAMEs (libcaf-core0.17,
# libboost-json1.81.0, ...), so the ABI cannot drift under the binary.

FROM debian:bookworm AS build
WORKDIR /src
# The dependency installer alone first, so that the package layer is cached across
# source changes; `build`: the compiler and libraries only (no test tools, browser or
# node, which the image would only spend minutes installing).
COPY tools/install-deps.sh tools/install-deps.sh
RUN ./tools/install-deps.sh build \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build --target wsvisor

FROM debian:bookworm-slim
# Runtime libraries of build/wsvisor (libstdc++, libgcc and libc are in the base image).
# The apt caches are removed here rather than left to the base image: Docker Hub's
# debian images delete them through /etc/apt/apt.conf.d/docker-clean, but a base built
# otherwise (debootstrap, a mirror's rebuild) keeps the package lists, the downloaded
# .debs and apt's pkgcache.bin and srcpkgcache.bin: about 80 MB (measured on a
# debootstrap base) that the image would carry for nothing.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libboost-json1.81.0 \
      libboost-system1.81.0 \
      libcaf-core0.17 \
      libcaf-io0.17 \
      libfmt9 \
      libhiredis0.14 \
      libprometheus-cpp-core1.0 \
      libspdlog1.10 \
      libssl3 \
      libtomlplusplus3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && groupadd --system --gid 10001 wsvisor \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin wsvisor

COPY --from=build /src/build/wsvisor /usr/local/bin/wsvisor
COPY config/wsvisor.toml /etc/wsvisor/wsvisor.toml
# Fails the image build, rather than the first container start, when a library the
# binary needs is missing from the list above.
RUN if ldd /usr/local/bin/wsvisor | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/wsvisor --version

# A numeric user, so that platforms enforcing runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# No PORT default: without it the port is the file's (8080 in the shipped one), so that a
# mounted configuration file is honoured; platforms that pass PORT still override it.
EXPOSE 8080
# SIGTERM starts the graceful drain (shutdown.drain_timeout, 8 s by default, within the
# 10 s that docker stop waits before SIGKILL).
STOPSIGNAL SIGTERM
# `wsvisor --health` reads the configuration as the server does (the same --config, then
# PORT, WSVISOR_* and --set), so it probes /health/live on the port the server really
# listens on, however that was set, and gives up after 2 s, inside --timeout. Arguments
# given to `docker run IMAGE --set ...` reach only the ENTRYPOINT: set the port through
# PORT or WSVISOR_SERVER_PORT, or repeat them in --health-cmd. No --start-period
# (dockerfilelint 1.8 rejects the option, and start-up takes well under the 30 s that
# three failed probes need to mark the container unhealthy). podman keeps a HEALTHCHECK
# only in the docker image format: `podman build --format docker`.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["/usr/local/bin/wsvisor", "--health", "--config", "/etc/wsvisor/wsvisor.toml"]
ENTRYPOINT ["/usr/local/bin/wsvisor", "--config", "/etc/wsvisor/wsvisor.toml"]
