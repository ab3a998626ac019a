#!/usr/bin/env bash
# Runs every check and test of openMosixview on this machine: installs what is
# missing (scripts/install-deps.sh), then format, lints, build, and the whole
# test suite (unit tests, system tests with real agents as root, and the
# collector's store tests on SQLite and on a private PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the system tests need root (signals, renice, CRIU); run it with sudo" >&2
  exit 1
fi
export CARGO_TERM_COLOR=never
# A one-off build gains nothing from incremental caches, which take gigabytes.
export CARGO_INCREMENTAL=0
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo build (binaries used by the system tests)"
cargo build --workspace --bins --quiet
echo "== disk after the build: target $(du -sh target | cut -f1), free $(df -h --output=avail . | tail -1 | tr -d ' ')"
echo "== PostgreSQL for the collector's store tests (private instance on loopback)"
OPENMOSIX_TEST_PG=$(bash scripts/test-postgres.sh start)
export OPENMOSIX_TEST_PG
trap 'bash scripts/test-postgres.sh stop' EXIT
echo "== cargo test"
cargo test --workspace --no-fail-fast
