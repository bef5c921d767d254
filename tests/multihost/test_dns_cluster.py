"""Names across hosts (issue 12): every host's dns-sidecar daemon publishes its registrations in
etcd and serves every other host's, answered from memory.

Each simulated host (conftest.py) gets one network "appnet" (bridge + host-local, subnet
10.77.<i>.0/24, gateway 10.77.<i>.1) with dns-sidecar `cluster` set to the host's cluster file
(leaseTTL 4 s), and one real container whose netns asks its gateway with dig. Other names are
registered by running the dns-sidecar plugin binary with a prevResult (no interface needed: the
daemon only serves the name). The daemons are started by the plugin inside the host's
namespace; the test kills only those, by the pid in their own state dir.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, RUN, pid_alive, sh

NET = "appnet"
TTL = 4  # the harness's leaseTTL


def subnet(host):
    return f"10.77.{host.index}"


def dns_conf(host):
    return {"cniVersion": "1.0.0", "name": NET, "type": "dns-sidecar", "domainName": "c.internal",
            "stateDir": str(host.dir / "dns"), "cluster": str(host.cluster_file),
            "resolvConf": str(host.dir / "resolv.conf")}


def bridge_conf(host):
    return {"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "tdns0",
            "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(host.dir / "ipam"),
                     "ranges": [[{"subnet": f"{subnet(host)}.0/24"}]]}}


def fake_result(host, last):
    return {"cniVersion": "1.0.0",
            "ips": [{"address": f"{subnet(host)}.{last}/24", "gateway": f"{subnet(host)}.1"}]}


class Names:
    """The containers and names of one test, on three hosts; cleanup() removes them all."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.hosts = cluster.hosts
        self.registered = []  # (host, container id)
        self.containers = {}  # host name -> (netns, container id)
        for h in self.hosts:
            (h.dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")

    def register(self, host, cid, name, last):
        conf = dict(dns_conf(host), prevResult=fake_result(host, last), args={"cni": {"name": name}})
        r = host.plugin("dns-sidecar", "ADD", conf, containerid=cid)
        assert r.rc == 0, r
        self.registered.append((host, cid))
        return r

    def unregister(self, host, cid):
        r = host.plugin("dns-sidecar", "DEL", dns_conf(host), containerid=cid)
        assert r.rc == 0, r
        self.registered.remove((host, cid))

    def container(self, host):
        """One real container on `host`, on appnet, registered as c-<host>."""
        ns = f"{RUN}-{host.name}-c"
        cid = f"real-{host.name}"
        sh("ip", "netns", "add", ns)
        self.containers[host.name] = (ns, cid)
        r = host.plugin("bridge", "ADD", bridge_conf(host), containerid=cid, netns=f"/var/run/netns/{ns}")
        assert r.rc == 0, r
        conf = dict(dns_conf(host), prevResult=r.json, args={"cni": {"name": f"c-{host.name}"}})
        d = host.plugin("dns-sidecar", "ADD", conf, containerid=cid, netns=f"/var/run/netns/{ns}")
        assert d.rc == 0, d
        self.registered.append((host, cid))

    def dig(self, host, name):
        ns, _ = self.containers[host.name]
        p = subprocess.run(["ip", "netns", "exec", ns, "dig", f"@{subnet(host)}.1", name, "A",
                            "+short", "+time=1", "+tries=1"], capture_output=True, text=True)
        return sorted(l for l in p.stdout.split() if l and l[0].isdigit())

    def wait_for(self, host, name, want, timeout):
        """Seconds until `name` answers `want` from `host`'s container; fails after timeout."""
        t0 = time.monotonic()
        while True:
            got = self.dig(host, name)
            if got == sorted(want):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{host.name}: {name} answers {got}, want {want}")
            time.sleep(0.02)

    def daemon_pid(self, host):
        try:
            text = (host.dir / "dns" / "daemon.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text and pid_alive(int(text)) else None

    def start_daemon(self, host):
        sh(BIN / "dns-sidecar", "daemon", "--daemonize", "--state-dir", host.dir / "dns",
           "--cluster", host.cluster_file, "--resolv-conf", host.dir / "resolv.conf",
           "--idle-exit", "60", ns=host.ns)

    def kill_daemon(self, host, sig=signal.SIGTERM):
        pid = self.daemon_pid(host)
        if pid is None:
            return False
        os.kill(pid, sig)
        deadline = time.time() + 10
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.02)
        assert not pid_alive(pid), f"daemon {pid} of {host.name} did not stop"
        return True

    def cleanup(self):
        for host, cid in list(self.registered):
            host.plugin("dns-sidecar", "DEL", dns_conf(host), containerid=cid)
        for hname, (ns, cid) in self.containers.items():
            host = next(h for h in self.hosts if h.name == hname)
            host.plugin("bridge", "DEL", bridge_conf(host), containerid=cid,
                        netns=f"/var/run/netns/{ns}")
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for h in self.hosts:
            self.kill_daemon(h)
        # Every record of ours is gone from etcd: DEL removes at once.
        left = self.cluster.etcd.keys(f"{self.cluster.prefix}/dns/")
        assert left == [], left


@pytest.fixture
def names(three_hosts):
    n = Names(three_hosts)
    try:
        for h in three_hosts.hosts:
            n.container(h)
        yield n
    finally:
        n.cleanup()


def test_names_resolve_on_every_host(names):
    h1, h2, h3 = names.hosts
    r = names.register(h1, "w1", "web", 10)
    assert "not yet published" not in r.stderr, r
    # Registration to visible on another host: measured, bounded.
    seen = [names.wait_for(h, "web", ["10.77.1.10"], timeout=2) for h in (h2, h3)]
    print(f"registration-to-visible: {max(seen) * 1e3:.0f} ms")
    assert names.dig(h2, "web.c.internal") == ["10.77.1.10"]
    # Real containers see each other across hosts by name.
    assert names.dig(h3, "c-h1") == [f"10.77.1.{names.dig(h1, 'c-h1')[0].split('.')[-1]}"]
    # The same name on a second host: both addresses, from every host.
    names.register(h2, "w2", "web", 20)
    for h in (h1, h2, h3):
        names.wait_for(h, "web", ["10.77.1.10", "10.77.2.20"], timeout=2)
    # `list` shows each record's node.
    out = json.loads(sh(BIN / "dns-sidecar", "list", "--json", "--state-dir", h3.dir / "dns",
                        ns=h3.ns))
    recs = {(c["containerID"], c["node"], c["local"])
            for n in out["networks"] if n["name"] == NET for c in n["containers"]}
    assert {("w1", "h1", False), ("w2", "h2", False), ("real-h3", "h3", True)} <= recs
    table = sh(BIN / "dns-sidecar", "list", "--state-dir", h3.dir / "dns", ns=h3.ns)
    assert "h1 (remote) w1" in table
    # DEL on one host: gone everywhere at once (no lease wait).
    names.unregister(h1, "w1")
    for h in (h1, h2, h3):
        names.wait_for(h, "web", ["10.77.2.20"], timeout=1)


def test_dead_daemon_names_expire_and_come_back(names):
    h1, h2, h3 = names.hosts
    names.register(h1, "k1", "kill", 30)
    names.wait_for(h3, "kill", ["10.77.1.30"], timeout=2)
    assert names.kill_daemon(h1, signal.SIGKILL)
    # Its lease expires: gone from the other hosts within the TTL (plus a keepalive period).
    gone = names.wait_for(h2, "kill", [], timeout=TTL + 3)
    names.wait_for(h3, "kill", [], timeout=1)
    print(f"kill -9 to gone elsewhere: {gone:.1f} s (leaseTTL {TTL} s)")
    # Restarted, it republishes what its state dir holds.
    names.start_daemon(h1)
    names.wait_for(h2, "kill", ["10.77.1.30"], timeout=3)
    names.wait_for(h1, "kill", ["10.77.1.30"], timeout=1)


def test_etcd_restart_loses_nothing_and_keeps_nothing_stale(names):
    h1, h2, h3 = names.hosts
    names.register(h1, "e1", "stays", 40)
    names.register(h2, "e2", "goes", 40)
    names.wait_for(h3, "goes", ["10.77.2.40"], timeout=2)
    names.cluster.etcd.kill()
    # etcd down: queries are answered from memory; ADD and DEL still succeed on the host.
    assert names.dig(h3, "stays") == ["10.77.1.40"]
    r = names.register(h3, "e3", "during", 40)
    assert "not yet published" in r.stderr, r
    names.wait_for(h3, "during", ["10.77.3.40"], timeout=1)
    names.unregister(h2, "e2")
    names.cluster.etcd.start()
    for h in (h1, h2):
        names.wait_for(h, "during", ["10.77.3.40"], timeout=6)
    for h in (h1, h3):
        names.wait_for(h, "goes", [], timeout=6)
        names.wait_for(h, "stays", ["10.77.1.40"], timeout=1)
    # No duplicates: one key per record in etcd.
    keys = names.cluster.etcd.keys(f"{names.cluster.prefix}/dns/{NET}/")
    assert len(keys) == len(set(keys)) == len(names.registered), keys


def test_200_containers_resolvable_from_every_host(names):
    t0 = time.monotonic()
    for i in range(200):
        host = names.hosts[i % 3]
        names.register(host, f"m{i}", f"many{i}", 50 + i // 3)
    print(f"200 registrations: {time.monotonic() - t0:.1f} s")
    for h in names.hosts:
        for i in range(0, 200, 1):
            owner = names.hosts[i % 3]
            names.wait_for(h, f"many{i}", [f"{subnet(owner)}.{50 + i // 3}"], timeout=3)


def test_names_of_another_network_stay_invisible_across_hosts(names):
    """Scope across hosts: host 2 also has a container on a second network, "othernet". A name
    registered on appnet on host 1 reaches host 2's daemon (appnet's container there resolves
    it) but is NXDOMAIN from othernet's container on the same host; an othernet name of host 3
    resolves from othernet on host 2 and is NXDOMAIN from appnet on hosts 1 and 2."""
    h1, h2, h3 = names.hosts
    other = "othernet"

    def other_dns(h):
        return dict(dns_conf(h), name=other)

    bridge = dict(bridge_conf(h2), name=other, bridge="tdns1",
                  ipam={"type": "host-local", "dataDir": str(h2.dir / "ipam"),
                        "ranges": [[{"subnet": "10.78.2.0/24"}]]})
    ns = f"{RUN}-h2-y"
    regs = []  # (host, container id) on othernet
    sh("ip", "netns", "add", ns)
    try:
        r = h2.plugin("bridge", "ADD", bridge, containerid="y-h2", netns=f"/var/run/netns/{ns}")
        assert r.rc == 0, r
        d = h2.plugin("dns-sidecar", "ADD", dict(other_dns(h2), prevResult=r.json,
                                                 args={"cni": {"name": "y-h2"}}),
                      containerid="y-h2", netns=f"/var/run/netns/{ns}")
        assert d.rc == 0, d
        regs.append((h2, "y-h2"))
        prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.78.3.60/24",
                                                "gateway": "10.78.3.1"}]}
        d = h3.plugin("dns-sidecar", "ADD", dict(other_dns(h3), prevResult=prev,
                                                 args={"cni": {"name": "ysame"}}),
                      containerid="y3")
        assert d.rc == 0, d
        regs.append((h3, "y3"))
        names.register(h1, "s1", "secret", 60)

        def ask(netns, server, name):
            p = subprocess.run(["ip", "netns", "exec", netns, "dig", f"@{server}", name, "A",
                                "+time=1", "+tries=1"], capture_output=True, text=True)
            status = p.stdout.split("status: ")[1].split(",")[0] if "status: " in p.stdout else None
            return status, sorted(l.split()[-1] for l in p.stdout.splitlines()
                                  if "\tA\t" in l and not l.startswith(";"))

        # Both names reached host 2: each resolves from its own network there.
        names.wait_for(h2, "secret", ["10.77.1.60"], timeout=3)
        t0 = time.monotonic()
        while ask(ns, "10.78.2.1", "ysame.c.internal") != ("NOERROR", ["10.78.3.60"]):
            assert time.monotonic() - t0 < 3, ask(ns, "10.78.2.1", "ysame.c.internal")
            time.sleep(0.05)
        assert ask(ns, "10.78.2.1", "c-h2.c.internal") == ("NXDOMAIN", [])
        # ...and never from the other network, on any host.
        assert ask(ns, "10.78.2.1", "secret.c.internal") == ("NXDOMAIN", [])
        for h in (h1, h2):
            cns, _ = names.containers[h.name]
            assert ask(cns, f"{subnet(h)}.1", "ysame.c.internal") == ("NXDOMAIN", []), h.name
            assert ask(cns, f"{subnet(h)}.1", "y-h2.c.internal") == ("NXDOMAIN", []), h.name
    finally:
        for h, cid in regs:
            h.plugin("dns-sidecar", "DEL", other_dns(h), containerid=cid,
                     netns=f"/var/run/netns/{ns}" if cid == "y-h2" else None)
        h2.plugin("bridge", "DEL", bridge, containerid="y-h2", netns=f"/var/run/netns/{ns}")
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
