#!/usr/bin/env bash
# Installs every Debian package that tether's build, tests, demo and benchmarks use.
# Idempotent: packages already installed are skipped, and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang libclang-rt-14-dev ccache clang-format clang-tidy
  nlohmann-json3-dev libnl-3-dev libnl-route-3-dev libnftnl-dev libmnl-dev
  libspdlog-dev libfmt-dev doctest-dev libldns-dev libasio-dev libcli11-dev
  # tests: namespaces, reading back nftables state, traffic, DNS clients
  iproute2 nftables conntrack procps psmisc socat dnsutils curl iputils-ping python3 python3-pytest
  # multi-host: etcd for the cluster tests, libcurl (dlopen'd by the etcd client), iperf3
  etcd-server etcd-client libcurl4-openssl-dev iperf3
  # reference implementations compared against
  containernetworking-plugins golang-github-containernetworking-plugin-dnsname dnsmasq-base aardvark-dns
  netavark
  # runtimes' own code: libcni driver, podman, containerd and the CRI client's grpc/protobuf
  golang-go golang-github-appc-cni-dev podman runc busybox-static
  containerd golang-google-grpc-dev golang-google-protobuf-dev
  # packaging: CPack's DEB generator (file, dpkg-shlibdeps), Debian policy checks
  file lintian
  # benchmarks: load generator, plot, the profile (perf's scheduler tracepoints, strace)
  dnsperf python3-matplotlib time linux-perf strace
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
