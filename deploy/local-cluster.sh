#!/usr/bin/env bash
# A multi-node Ray cluster on this machine, brought up by Ray's own launcher (`ray up`, local
# provider over SSH), for trying the cluster path without a cloud account.
#
#   deploy/local-cluster.sh up                       # head + 2 workers (CATAL_CLUSTER_WORKERS)
#   deploy/local-cluster.sh status                   # last line: the number of alive Ray nodes
#   deploy/local-cluster.sh submit CONFIG [--set k=v ...]   # `ray submit` a campaign
#   deploy/local-cluster.sh kill-node N              # kill worker N's Ray processes (node loss)
#   deploy/local-cluster.sh down                     # `ray down`, then remove the hosts
#
# Each node is a "host": its own network namespace (veth on the bridge catal-br, 10.77.0.0/24,
# reachable from this machine only), PID namespace (so `ray stop` on one node stops only that
# node), host name (catal-nodeN) and private home, /tmp/ray and /dev/shm, with an sshd the launcher logs into. Needs root,
# iproute2, openssh-server and rsync (Debian: apt-get install -y iproute2 openssh-server rsync).
# The nodes share the filesystem: the repository, its .venv and ~/.ray/auth_token.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${CATAL_CLUSTER_DIR:-/var/tmp/catal-cluster}"
WORKERS="${CATAL_CLUSTER_WORKERS:-2}"
WORKER_CPUS="${CATAL_CLUSTER_WORKER_CPUS:-2}"
VENV="${CATAL_VENV:-$REPO/.venv}"
NET=10.77.0
BRIDGE=catal-br
RAY="$VENV/bin/ray"
CLUSTER_YAML="$STATE/cluster.yaml"

die() { echo "local-cluster: $*" >&2; exit 2; }
say() { echo "local-cluster: $*" >&2; }

node_ip() { echo "$NET.$((10 + $1))"; }  # node 0 is the head
ns_name() { echo "catal-n$1"; }

need_tools() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  for t in ip sshd rsync ssh ssh-keygen unshare; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] \
      || die "$t not found (apt-get install -y iproute2 openssh-server openssh-client rsync)"
  done
  [ -x "$RAY" ] || die "$RAY not found (run make first, or set CATAL_VENV)"
}

ssh_node() {  # ssh_node N CMD...
  ssh -i "$STATE/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=5 "root@$(node_ip "$1")" "${@:2}"
}

