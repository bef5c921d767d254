#!/usr/bin/env bash
# make demo: tether wiring "containers" (network namespaces) together, driven through libcni the
# way podman and containerd drive it. Prints each command as a person would type it, and what it
# shows. Everything it creates is named tdemo-* / under a temp dir and removed at the end, also
# when a step fails.
#   demo.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath "${1:-build}")

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo needs root: it creates network namespaces, a bridge and nftables tables" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/tether-demo.XXXXXX)
PREFIX="$WORK/prefix"
BIN="$PREFIX/opt/cni/bin"
NETCONF="$WORK/net.d"
export NETCONFPATH="$NETCONF" CNI_PATH="$BIN" CNI_CACHE_DIR="$WORK/cache"
CNITOOL="$BUILD/bin/tether-cnitool"
NET=10.123.45
NET2=10.123.46
CONTAINERS=(web1 web2)

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
# Shows a command, runs it, shows its output indented.
run() {
  printf '\033[36m$ %s\033[0m\n' "$*"
  "$@" 2>&1 | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}
# A container-side command, shown as the user would type it.
in_ctr() {
  local c=$1
  shift
  run ip netns exec "tdemo-$c" "$@"
}

cleanup() {
  set +e
  bold "Cleaning up"
  for net in demo demo-noicc; do
    for c in "${CONTAINERS[@]}"; do
      CNI_CONTAINERID="tdemo-$c" "$CNITOOL" del "$net" "/run/netns/tdemo-$c" >/dev/null 2>&1
    done
  done
  pkill -f "http.server 80 --bind" >/dev/null 2>&1
  for c in "${CONTAINERS[@]}"; do
    ip netns del "tdemo-$c" 2>/dev/null
    rm -rf "/etc/netns/tdemo-$c"
  done
  for pidfile in "$WORK"/dns/*.pid; do
    [ -f "$pidfile" ] && kill "$(head -1 "$pidfile")" 2>/dev/null
  done
  ip link del tdemo0 2>/dev/null
  ip link del tdemo1 2>/dev/null
  nft delete table inet tdemo-bridge 2>/dev/null
  nft delete table inet tdemo-portmap 2>/dev/null
  rm -rf "$WORK"
  echo "    removed namespaces, bridges, nftables tables, the DNS daemon and $WORK"
}
trap cleanup EXIT

bold "Installing tether into a temporary prefix"
run bash scripts/install.sh "$BUILD" "$PREFIX" /opt/cni/bin "$NETCONF" /usr
mkdir -p "$NETCONF"

conflist() {  # name bridge subnet icc
  cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    { "type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": true, "icc": $4,
      "nftTable": "tdemo-bridge", "stateDir": "$WORK/bridge",
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$3.0/24" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$WORK/ipam" } },
    { "type": "portmap", "capabilities": { "portMappings": true },
      "nftTable": "tdemo-portmap", "stateDir": "$WORK/portmap" },
    { "type": "dns-sidecar", "domainName": "tether.internal", "stateDir": "$WORK/dns",
      "capabilities": { "aliases": true } }
  ]
}
EOF
}
conflist demo tdemo0 "$NET" true >"$NETCONF/10-demo.conflist"
conflist demo-noicc tdemo1 "$NET2" false >"$NETCONF/20-demo-noicc.conflist"
bold "The network: bridge + host-local + portmap + dns-sidecar"
run cat "$NETCONF/10-demo.conflist"

# add CONTAINER NETWORK CAP_ARGS: what a runtime does when it starts a container.
add() {
  printf '\033[36m$ CNI_ARGS=K8S_POD_NAME=%s CAP_ARGS=%s tether-cnitool add %s /run/netns/tdemo-%s\033[0m\n' \
    "$1" "'$3'" "$2" "$1"
  CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=$1" CAP_ARGS="$3" CNI_CONTAINERID="tdemo-$1" \
    "$CNITOOL" add "$2" "/run/netns/tdemo-$1" >"$WORK/$1.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('    %s got %s, nameservers %s' % (sys.argv[2], r['ips'][0]['address'], r['dns'].get('nameservers')))" \
    "$WORK/$1.json" "$1"
  # A runtime writes the container's resolv.conf from the result; ip netns exec mounts this one.
  mkdir -p "/etc/netns/tdemo-$1"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['dns']; print(''.join('nameserver %s\n' % n for n in d.get('nameservers', [])) + 'search ' + ' '.join(d.get('search', [])))" \
    "$WORK/$1.json" >"/etc/netns/tdemo-$1/resolv.conf"
}

bold "Two containers, web1 and web2, join the network"
for c in "${CONTAINERS[@]}"; do ip netns add "tdemo-$c"; done
add web1 demo '{"aliases":{"demo":["www","web"]},"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}'
add web2 demo '{"aliases":{"demo":["web"]}}'

bold "They resolve and reach each other by name"
in_ctr web1 ping -c1 -W1 web2
in_ctr web2 ping -c1 -W1 web1.tether.internal
bold "A network-scoped alias (www belongs to web1) and a shared one (web: both answer, shuffled)"
in_ctr web2 dig +short www
in_ctr web2 dig +short web
in_ctr web2 dig +short web
in_ctr web2 dig +short web

bold "web1 serves HTTP on port 80, published on the host as 8080"
mkdir -p "$WORK/www" && echo "hello from web1" >"$WORK/www/index.html"
ip netns exec tdemo-web1 python3 -m http.server 80 --bind 0.0.0.0 -d "$WORK/www" >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec tdemo-web1 ss -ltn | grep -q ':80 ' && break; sleep 0.1; done
run curl -s --max-time 3 http://127.0.0.1:8080/
in_ctr web2 curl -s --max-time 3 http://web1/

bold "Now the same two containers on a network with \"icc\": false"
for c in "${CONTAINERS[@]}"; do
  CNI_CONTAINERID="tdemo-$c" "$CNITOOL" del demo "/run/netns/tdemo-$c"
done
add web1 demo-noicc '{}'
add web2 demo-noicc '{}'
ip1=$(python3 -c "import json; print(json.load(open('$WORK/web1.json'))['ips'][0]['address'].split('/')[0])")
ip2=$(python3 -c "import json; print(json.load(open('$WORK/web2.json'))['ips'][0]['address'].split('/')[0])")
bold "Aliases are network-scoped: on demo-noicc, web1 is still web1, but www is not there"
in_ctr web2 dig +short web1
in_ctr web2 dig +short www
bold "web1 can no longer reach web2 (this ping is expected to fail) ..."
in_ctr web1 ping -c1 -W1 "$ip2" || true
bold "... while the host still reaches both, and each still reaches its gateway"
run ping -c1 -W1 "$ip1"
run ping -c1 -W1 "$ip2"
in_ctr web1 ping -c1 -W1 "$NET2.1"
