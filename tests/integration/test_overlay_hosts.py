"""One overlay network across simulated hosts, with real traffic. Each host is a namespace whose
eth0 is a port of an underlay bridge (in a namespace of its own); the bridge plugin with
`overlay` runs inside a host; the hosts' kernels are wired by tether-bench-overlay-sync, which
runs overlay::sync_all -- what tether-agent does with the peer set it reads from etcd (the
etcd/agent side is the cluster work's, tests/multihost). Shown: containers on three hosts reach
each other both ways with no NAT, a fourth host joins without any other host's files changing,
a removed host leaves every other host's routes, two VNIs never reach each other across hosts,
and nothing is left."""
import json
import os
import subprocess
import time

import pytest

from conftest import BIN, RUN, sh

UL = "192.168.63"
SYNC = BIN / "tether-bench-overlay-sync"


class Cluster:
    def __init__(self, netns, tmp):
        self.netns, self.tmp = netns, tmp
        self.ul = netns("ul")
        self.ul.run("ip", "link", "add", "ul0", "type", "bridge")
        self.ul.run("ip", "link", "set", "ul0", "up")
        self.hosts = {}
        self.servers = []

    def host(self, i):
        h = self.netns(f"h{i}")
        self.ul.run("ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0",
                    "netns", h.name)
        self.ul.run("ip", "link", "set", f"p{i}", "master", "ul0", "up")
        h.run("ip", "addr", "add", f"{UL}.{10 + i}/24", "dev", "eth0")
        h.run("ip", "link", "set", "eth0", "up")
        d = self.tmp / f"h{i}"
        (d / "ov").mkdir(parents=True)
        (d / "cluster.json").write_text(json.dumps(
            {"etcd": ["http://192.168.63.1:2379"], "node": f"h{i}", "address": f"{UL}.{10 + i}"}))
        self.hosts[i] = (h, d)
        return h

    def add(self, i, name, vni=4242, net=40):
        h, d = self.hosts[i]
        c = self.netns(name)
        # The cluster range in the host's overlay spec, as cluster-mode host-local's subnet
        # would make it; the host's block is its host-local subnet here.
        spec = d / "ov" / f"{vni}.json"
        if not spec.exists():
            spec.write_text(json.dumps({"vni": vni, "local": f"{UL}.{10 + i}",
                                        "ranges": [f"10.{net}.0.0/16"]}))
        conf = {"cniVersion": "1.1.0", "name": f"{RUN}-ov{vni}", "type": "bridge",
                "bridge": f"{RUN}b{vni}", "isDefaultGateway": True, "ipMasq": True,
                "nftTable": RUN, "stateDir": str(d / "state"), "overlay": {"vni": vni},
                "overlayDir": str(d / "ov"), "cluster": str(d / "cluster.json"),
                "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{net}.{i}.0/24"}]],
                         "dataDir": str(d / "ipam")}}
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": name, "CNI_NETNS": c.path,
               "CNI_IFNAME": "eth0", "CNI_PATH": str(BIN), "PATH": os.environ["PATH"]}
        p = subprocess.run(["ip", "netns", "exec", h.name, str(BIN / "bridge")],
                           input=json.dumps(conf), capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        return c, json.loads(p.stdout)["ips"][0]["address"].split("/")[0]

    def sync(self, peers):
        """Every host's kernel in step with `peers` {host: [blocks]} (the agent's job)."""
        listed = [{"node": f"h{i}", "address": f"{UL}.{10 + i}", "blocks": b}
                  for i, b in sorted(peers.items())]
        (self.tmp / "peers.json").write_text(json.dumps(listed))
        for i in peers:
            h, d = self.hosts[i]
            sh(SYNC, d / "ov", self.tmp / "peers.json", f"h{i}", ns=h.name)

    def echo_server(self, ns, ip, port=7000):
        p = subprocess.Popen(["ip", "netns", "exec", ns.name, "socat", f"TCP-LISTEN:{port},"
                              f"bind={ip},fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers.append(p)
        for _ in range(50):
            if f"{ip}:{port}" in ns.run("ss", "-ltn"):
                return
            time.sleep(0.1)
        raise AssertionError(f"echo server on {ip}:{port} did not start")

    def seen_by(self, src, ip, port=7000):
        """The source address the server at ip saw for a connection from `src`, or None."""
        p = subprocess.run(["ip", "netns", "exec", src.name, "socat", "-T2", "-",
                            f"TCP:{ip}:{port},connect-timeout=1"], capture_output=True, text=True,
                           input="")
        return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None

    def stop(self):
        for p in self.servers:
            p.kill()
            p.wait()


@pytest.fixture
def cluster(netns, tmpdir_run):
    c = Cluster(netns, tmpdir_run)
    yield c
    c.stop()


def routes(h, dev="tvx4242"):
    return h.run("ip", "route", "show", "dev", dev, "proto", "116", check=False)


def test_three_hosts_join_leave_and_vnis_apart(cluster):
    hosts = {i: cluster.host(i) for i in (1, 2, 3)}
    ctrs = {i: cluster.add(i, f"c{i}") for i in (1, 2, 3)}
    blocks = {i: [f"10.40.{i}.0/24"] for i in (1, 2, 3)}
    cluster.sync(blocks)
    for c, ip in ctrs.values():
        cluster.echo_server(c, ip)
    # Every pair, both ways, by address; the receiver sees the sender's own address.
    for a, (ca, ipa) in ctrs.items():
        for b, (cb, ipb) in ctrs.items():
            if a != b:
                assert cluster.seen_by(ca, ipb) == ipa, f"c{a} -> c{b}"
    assert "mtu 1450" in hosts[1].run("ip", "link", "show", "tvx4242")

    # A fourth host joins: the others' files stay as they were, only their kernels learn it.
    files = {p: p.read_bytes() for i in (1, 2, 3) for p in (cluster.tmp / f"h{i}").rglob("*")
             if p.is_file()}
    hosts[4] = cluster.host(4)
    c4, ip4 = cluster.add(4, "c4")
    blocks[4] = ["10.40.4.0/24"]
    cluster.sync(blocks)
    assert {p: p.read_bytes() for p in files} == files
    cluster.echo_server(c4, ip4)
    assert cluster.seen_by(ctrs[1][0], ip4) == ctrs[1][1]
    assert cluster.seen_by(c4, ctrs[3][1]) == ip4

    # Host 3 goes away (its namespace deleted): once the peer set no longer has it, no other
    # host routes its block, and its address is unreachable rather than misrouted.
    hosts[3].delete()
    del blocks[3]
    cluster.sync(blocks)
    for i in (1, 2, 4):
        assert "10.40.3.0/24" not in routes(hosts[i])
        assert "10.40.3.0" not in hosts[i].run("ip", "neigh", "show", "dev", "tvx4242")
        assert f"{UL}.13" not in hosts[i].run("bridge", "fdb", "show", "dev", "tvx4242")
    assert cluster.seen_by(ctrs[1][0], ctrs[3][1]) is None
    assert cluster.seen_by(ctrs[2][0], ip4) == ctrs[2][1]

    # A second overlay (VNI 5353, range 10.41.0.0/16) on hosts 1 and 2: its containers reach
    # each other across hosts, and never the first overlay's, either way, on either host.
    d1, ipd1 = cluster.add(1, "d1", vni=5353, net=41)
    d2, ipd2 = cluster.add(2, "d2", vni=5353, net=41)
    blocks[1].append("10.41.1.0/24")
    blocks[2].append("10.41.2.0/24")
    cluster.sync(blocks)
    cluster.echo_server(d2, ipd2)
    cluster.echo_server(d1, ipd1)
    assert cluster.seen_by(d1, ipd2) == ipd1
    assert routes(hosts[1], "tvx5353").strip() == "10.41.2.0/24 via 10.41.2.0 onlink"
    for src, dst in ((d1, ctrs[2][1]), (ctrs[1][0], ipd2), (d2, ctrs[1][1]), (ctrs[2][0], ipd1),
                     (d1, ctrs[1][1])):
        assert cluster.seen_by(src, dst) is None, f"{src.name} -> {dst}"