start_host() {  # start_host N: namespace, veth on the bridge, sshd in fresh PID + mount namespaces
  local i=$1 ns ip
  ns=$(ns_name "$i"); ip=$(node_ip "$i")
  ip netns add "$ns"
  ip link add "catal-v$i" type veth peer name eth0 netns "$ns"
  ip link set "catal-v$i" master "$BRIDGE" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # a default route, as hosts have: Ray finds its node IP from the route out
  ip -n "$ns" route add default via "$NET.1"
  mkdir -p "$STATE/node$i/ray" "$STATE/node$i/home"
  # the node's "image": the virtual environment on the login PATH, Ray token auth on
  printf 'export PATH=%s/bin:$PATH RAY_AUTH_MODE=token\n' "$VENV" >"$STATE/node$i/home/.bashrc"
  # the venv's base interpreter may live under the home the node's own home hides (pyenv)
  local base keep=":"
  base=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')
  if [[ "$base" == "$HOME"/* ]]; then
    mkdir -p "$STATE/node$i/home/${base#"$HOME"/}"
    keep="mount --bind '$base' '$STATE/node$i/home/${base#"$HOME"/}'"
  fi
  # PID namespace: `ray stop` sees only this node; private home, /tmp/ray and /dev/shm: Ray's
  # session files, object store and bootstrap files are per node, as on separate machines
  setsid ip netns exec "$ns" unshare --pid --fork --mount --uts --propagation private sh -c "
    hostname catal-node$i
    mount -t proc proc /proc
    mount --bind '$STATE/node$i/ray' /tmp/ray
    $keep
    mount --rbind '$STATE/node$i/home' '$HOME'
    mount -t tmpfs -o size=2g tmpfs /dev/shm
    exec /usr/sbin/sshd -D -e -f '$STATE/sshd_config'" >"$STATE/node$i/sshd.log" 2>&1 &
  echo $! >"$STATE/node$i/pid"
}

cmd_up() {
  need_tools
  [ -e "$STATE/cluster.yaml" ] && die "a cluster is already up ($STATE); run: $0 down"
  mkdir -p "$STATE" /tmp/ray /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$STATE/id_ed25519" <<<y >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key" <<<y >/dev/null
  cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
  [ -s "$HOME/.ray/auth_token" ] || RAY_AUTH_MODE=token "$RAY" get-auth-token --generate >/dev/null
  cat >"$STATE/sshd_config" <<EOF
ListenAddress 0.0.0.0
HostKey $STATE/host_key
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile none
EOF
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in $(seq 0 "$WORKERS"); do start_host "$i"; done
  for i in $(seq 0 "$WORKERS"); do
    for _ in $(seq 50); do ssh_node "$i" true 2>/dev/null && break; sleep 0.2; done
    ssh_node "$i" true || die "node $i: sshd did not answer (see $STATE/node$i/sshd.log)"
  done
  local workers=""
  for i in $(seq 1 "$WORKERS"); do workers="$workers${workers:+, }\"$(node_ip "$i")\""; done
  sed -e "s|@HEAD_IP@|$(node_ip 0)|g" -e "s|@WORKER_IPS@|$workers|" -e "s|@SSH_KEY@|$STATE/id_ed25519|" \
    -e "s|@N_WORKERS@|$WORKERS|" -e "s|@WORKER_CPUS@|$WORKER_CPUS|" \
    "$REPO/deploy/local-cluster.yaml" >"$CLUSTER_YAML"
  # autoscaler v1: v2 (the default since Ray 2.50) launches one local-provider worker and stops
  RAY_UP_enable_autoscaler_v2=0 RAY_AUTH_MODE=token "$RAY" up -y --no-config-cache "$CLUSTER_YAML" >"$STATE/up.log" 2>&1 \
    || { tail -30 "$STATE/up.log" >&2; die "ray up failed (log: $STATE/up.log)"; }
  # the head's autoscaler starts the workers over SSH: wait until every node has joined
  local want=$((WORKERS + 1)) alive=0
  for _ in $(seq 40); do
    alive=$(alive_nodes 2>/dev/null || echo 0)
    [ "$alive" -ge "$want" ] && break
    sleep 5
  done
  [ "$alive" -ge "$want" ] || die "only $alive of $want Ray nodes joined (logs: $STATE/node*/ray)"
  say "up: $want nodes, head $(node_ip 0), dashboard http://$(node_ip 0):8265"
}

alive_nodes() {  # the number of alive Ray nodes, as the head's GCS reports it
  ssh_node 0 "timeout 60 python -c 'import ray; ray.init(address=\"auto\", log_to_driver=False); \
print(sum(n[\"Alive\"] for n in ray.nodes()))'" 2>/dev/null | tail -1
}

cmd_status() {
  [ -e "$CLUSTER_YAML" ] || { echo "no cluster ($STATE)"; echo 0; return; }
  ssh_node 0 "timeout 60 ray status" 2>/dev/null | sed -n '/Node status/,/Pending/p' || true
  alive_nodes || echo 0
}

cmd_submit() {
  [ -e "$CLUSTER_YAML" ] || die "no cluster; run: $0 up"
  [ $# -ge 1 ] || die "usage: $0 submit CONFIG [--set key=value ...]"
  local config
  config="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  RAY_AUTH_MODE=token "$RAY" submit "$CLUSTER_YAML" "$REPO/deploy/submit_campaign.py" \
    "$REPO" "$config" "${@:2}"
}

cmd_kill_node() {  # kill-node N: SIGKILL every Ray process of worker N (its sshd stays)
  [ $# -eq 1 ] && [ "$1" -ge 1 ] || die "usage: $0 kill-node N (1..$WORKERS)"
  local pids
  pids=$(ip netns pids "$(ns_name "$1")" | while read -r p; do
    grep -qa -e ray -e python "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done || true)
  [ -n "$pids" ] || die "node $1 runs no Ray processes"
  # shellcheck disable=SC2086
  kill -9 $pids
  say "killed $(echo "$pids" | wc -w) Ray processes on node $1 ($(node_ip "$1"))"
}

cmd_down() {
  if [ -e "$CLUSTER_YAML" ]; then
    RAY_AUTH_MODE=token timeout 120 "$RAY" down -y "$CLUSTER_YAML" >"$STATE/down.log" 2>&1 || true
  fi
  for i in $(seq 0 16); do
    local ns
    ns=$(ns_name "$i")
    ip netns list 2>/dev/null | grep -qw "$ns" || continue
    # shellcheck disable=SC2046
    kill -9 $(ip netns pids "$ns") 2>/dev/null || true
    ip netns del "$ns"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -f /tmp/ray/cluster-catal-local.state /tmp/ray/cluster-catal-local.lock  # the launcher's record
  rm -rf "$STATE"
  say "down"
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  submit) shift; cmd_submit "$@" ;;
  kill-node) shift; cmd_kill_node "$@" ;;
  down) cmd_down ;;
  *) die "usage: $0 up | status | submit CONFIG [--set key=value ...] | kill-node N | down" ;;
esac
