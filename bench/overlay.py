#!/usr/bin/env python3
"""Cross-host vs same-host traffic over tether's overlay (docs/benchmarks.md, "Overlay").

Two simulated hosts (network namespaces h1, h2, each with eth0 into an underlay bridge in a
third namespace, MTU 1500), the bridge plugin with `overlay` making the containers (c1a, c1b on
h1; c2a on h2), and tether-bench-overlay-sync wiring the hosts' VXLAN devices to each other --
the same overlay::sync_all tether-agent runs on a peer-set change. Then, between namespaces:
ping RTT (median of N) and iperf3 TCP throughput, same host (c1a -> c1b, through the bridge) and
across hosts (c1a -> c2a, bridge -> VXLAN -> underlay -> VXLAN -> bridge).

  bench/overlay.py <build-dir> [--seconds 5] [--pings 200] [--json out.json]
Everything is named with a per-run prefix and removed at the end, on failure too."""
import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = "ob" + secrets.token_hex(2)
UL = "192.168.61"


def sh(*cmd, ns=None, check=True, input=None):
    argv = (["ip", "netns", "exec", ns] if ns else []) + [str(c) for c in cmd]
    p = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise SystemExit(f"{argv}: {p.stderr.strip()}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--json")
    a = ap.parse_args()
    bindir = Path(a.build).resolve() / "bin"
    sync_tool = bindir / "tether-bench-overlay-sync"
    work = Path(tempfile.mkdtemp(prefix=f"{RUN}-"))
    namespaces, servers = [], []

    def netns(name):
        sh("ip", "netns", "add", f"{RUN}-{name}")
        namespaces.append(f"{RUN}-{name}")
        sh("ip", "link", "set", "lo", "up", ns=f"{RUN}-{name}")
        return f"{RUN}-{name}"

    try:
        ul = netns("ul")
        sh("ip", "link", "add", "ul0", "type", "bridge", ns=ul)
        sh("ip", "link", "set", "ul0", "up", ns=ul)
        hosts = {}
        for i in (1, 2):
            h = netns(f"h{i}")
            sh("ip", "link", "add", "eth0", "netns", h, "type", "veth", "peer", "name", f"p{i}",
               ns=ul)
            sh("ip", "link", "set", f"p{i}", "master", "ul0", "up", ns=ul)
            sh("ip", "addr", "add", f"{UL}.{10 + i}/24", "dev", "eth0", ns=h)
            sh("ip", "link", "set", "eth0", "up", ns=h)
            d = work / f"h{i}"
            (d / "ov").mkdir(parents=True)
            (d / "cluster.json").write_text(json.dumps(
                {"etcd": ["http://127.0.0.1:2379"], "node": f"h{i}", "address": f"{UL}.{10 + i}"}))
            # The cluster range: with cluster-mode host-local the IPAM subnet is this range and
            # the block is carved from it; here each host's block is its host-local subnet.
            (d / "ov" / "4242.json").write_text(json.dumps(
                {"device": "tvx4242", "vni": 4242, "port": 4789, "local": f"{UL}.{10 + i}",
                 "mtu": 0, "ranges": ["10.40.0.0/16"]}))
            hosts[i] = (h, d)

        def add(i, name):
            h, d = hosts[i]
            c = netns(name)
            conf = {"cniVersion": "1.1.0", "name": "ovbench", "type": "bridge",
                    "bridge": "tbr0", "isDefaultGateway": True, "nftTable": RUN,
                    "stateDir": str(d / "state"), "overlay": {"vni": 4242},
                    "overlayDir": str(d / "ov"), "cluster": str(d / "cluster.json"),
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.40.{i}.0/24"}]],
                             "dataDir": str(d / "ipam")}}
            env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": name, "CNI_NETNS": f"/run/netns/{c}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": str(bindir), "PATH": os.environ["PATH"]}
            p = subprocess.run(["ip", "netns", "exec", h, str(bindir / "bridge")],
                               input=json.dumps(conf), capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise SystemExit(f"ADD {name}: {p.stdout} {p.stderr}")
            return c, json.loads(p.stdout)["ips"][0]["address"].split("/")[0]

        c1a, ip1a = add(1, "c1a")
        c1b, ip1b = add(1, "c1b")
        c2a, ip2a = add(2, "c2a")
        peers = [{"node": "h1", "address": f"{UL}.11", "blocks": ["10.40.1.0/24"]},
                 {"node": "h2", "address": f"{UL}.12", "blocks": ["10.40.2.0/24"]}]
        (work / "peers.json").write_text(json.dumps(peers))
        for i, (h, d) in hosts.items():
            sh(sync_tool, d / "ov", work / "peers.json", f"h{i}", ns=h)
        mtu = int(sh("cat", "/sys/class/net/eth0/mtu", ns=c1a))

        def rtt(src, dst):
            out = sh("ping", "-c", a.pings, "-i", "0.005", "-W", "1", dst, ns=src)
            samples = [float(l.split("time=")[1].split()[0]) for l in out.splitlines()
                       if "time=" in l]
            return statistics.median(samples), len(samples)

        def tput(dst_ns, dst_ip, src):
            p = subprocess.Popen(["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1", "-B",
                                  dst_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            servers.append(p)
            time.sleep(0.3)
            out = json.loads(sh("iperf3", "-c", dst_ip, "-t", a.seconds, "-J", ns=src))
            p.wait(timeout=10)
            return out["end"]["sum_received"]["bits_per_second"] / 1e9

        res = {"mtu": mtu, "pings": a.pings, "seconds": a.seconds}
        res["same_rtt_ms"], n1 = rtt(c1a, ip1b)
        res["cross_rtt_ms"], n2 = rtt(c1a, ip2a)
        res["replies"] = [n1, n2]
        res["same_gbps"] = tput(c1b, ip1b, c1a)
        res["cross_gbps"] = tput(c2a, ip2a, c1a)
        # No NAT across hosts: the receiver sees the sender's own address.
        srv = subprocess.Popen(["ip", "netns", "exec", c2a, "socat", "-T2",
                                f"TCP-LISTEN:7001,bind={ip2a}", "SYSTEM:echo $SOCAT_PEERADDR"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(srv)
        time.sleep(0.3)
        res["peer_seen_by_receiver"] = sh("socat", "-T2", "-", f"TCP:{ip2a}:7001", ns=c1a,
                                          input="").strip()
        res["sender"] = ip1a
        print(json.dumps(res, indent=1))
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        if res["peer_seen_by_receiver"] != ip1a:
            raise SystemExit("receiver did not see the sender's own address")
    finally:
        for p in servers:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in reversed(namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        left = [n for n in sh("ip", "netns", "list").split() if n.startswith(RUN)]
        if left:
            print(f"left behind: {left}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
