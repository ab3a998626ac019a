#!/usr/bin/env bash
# The main job: installs what is missing, builds openMosixview, installs the
# binaries under /usr/local, sets up /etc/openmosix for the local admin (root's
# SSH key gets the admin role), starts the local agent (openmosixd) unless it
# already runs, and shows the cluster status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/main.sh: openmosixd runs as root; run this with sudo" >&2
  exit 1
fi
echo "== building (release)"
cargo build --release --workspace --bins --quiet
install -m 0755 target/release/openmosixd /usr/local/sbin/openmosixd
install -m 0755 target/release/mosctl /usr/local/bin/mosctl
install -m 0755 target/release/openmosix-lab /usr/local/bin/openmosix-lab

install -d -m 0700 /etc/openmosix /var/lib/openmosix /run/openmosix
install -d -m 0750 /var/log/openmosix
# root's key administers the local agent (ssh-keygen's default location).
if [ ! -f /root/.ssh/id_ed25519 ]; then
  install -d -m 0700 /root/.ssh
  ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname) openmosix admin" -f /root/.ssh/id_ed25519
fi
pub=$(cut -d' ' -f1,2 /root/.ssh/id_ed25519.pub)
touch /etc/openmosix/authorized_keys
chmod 0600 /etc/openmosix/authorized_keys
grep -qF "$pub" /etc/openmosix/authorized_keys || echo "admin $pub root@$(hostname)" >> /etc/openmosix/authorized_keys

pidfile=/run/openmosix/openmosixd.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "== openmosixd already runs (PID $(cat "$pidfile"))"
elif [ -d /run/systemd/system ]; then
  install -m 0644 assets/systemd/openmosixd.service /etc/systemd/system/openmosixd.service
  systemctl daemon-reload
  systemctl enable --now openmosixd
else
  echo "== starting openmosixd (log: /var/log/openmosix/openmosixd.log)"
  setsid /usr/local/sbin/openmosixd >>/var/log/openmosix/openmosixd.log 2>&1 </dev/null &
fi
for _ in $(seq 1 100); do
  mosctl isup >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== mosctl status"
mosctl status
echo "== mosctl nodes"
mosctl nodes
echo
echo "openmosixd runs as PID $(cat "$pidfile"); stop it with: kill \$(cat $pidfile)"
