#!/usr/bin/env bash
# Builds the Dockerfile's two base images, debian:bookworm and debian:bookworm-slim, with
# debootstrap and tags them locally under their Docker Hub names, for machines that
# cannot reach the registry (docker.io) but can reach a Debian mirror. The Dockerfile
# then builds unchanged: the engine finds the bases in its local storage and pulls
# nothing.
#
#   tests/image/debootstrap-base.sh [podman|docker]    (as root; 2 to 3 minutes)
#
# What comes out is close to Docker Hub's images (built by debuerreotype: minbase, the
# same apt sources, the slim one without docs, man pages and locales), with one
# difference kept on purpose: no /etc/apt/apt.conf.d/docker-clean. Without it apt keeps
# its caches, so the Dockerfile must clean them itself, and tests/image/run.sh checks
# that it does.
set -euo pipefail

engine=${1:-podman}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if [ "$(id -u)" -ne 0 ]; then
  echo "debootstrap-base: must run as root (debootstrap and chroot)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "debootstrap-base: needs debootstrap (apt-get install debootstrap)" >&2
  exit 1
}

work=$(mktemp -d /tmp/wsvisor-debootstrap.XXXXXX)
cleanup() {
  # An interrupted debootstrap can leave /proc or /sys mounted inside the tree: unmount
  # them first, and never let rm cross into another file system.
  local mounts
  mounts=$(findmnt -rn -o TARGET | grep "^$work/" | sort -r || true)
  for m in $mounts; do umount -l "$m" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
# With these, bash runs the cleanup only once the foreground command (debootstrap, which
# gets the same signal from its process group) has ended, never under its feet.
trap 'exit 130' INT
trap 'exit 143' TERM

echo "debootstrap-base: debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$work/full" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

# The sources Docker Hub's image has (updates and security too: the runtime stage
# installs libssl3 and must get its security fixes).
rm -f "$work/full/etc/apt/sources.list"
cat >"$work/full/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# debootstrap leaves its downloaded .debs and the package lists (about 80 MB); a base
# image ships neither.
chroot "$work/full" apt-get clean
rm -rf "$work/full/var/lib/apt/lists/"* "$work/full/var/cache/apt/"*.bin

# The slim variant: what debuerreotype's slimify does, dpkg told never to install docs,
# man pages and translations, and the ones already there removed.
cp -a "$work/full" "$work/slim"
cat >"$work/slim/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
(
  cd "$work/slim/usr/share"
  find doc -mindepth 1 ! -type d ! -name copyright -delete
  find doc -mindepth 1 -type d -empty -delete
  rm -rf groff/* info/* linda/* lintian/overrides/* man/*
  find locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
)

for variant in full slim; do
  tag=docker.io/library/debian:$suite
  [ "$variant" = slim ] && tag=$tag-slim
  echo "debootstrap-base: $engine import -> $tag"
  tar -C "$work/$variant" --numeric-owner -c . |
    "$engine" import --change 'CMD ["bash"]' - "$tag" >/dev/null 2>"$work/import.log" || {
    cat "$work/import.log" >&2
    exit 1
  }
done
