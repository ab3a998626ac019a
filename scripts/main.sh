#!/usr/bin/env bash
# The main job: installs what is missing, builds openMosixview, installs the
# binaries under /usr/local, brings up a 4-node lab cluster on this machine
# (one network namespace and agent per node), shows it, and migrates a job
# around it while openmosixcollector records the cluster's history.
# Finally it opens openmosixview attached to the lab (on Xvfb, with a
# screenshot, when there is no desktop).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/main.sh: openmosixd runs as root; run this with sudo" >&2
  exit 1
fi
echo "== building (release)"
cargo build --release --workspace --bins --quiet
source scripts/binaries.sh
for b in "${SYSTEM_BINARIES[@]}"; do
  install -m 0755 "target/release/$b" "/usr/local/sbin/$b"
done
# The tools, and for the lab and the desktop the two the package leaves out.
for b in "${TOOL_BINARIES[@]}" openmosix-lab openmosixview; do
  install -m 0755 "target/release/$b" "/usr/local/bin/$b"
done
for w in "${MOSRUN_LINKS[@]}"; do
  ln -sfn mosrun "/usr/local/bin/$w"
done
for w in "${MOSCTL_LINKS[@]}"; do
  ln -sfn mosctl "/usr/local/bin/$w"
done
# The analyzer and the migration monitor alone, under their original names.
ln -sfn openmosixview /usr/local/bin/openmosixanalyzer
ln -sfn openmosixview /usr/local/bin/openmosixmigmon
install -d -m 0700 /etc/openmosix /var/lib/openmosix
install -d -m 0755 /run/openmosix
install -m 0644 assets/systemd/openmosixd.service /etc/openmosix/openmosixd.service.example
install -m 0644 assets/systemd/openmosixcollector.service /etc/openmosix/openmosixcollector.service.example

# The lab: a 4-node cluster on this machine, one network namespace per node.
lab=lab
labdir=/var/lib/openmosix/lab/$lab
# A lab started before this build runs the old agents: start it anew.
agent_bin=/usr/local/sbin/openmosixd
if [ -d "$labdir" ] && openmosix-lab status --name "$lab" >/dev/null 2>&1 \
  && ! [ "$agent_bin" -nt "$labdir/lab.json" ]; then
  echo "== lab \`$lab\` already runs"
else
  [ -d "$labdir" ] && openmosix-lab down --name "$lab" || true
  echo "== starting the lab cluster (4 nodes)"
  openmosix-lab up --nodes 4 --name "$lab"
fi
export OPENMOSIX_NODE=10.77.0.1:4660 OPENMOSIX_KEY=$labdir/admin_key OPENMOSIX_KNOWN_HOSTS=$labdir/known_hosts
for _ in $(seq 1 100); do
  [ "$(mosctl isup 2>/dev/null)" = yes ] && break
  sleep 0.1
done
sleep 2 # let gossip settle so every node sees the others
echo "== the cluster"
mosctl nodes
echo "== the history collector (SQLite under /var/lib/openmosix/history)"
collector_args=(--seed 10.77.0.1:4660 --key "$labdir/monitor_key" --known-hosts "$labdir/known_hosts")
if openmosixcollector --status >/dev/null 2>&1; then
  echo "openmosixcollector already runs"
else
  openmosixcollector -d "${collector_args[@]}"
fi
echo "== a job migrating around the cluster"
demo=$labdir/demo
install -d -m 0700 "$demo"
pid=$(cd "$demo" && mosrun --detach -o counter.out sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done')
echo "started job $pid on node 1 (output: $demo/counter.out)"
for to in 2 3 4 home; do
  sleep 0.5
  migrate "$pid" "$to"
done
sleep 1
echo "last lines of its output, continuous across the moves:"
tail -n 3 "$demo/counter.out"
sleep 1
openmosixcollector -n "demo job moved around the lab" >/dev/null
echo "== a few jobs of node 1 left on the other nodes (for the migration monitor)"
for to in 2 2 3 4 4 4; do
  (cd "$demo" && runon "$to" --detach -o sleepers.out sleep 1800) | sed "s/^/job /; s/\$/ on node $to/"
done
echo "collector: $(openmosixcollector --status)"
echo "== openmosixview attached to the lab"
view_args=(--node 10.77.0.1:4660 --key "$labdir/admin_key" --known-hosts "$labdir/known_hosts"
  --collector-arg=--seed --collector-arg=10.77.0.1:4660 --collector-arg=--key --collector-arg="$labdir/monitor_key"
  --collector-arg=--known-hosts --collector-arg="$labdir/known_hosts")
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  nohup openmosixview "${view_args[@]}" >"$labdir/openmosixview.log" 2>&1 &
  echo "openmosixview runs (PID $!; log $labdir/openmosixview.log)"
else
  # No desktop here: open the window on a private Xvfb display and keep a
  # picture of it; run `openmosixview ${view_args[*]:0:6}` from a desktop session.
  : >"$labdir/xvfb.display"
  Xvfb -displayfd 3 -screen 0 1280x1024x24 -nolisten tcp 3>"$labdir/xvfb.display" 2>/dev/null &
  xvfb_pid=$!
  for _ in $(seq 1 100); do [ -s "$labdir/xvfb.display" ] && break; sleep 0.1; done
  display=$(head -n1 "$labdir/xvfb.display")
  DISPLAY=":$display" openmosixview "${view_args[@]}" --screenshot "$labdir/openmosixview.png" \
    >"$labdir/openmosixview.log" 2>&1 || echo "openmosixview failed: see $labdir/openmosixview.log"
  # The history the collector wrote, in the analyzer and the process history.
  DISPLAY=":$display" openmosixanalyzer --screenshot "$labdir/analyzer.png" \
    >>"$labdir/openmosixview.log" 2>&1 || echo "the analyzer failed: see $labdir/openmosixview.log"
  DISPLAY=":$display" openmosixview --process-history --screenshot "$labdir/history.png" \
    >>"$labdir/openmosixview.log" 2>&1 || echo "the process history failed: see $labdir/openmosixview.log"
  # The migration monitor: node 1's jobs around the penguins that run them.
  DISPLAY=":$display" openmosixmigmon "${view_args[@]}" --screenshot "$labdir/migmon.png" \
    >>"$labdir/openmosixview.log" 2>&1 || echo "the migration monitor failed: see $labdir/openmosixview.log"
  kill "$xvfb_pid" 2>/dev/null || true
  rm -f "$labdir/xvfb.display"
  echo "no display: openmosixview ran on Xvfb; its window is in $labdir/openmosixview.png,"
  echo "the analyzer's in $labdir/analyzer.png, the process history's in $labdir/history.png"
  echo "and the migration monitor's in $labdir/migmon.png"
fi
echo
echo "The lab runs. Talk to it with:"
echo "  export OPENMOSIX_NODE=$OPENMOSIX_NODE OPENMOSIX_KEY=$OPENMOSIX_KEY OPENMOSIX_KNOWN_HOSTS=$OPENMOSIX_KNOWN_HOSTS"
echo "  mosctl nodes; migrate $pid balance; mosrun -2 -o out.txt ./program; mosctl --node 10.77.0.2:4660 expel"
echo "Any local user reaches a node without a key, on their own processes:"
echo "  mosctl --socket /run/openmosix-lab/$lab/node1/agent.sock whoami; mosrun --socket /run/openmosix-lab/$lab/node1/agent.sock --detach CMD"
echo "The collector records the lab's history: openmosixcollector -n LABEL | -r | -k"
echo "Stop it (agents and jobs) with: openmosixcollector -k; openmosix-lab down --name $lab"
