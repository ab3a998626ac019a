#!/usr/bin/env bash
# Builds the Debian package `openmosix`: the node agent (openmosixd and its
# helpers), the command-line and terminal tools (mosctl, migrate, mosrun and
# its wrappers, mps, mosmon, mtop), the history collector, their systemd
# units, /etc/openmosix and /etc/default/openmosixd, and maintainer scripts
# that start nothing without a cluster key and make one only when asked
# (OPENMOSIX_NEW_CLUSTER_KEY=1). The desktop app is not in it (it needs X).
#
#   scripts/build-deb.sh [--profile release|debug] [--out DIR]
#
# Prints the package's path. Needs cargo and dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# The whole workspace's binaries, as scripts/main.sh and the tests build
# them: the same features, so nothing is built twice.
case "$profile" in
  release) cargo build --release --quiet --workspace --bins; bin=target/release ;;
  debug) cargo build --quiet --workspace --bins; bin=target/debug ;;
  *) echo "build-deb.sh: --profile is release or debug" >&2; exit 2 ;;
esac

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

source scripts/binaries.sh
for b in "${SYSTEM_BINARIES[@]}"; do
  install -D -m 0755 "$bin/$b" "$root/usr/sbin/$b"
done
for b in "${TOOL_BINARIES[@]}"; do
  install -D -m 0755 "$bin/$b" "$root/usr/bin/$b"
done
for w in "${MOSRUN_LINKS[@]}"; do
  ln -s mosrun "$root/usr/bin/$w"
done
for w in "${MOSCTL_LINKS[@]}"; do
  ln -s mosctl "$root/usr/bin/$w"
done

# The units of assets/systemd, for /usr/sbin, with the packages' rules: the
# agent starts only once the node has the cluster's key (else it would make
# a key of its own and form a cluster of one), with the flags of
# /etc/default/openmosixd; the collector once it has its key.
units="$root/lib/systemd/system"
mkdir -p "$units"
sed -e 's#/usr/local/sbin/#/usr/sbin/#g' \
    -e 's#^Documentation=.*#Documentation=file:///usr/share/doc/openmosix/ARCHITECTURE.md.gz#' \
    -e 's#^\(Wants=network-online.target\)$#\1\nConditionPathExists=/etc/openmosix/cluster_key#' \
    -e 's#^ExecStart=/usr/sbin/openmosixd$#EnvironmentFile=-/etc/default/openmosixd\nExecStart=/usr/sbin/openmosixd $OPENMOSIXD_ARGS#' \
    assets/systemd/openmosixd.service > "$units/openmosixd.service"
sed -e 's#/usr/local/sbin/#/usr/sbin/#g' \
    -e 's#^Documentation=.*#Documentation=file:///usr/share/doc/openmosix/ARCHITECTURE.md.gz#' \
    -e 's#^\(Wants=network-online.target\)$#\1\nConditionPathExists=/etc/openmosix/collector_key#' \
    assets/systemd/openmosixcollector.service > "$units/openmosixcollector.service"
chmod 0644 "$units"/*.service
grep -q '^ConditionPathExists=/etc/openmosix/cluster_key$' "$units/openmosixd.service"
grep -q '^ExecStart=/usr/sbin/openmosixd \$OPENMOSIXD_ARGS$' "$units/openmosixd.service"

install -D -m 0644 /dev/stdin "$root/etc/default/openmosixd" <<'EOF'
# Flags for openmosixd (see `openmosixd --help`), read by its systemd unit.
# Examples: --metrics (Prometheus on 127.0.0.1:9466), --balance off,
# --discovery off, --image-space 4096.
OPENMOSIXD_ARGS=""
EOF
install -d -m 0700 "$root/etc/openmosix"
install -D -m 0644 assets/openmosix.map.example "$root/usr/share/doc/openmosix/examples/openmosix.map"
install -D -m 0644 assets/grafana/openmosix.json "$root/usr/share/openmosix/grafana/openmosix.json"
for d in README.md ARCHITECTURE.md docs/PROTOCOL.md; do
  install -D -m 0644 "$d" "$root/usr/share/doc/openmosix/$(basename "$d")"
  gzip -9n "$root/usr/share/doc/openmosix/$(basename "$d")"
done
install -D -m 0644 /dev/stdin "$root/usr/share/doc/openmosix/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: openmosixview
License: GPL-2.0-or-later
Files: *
Copyright: the openMosixview developers
License: GPL-2.0-or-later
 On Debian systems, the full text is in /usr/share/common-licenses/GPL-2.
EOF

mkdir -p "$root/DEBIAN"
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: openmosix
Version: $version
Architecture: $arch
Maintainer: openMosixview developers <openmosix@example.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, util-linux
Recommends: criu (>= 4.1), openssh-client
Suggests: postgresql, prometheus
Section: admin
Priority: optional
Description: openMosix cluster: process migration between nodes with CRIU
 The node agent openmosixd samples its node, keeps the openMosix admin
 state, gossips load with the other nodes, balances load by moving running
 processes (CRIU) and serves /proc/hpc over authenticated SSH JSON-RPC.
 With it: mosctl, migrate, mosrun (and nomig, runon, cpujob, ...), mps,
 mosmon and mtop, and the history collector openmosixcollector.
EOF
echo /etc/default/openmosixd > "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"

deb="$out/openmosix_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
