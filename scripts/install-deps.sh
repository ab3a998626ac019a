#!/usr/bin/env bash
# Installs what openMosixview's main job and tests need on a fresh Debian 12 machine,
# skipping whatever is already present: build tools, iproute2, OpenSSH client,
# PostgreSQL (server for the collector's tests and large sites), curl, tmux,
# promtool (the headless tools' tests) and debootstrap (the package's test), X11/OpenGL
# libraries and Xvfb (the desktop app and its window test), and CRIU >= 4.1 (built from Debian trixie's source tarball, because bookworm's
# CRIU 3.17 cannot handle kernels >= 6.13; see docs/INSTALL.md).
# Idempotent; needs root for apt-get and for installing CRIU into /usr/local/sbin.
set -euo pipefail

CRIU_VERSION=4.1.1
CRIU_SHA256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
# Our build carries scripts/criu-rlimits-from-proc.patch (checkpointing another
# user's process where root lacks CAP_SYS_RESOURCE); its version says so
# (4.1.1.4660: CRIU wants a number there; 4660 is the agent's port).
CRIU_LOCAL=4660
CRIU_PATCH=$(cd "$(dirname "$0")" && pwd)/criu-rlimits-from-proc.patch
CRIU_PREFIX=/usr/local
BUILD_ROOT=/var/cache/openmosix/build

log() { printf '[install-deps] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

criu_ok() {
  local bin
  bin=$(command -v criu 2>/dev/null) || return 1
  local v
  v=$("$bin" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
  [ -n "$v" ] || return 1
  # The patched build (see CRIU_LOCAL).
  case "$v" in *".$CRIU_LOCAL") ;; *) return 1 ;; esac
  # version >= 4.1 ?
  local major minor
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  [ "$major" -gt 4 ] || { [ "$major" -eq 4 ] && [ "$minor" -ge 1 ]; }
}

install_criu() {
  if criu_ok; then log "CRIU $(criu --version | sed -n 's/^Version: *//p') present"; return 0; fi
  if command -v criu >/dev/null 2>&1; then
    log "replacing $(command -v criu) ($(criu --version 2>/dev/null | sed -n 's/^Version: *//p')) with CRIU $CRIU_VERSION.$CRIU_LOCAL"
  fi
  apt_install ca-certificates debian-archive-keyring make gcc pkg-config \
    libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3-protobuf \
    libnl-3-dev libnet1-dev libcap-dev libaio-dev uuid-dev libgnutls28-dev libbsd-dev libnftables-dev \
    iproute2 iptables
  as_root install -d -m 0755 "$BUILD_ROOT"
  local tarball="$BUILD_ROOT/criu_${CRIU_VERSION}.orig.tar.xz"
  if ! echo "$CRIU_SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    local src=/etc/apt/sources.list.d/openmosix-trixie-src.sources
    if [ ! -f "$src" ]; then
      log "adding a deb-src entry for trixie (source packages only)"
      as_root tee "$src" >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
      as_root apt-get update -qq
    fi
    log "downloading CRIU $CRIU_VERSION source"
    # The .dsc and .debian.tar.xz answer 404 here and apt-get exits non-zero;
    # the orig tarball arrives, and its checksum below is what we trust.
    (cd "$BUILD_ROOT" && as_root apt-get source --download-only "criu/trixie" >/dev/null 2>&1) || true
    echo "$CRIU_SHA256  $tarball" | sha256sum -c --status \
      || { log "CRIU source tarball missing or checksum mismatch"; exit 1; }
  fi
  log "building CRIU $CRIU_VERSION (about a minute)"
  as_root rm -rf "$BUILD_ROOT/criu-$CRIU_VERSION"
  as_root tar -C "$BUILD_ROOT" -xf "$tarball"
  apt_install patch
  as_root patch -s -d "$BUILD_ROOT/criu-$CRIU_VERSION" -p1 <"$CRIU_PATCH"
  as_root make -s -C "$BUILD_ROOT/criu-$CRIU_VERSION" -j"$(nproc)" CRIU_VERSION_EXTRA="$CRIU_LOCAL" criu >/dev/null
  as_root install -m 0755 "$BUILD_ROOT/criu-$CRIU_VERSION/criu/criu" "$CRIU_PREFIX/sbin/criu"
  hash -r
  criu_ok || { log "installed CRIU does not report version >= 4.1"; exit 1; }
  log "CRIU $(criu --version | sed -n 's/^Version: *//p') installed in $CRIU_PREFIX/sbin"
}

# promtool (checks the agent's Prometheus metrics in the tests), taken out of
# Debian's prometheus package without installing the package: no Prometheus
# server gets installed or started.
install_promtool() {
  if command -v promtool >/dev/null 2>&1; then return 0; fi
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing promtool (from Debian's prometheus package) in /usr/local/bin"
  local dir="$BUILD_ROOT/prometheus"
  as_root rm -rf "$dir"
  as_root mkdir -p "$dir"
  # (apt warns that it downloads as root: the directory is root's.)
  (cd "$dir" && as_root apt-get download -qq prometheus >/dev/null 2>&1)
  as_root dpkg-deb -x "$dir"/prometheus_*.deb "$dir/root"
  as_root install -m 0755 "$dir/root/usr/bin/promtool" /usr/local/bin/promtool
  as_root rm -rf "$dir"
}

main() {
  apt_install openssh-client iproute2 procps util-linux curl tmux debootstrap
  # Debian's postinst may start its own cluster on port 5432; our tests use a
  # private instance (scripts/test-postgres.sh) and leave that one alone.
  apt_install postgresql
  # openmosixview: X11 and OpenGL (Mesa's software renderer works without a GPU),
  # and Xvfb for its window test and for headless machines.
  apt_install xvfb libgl1 libegl1 libgl1-mesa-dri libx11-xcb1 libxkbcommon-x11-0 \
    libxcursor1 libxrandr2 libxi6 fonts-dejavu-core
  install_criu
  install_promtool
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install the Rust toolchain (rustup) first"; exit 1
  fi
}

main "$@"
