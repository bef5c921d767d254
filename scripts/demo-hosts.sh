#!/usr/bin/env bash
# make demo, part 2: one tether network across two simulated hosts. Each "host" is a network
# namespace with eth0 on an underlay switch (a bridge in a third namespace); the bridge plugin
# with "overlay" runs inside a host and gives its containers addresses of that host's block;
# the hosts' VXLAN devices are wired to each other by tether-bench-overlay-sync, the same sync
# tether-agent runs when etcd tells it about a peer. Everything is named tdemoh-* / under a temp
# dir and removed at the end, also when a step fails.
#   demo-hosts.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-build}")
BIN="$BUILD/bin"
WORK=$(mktemp -d /tmp/tether-demo-hosts.XXXXXX)
NS=(tdemoh-ul tdemoh-h1 tdemoh-h2 tdemoh-c1 tdemoh-c2)

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() {
  printf '\033[36m$ %s\033[0m\n' "$*"
  "$@" 2>&1 | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}
cleanup() {
  set +e
  bold "Cleaning up the two hosts"
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
  echo "    removed the hosts' and containers' namespaces (bridges, VXLAN devices, tables with them) and $WORK"
}
trap cleanup EXIT

for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n tdemoh-ul link add ul0 type bridge && ip -n tdemoh-ul link set ul0 up
for i in 1 2; do
  ip -n tdemoh-ul link add "p$i" type veth peer name eth0 netns "tdemoh-h$i"
  ip -n tdemoh-ul link set "p$i" master ul0 up
  ip -n "tdemoh-h$i" addr add "192.168.62.1$i/24" dev eth0
  ip -n "tdemoh-h$i" link set eth0 up
  mkdir -p "$WORK/h$i"
  echo "{\"etcd\": [\"http://192.168.62.1:2379\"], \"node\": \"h$i\", \"address\": \"192.168.62.1$i\"}" \
    >"$WORK/h$i/cluster.json"
done
bold "Two hosts, h1 (192.168.62.11) and h2 (192.168.62.12), each with its cluster file"
run cat "$WORK/h1/cluster.json"

conf() {  # host block
  cat <<JSON
{"cniVersion": "1.1.0", "name": "across", "type": "bridge", "bridge": "tether0",
 "isDefaultGateway": true, "ipMasq": true, "nftTable": "tdemoh", "stateDir": "$WORK/h$1/bridge",
 "overlay": {"vni": 4242}, "cluster": "$WORK/h$1/cluster.json", "overlayDir": "$WORK/h$1/ov",
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.44.$2.0/24"}]], "dataDir": "$WORK/h$1/ipam"}}
JSON
}
add() {  # host container block
  conf "$1" "$3" >"$WORK/$2.conf"
  # The cluster range; cluster-mode host-local would carve the host's block out of it.
  mkdir -p "$WORK/h$1/ov"
  [ -f "$WORK/h$1/ov/4242.json" ] || echo "{\"vni\": 4242, \"local\": \"192.168.62.1$1\", \"ranges\": [\"10.44.0.0/16\"]}" >"$WORK/h$1/ov/4242.json"
  printf '\033[36m$ ip netns exec tdemoh-h%s bridge < %s.conf   # CNI_COMMAND=ADD\033[0m\n' "$1" "$2"
  CNI_COMMAND=ADD CNI_CONTAINERID="$2" CNI_NETNS="/run/netns/tdemoh-$2" CNI_IFNAME=eth0 CNI_PATH="$BIN" \
    ip netns exec "tdemoh-h$1" "$BIN/bridge" <"$WORK/$2.conf" >"$WORK/$2.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('    %s on h%s got %s' % (sys.argv[2], sys.argv[3], r['ips'][0]['address']))" \
    "$WORK/$2.json" "$2" "$1"
}
bold "A container on each host joins the network \"across\" (bridge with \"overlay\": {\"vni\": 4242})"
conf 1 1 | sed 's/^/    /'
add 1 c1 1
add 2 c2 2
echo '[{"node":"h1","address":"192.168.62.11","blocks":["10.44.1.0/24"]},
       {"node":"h2","address":"192.168.62.12","blocks":["10.44.2.0/24"]}]' >"$WORK/peers.json"
bold "The peers as tether-agent sees them in etcd, synced into each host's kernel"
for i in 1 2; do run ip netns exec "tdemoh-h$i" "$BIN/tether-bench-overlay-sync" "$WORK/h$i/ov" "$WORK/peers.json" "h$i"; done
bold "On h1: the VXLAN device, the route to h2's block, its neighbour and FDB entry"
run ip -n tdemoh-h1 -d link show tvx4242
run ip -n tdemoh-h1 route show dev tvx4242
run ip -n tdemoh-h1 neigh show dev tvx4242
run bridge -n tdemoh-h1 fdb show dev tvx4242
bold "c1 (h1) reaches c2 (h2) by address; c2 sees c1's own address (no NAT between blocks)"
ip netns exec tdemoh-c2 socat TCP-LISTEN:7000,bind=10.44.2.2,fork 'SYSTEM:echo c2 sees $SOCAT_PEERADDR' &
SRV=$!
for _ in $(seq 50); do ip netns exec tdemoh-c2 ss -ltn | grep -q ':7000 ' && break; sleep 0.1; done
run ip netns exec tdemoh-c1 ping -c2 -W1 10.44.2.2
run ip netns exec tdemoh-c1 socat -T2 - TCP:10.44.2.2:7000
