"""dns-sidecar behind bridge + host-local, with real queries from container namespaces.

Each test builds its networks with the bridge and host-local plugins that run_chain finds
(tether's when built, else the reference ones), chains dns-sidecar after them with a stateDir
under the test's tmpdir, a port other than 53 and a private resolv.conf, and asks with dig from
inside the container namespaces. The daemon the plugin starts is killed by its pidfile at the
end of every test; bridges are deleted (the reference bridge's DEL leaves them).
"""
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, REF_BIN, RUN, run_chain, run_plugin, ok, sh

PLUGIN = "dns-sidecar"
PORT = 20000 + random.randrange(20000)
NFT_TABLE = f"{RUN}-dns"
DOMAIN = "test.internal"
# Second octets for this run's subnets, so that parallel runs rarely collide.
_octets = iter(random.sample(range(64, 250), 150))


def daemon_pid(state):
    try:
        text = (Path(state) / "daemon.pid").read_text().strip()
        return int(text) if text else None
    except FileNotFoundError:
        return None


def usage(pid):
    """(VmRSS in KiB, open fds) of a process."""
    rss = next(int(l.split()[1]) for l in Path(f"/proc/{pid}/status").read_text().splitlines()
               if l.startswith("VmRSS:"))
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def kill_daemon(state, sig=signal.SIGTERM):
    pid = daemon_pid(state)
    if not pid or not alive(pid):
        return None
    os.kill(pid, sig)
    for _ in range(200):
        if not alive(pid):
            return pid
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return pid


def daemons_of(state):
    """PIDs of every dns-sidecar daemon process serving `state`."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daemon" in argv and str(state).encode() in argv and alive(int(p.name)):
            pids.append(int(p.name))
    return pids


class Net:
    def __init__(self, env, suffix, plugin_extra, default_route=True, v4=True, v6=False):
        self.env = env
        octet = next(_octets)
        self.prefix = f"10.{octet}.0"
        self.gateway = f"{self.prefix}.1" if v4 else None
        self.prefix6 = f"fd{RUN[1:3]}:{RUN[3:]}{octet:02x}::"
        self.gateway6 = f"{self.prefix6}1" if v6 else None
        # A container on two networks takes its default route from one of them only.
        self.routes = ([{"dst": "0.0.0.0/0"}] if v4 else []) + ([{"dst": "::/0"}] if v6 else []) \
            if default_route else []
        self.ranges = ([[{"subnet": f"{self.prefix}.0/24"}]] if v4 else []) + \
            ([[{"subnet": f"{self.prefix6}/64"}]] if v6 else [])
        self.name = f"{RUN}-{suffix}"
        self.bridge = f"{RUN}{suffix}"
        dns = {"type": PLUGIN, "stateDir": str(env.state), "port": PORT, "domainName": DOMAIN,
               "resolvConf": str(env.resolv), "capabilities": {"aliases": True, "dns": True}}
        dns.update(plugin_extra)
        self.dns_conf = dns

    def conflist(self, dns_extra=None, dns_type=PLUGIN):
        # 1.0.0: the reference bridge (Debian's 1.1.1 plugins) supports no later version. GC and
        # STATUS, which need 1.1.0, are run on dns-sidecar directly.
        dns = dict(self.dns_conf, type=dns_type)
        dns.update(dns_extra or {})
        return {"cniVersion": "1.0.0", "name": self.name, "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             # tether's bridge keeps firewall state in its own table and state dir: private to
             # this run (the reference bridge ignores both keys).
             "nftTable": NFT_TABLE, "stateDir": str(self.env.tmp / "bridge"),
             "ipam": {"type": "host-local", "dataDir": str(self.env.tmp / "ipam"),
                      "ranges": self.ranges, "routes": self.routes}},
            dns]}


class Env:
    """Networks, containers and the daemon of one test; cleanup() removes all of it."""

    def __init__(self, netns, tmp):
        self.netns = netns
        self.tmp = tmp
        self.state = tmp / "dns"
        self.resolv = tmp / "resolv.conf"
        self.resolv.write_text("# no host upstreams unless a test writes some\n")
        self.nets = []
        self.attachments = []  # (net, ns, cid, ifname, conflist, kwargs)
        self.search = None

    def network(self, suffix, default_route=True, v4=True, v6=False, **plugin_extra):
        net = Net(self, suffix, plugin_extra, default_route, v4, v6)
        self.nets.append(net)
        return net

    def add(self, net, ns, name=None, ifname="eth0", dns_extra=None, cap=None, args=None,
            dns_type=PLUGIN, expect_ok=True):
        cid = ns.name
        cl = net.conflist(dns_extra, dns_type)
        cni_args = args if args is not None else (
            f"IgnoreUnknown=1;K8S_POD_NAME={name}" if name else None)
        result, res = run_chain(cl, "ADD", containerid=cid, netns=ns.path, ifname=ifname,
                                args=cni_args, capability_args=cap, search=self.search)
        self.attachments.append((net, ns, cid, ifname, cl, cni_args, cap, result))
        if expect_ok:
            assert result is not None, res[-1]
        return result, res

    def ip(self, ns, ifname="eth0"):
        out = ns.run("ip", "-4", "-o", "addr", "show", "dev", ifname)
        return out.split()[3].split("/")[0]

    def ip6(self, ns, ifname="eth0"):
        out = ns.run("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "global")
        return out.split()[3].split("/")[0]

    def delete(self, ns, net, ifname="eth0"):
        for a in self.attachments:
            if a[0] is net and a[1] is ns and a[3] == ifname:
                _, res = run_chain(a[4], "DEL", containerid=a[2], netns=ns.path, ifname=ifname,
                                   args=a[5], capability_args=a[6], prev_result=a[7],
                                   search=self.search)
                return res
        raise AssertionError("no such attachment")

    def cleanup(self):
        for net, ns, cid, ifname, cl, cni_args, cap, result in reversed(self.attachments):
            run_chain(cl, "DEL", containerid=cid, netns=ns.path, ifname=ifname, args=cni_args,
                      capability_args=cap, prev_result=result, search=self.search)
        kill_daemon(self.state)
        for pid in daemons_of(self.state):
            os.kill(pid, signal.SIGKILL)
        for net in self.nets:
            subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


@pytest.fixture
def env(netns, tmpdir_run):
    e = Env(netns, tmpdir_run)
    yield e
    e.cleanup()


def dig(ns, server, name, qtype="A", *extra):
    """The answer records' data, sorted (dig +short)."""
    out = ns.run("dig", f"@{server}", "-p", str(PORT), name, qtype, "+short", "+tries=1",
                 "+time=2", *extra, check=False)
    return sorted(l for l in out.split("\n") if l and not l.startswith(";"))


def dig_full(ns, server, name, qtype="A", *extra):
    return ns.run("dig", f"@{server}", "-p", str(PORT), name, qtype, "+tries=1", "+time=2",
                  *extra, check=False)


def status(ns, server, name, qtype="A", *extra):
    out = dig_full(ns, server, name, qtype, *extra)
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return "NO ANSWER"


def answers_in_order(ns, server, name, count):
    """`count` answers' address lists in the order the daemon sent them, from one process."""
    code = f"""
import socket, struct, random
def q(name):
    m = struct.pack('>HHHHHH', random.randrange(65536), 0x0100, 1, 0, 0, 0)
    for l in name.split('.'):
        m += bytes([len(l)]) + l.encode()
    return m + b'\\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range({count}):
    s.sendto(q({name!r}), ({server!r}, {PORT}))
    r = s.recv(4096)
    an = struct.unpack('>H', r[6:8])[0]
    ips = [socket.inet_ntoa(r[i - 4:i]) for i in range(len(r), len(r) - 16 * an, -16)]
    print(','.join(reversed(ips)))
"""
    return ns.run("/usr/bin/python3", "-c", code).split()


# ---------------------------------------------------------------------------------------------


def test_two_containers_resolve_each_other(env, netns):
    net = env.network("a")
    c1, c2 = netns("a"), netns("b")
    r1, _ = env.add(net, c1, "web1")
    r2, _ = env.add(net, c2, "web2")
    ip1, ip2 = env.ip(c1), env.ip(c2)
    assert r1["dns"]["nameservers"][0] == net.gateway
    assert DOMAIN in r1["dns"]["search"]
    gw = net.gateway
    assert dig(c1, gw, "web2") == [ip2]
    assert dig(c1, gw, f"web2.{DOMAIN}") == [ip2]
    assert dig(c2, gw, "web1") == [ip1]
    assert dig(c2, gw, f"WEB1.{DOMAIN}.") == [ip1]
    assert dig(c2, gw, "web1", "A", "+tcp") == [ip1]
    # NODATA, not NXDOMAIN, for the family the name does not have.
    assert status(c1, gw, "web2", "AAAA") == "NOERROR"
    assert dig(c1, gw, "web2", "AAAA") == []
    assert status(c1, gw, f"nosuch.{DOMAIN}") == "NXDOMAIN"
    assert dig(c1, gw, "-x", ip2) == [f"web2.{DOMAIN}."]


def test_name_dot_network(env, netns):
    """Docker's `<name>.<network>` on the networks the asker is on, for names and aliases."""
    a, b = env.network("a"), env.network("b")
    c1, c2, c3 = netns("a"), netns("b"), netns("c")
    env.add(a, c1, "web1", cap={"aliases": ["db"]})
    env.add(a, c2, "web2")
    env.add(b, c3, "web3")
    ip1 = env.ip(c1)
    assert dig(c2, a.gateway, f"web1.{a.name}") == [ip1]
    assert dig(c2, a.gateway, f"WEB1.{a.name.upper()}.") == [ip1]
    assert dig(c2, a.gateway, f"db.{a.name}") == [ip1]
    assert dig(c2, a.gateway, f"web1.{a.name}", "A", "+tcp") == [ip1]
    assert status(c2, a.gateway, f"web1.{a.name}", "AAAA") == "NOERROR"
    assert dig(c2, a.gateway, f"web1.{a.name}", "AAAA") == []
    # Not across networks: c3 is on b only, and b's name does not qualify a's containers.
    assert dig(c3, b.gateway, f"web1.{a.name}") == []
    assert dig(c2, a.gateway, f"web1.{b.name}") == []
    assert dig(c3, b.gateway, f"web3.{b.name}") == [env.ip(c3)]


def test_name_dot_network_skips_names_that_are_not_labels(env, netns):
    dotted = env.network("d.x")  # "<RUN>-d.x": a valid CNI network name, two DNS labels
    c1, c2 = netns("a"), netns("b")
    env.add(dotted, c1, "web1")
    env.add(dotted, c2, "web2")
    assert dig(c2, dotted.gateway, "web1") == [env.ip(c1)]
    assert dig(c2, dotted.gateway, f"web1.{dotted.name}") == []
    log = (env.state / "daemon.log").read_text()
    assert f'network "{dotted.name}" is not a DNS label' in log
    # Warned once per daemon, not once per registration.
    assert log.count(f'network "{dotted.name}" is not a DNS label') == 1


def test_aliases_are_network_scoped(env, netns):
    a, b = env.network("a"), env.network("b")
    c1, c2, c3 = netns("a"), netns("b"), netns("c")
    env.add(a, c1, "db1", cap={"aliases": ["db", "primary"]})
    env.add(a, c2, "app")
    env.add(b, c3, "other")
    ip1 = env.ip(c1)
    assert dig(c2, a.gateway, "db") == [ip1]
    assert dig(c2, a.gateway, f"primary.{DOMAIN}") == [ip1]
    # c3 is on network b only: neither through its own gateway nor through a's.
    for gw in (b.gateway, a.gateway):
        assert dig(c3, gw, "db") == []
        assert dig(c3, gw, "db1") == []
        assert status(c3, gw, f"db.{DOMAIN}") == "NXDOMAIN"


def test_container_on_two_networks_resolves_both(env, netns):
    a, b = env.network("a"), env.network("b", default_route=False)
    multi, on_a, on_b = netns("m"), netns("a"), netns("b")
    env.add(a, multi, "multi", ifname="eth0")
    env.add(b, multi, "multi", ifname="eth1")
    env.add(a, on_a, "alpha")
    env.add(b, on_b, "beta")
    ip_a, ip_b = env.ip(on_a), env.ip(on_b)
    for gw in (a.gateway, b.gateway):
        assert dig(multi, gw, "alpha") == [ip_a]
        assert dig(multi, gw, "beta") == [ip_b]
    # Each single-network container sees the multi-homed one's address on its own network.
    assert dig(on_a, a.gateway, "multi") == [env.ip(multi, "eth0")]
    assert dig(on_b, b.gateway, "multi") == [env.ip(multi, "eth1")]
    assert dig(on_a, a.gateway, "beta") == []


def test_container_scoped_alias(env, netns):
    net = env.network("a")
    c1, c2 = netns("a"), netns("b")
    env.add(net, c2, "web2")
    env.add(net, c1, "web1", dns_extra={"args": {"cni": {"containerAliases": ["me", "backend=web2"],
                                                         "hostname": "host1"}}})
    ip1, ip2 = env.ip(c1), env.ip(c2)
    assert dig(c1, net.gateway, "me") == [ip1]
    assert dig(c1, net.gateway, f"backend.{DOMAIN}") == [ip2]
    assert dig(c2, net.gateway, "me") == []
    assert dig(c2, net.gateway, "backend") == []
    # The hostname is published network-wide.
    assert dig(c2, net.gateway, "host1") == [ip1]


def test_shared_alias_returns_every_address_shuffled(env, netns):
    net = env.network("a")
    members = [netns(s) for s in "abcd"]
    for i, ns in enumerate(members):
        env.add(net, ns, f"m{i}", cap={"aliases": ["svc"]})
    ips = sorted(env.ip(ns) for ns in members)
    assert dig(members[0], net.gateway, "svc") == ips
    orders = answers_in_order(members[0], net.gateway, "svc", 40)
    assert all(sorted(o.split(",")) == ips for o in orders)
    assert len(set(orders)) > 1, "the order of a shared name's addresses never changed"


def test_names_follow_add_and_del_at_once(env, netns):
    net = env.network("a")
    asker, c1 = netns("q"), netns("a")
    env.add(net, asker, "asker")
    gw = net.gateway
    # No retry loops: the very first query after each call must see the change.
    env.add(net, c1, "web1")
    assert dig(asker, gw, "web1") == [env.ip(c1)]
    env.delete(c1, net)
    assert status(asker, gw, f"web1.{DOMAIN}") == "NXDOMAIN"
    assert dig(asker, gw, "web1") == []
    res = env.delete(c1, net)  # DEL again: still fine
    assert all(r.rc == 0 for r in res), res
    env.add(net, c1, "web1")
    assert dig(asker, gw, "web1") == [env.ip(c1)]


def test_daemon_killed_and_restarted_serves_every_name(env, netns):
    net = env.network("a")
    c1, c2, c3 = netns("a"), netns("b"), netns("c")
    env.add(net, c1, "web1", cap={"aliases": ["one"]})
    env.add(net, c2, "web2")
    ip1, ip2 = env.ip(c1), env.ip(c2)
    # A crash: the next ADD starts a daemon, which serves the earlier names too.
    assert kill_daemon(env.state, signal.SIGKILL)
    env.add(net, c3, "web3")
    assert dig(c3, net.gateway, "web1") == [ip1]
    assert dig(c3, net.gateway, "one") == [ip1]
    assert dig(c1, net.gateway, "web2") == [ip2]
    assert dig(c1, net.gateway, "web3") == [env.ip(c3)]
    # Started by hand (as systemd would), in the foreground.
    assert kill_daemon(env.state)
    d = subprocess.Popen([str(BIN / PLUGIN), "daemon", "--state-dir", str(env.state),
                          "--resolv-conf", str(env.resolv)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (env.state / "control.sock").exists() and daemon_pid(env.state) == d.pid:
                break
            time.sleep(0.01)
        assert dig(c2, net.gateway, "web1") == [ip1]
        assert dig(c2, net.gateway, "web3") == [env.ip(c3)]
        out = sh(BIN / PLUGIN, "list", "--state-dir", env.state)
        assert "web1" in out and "web3" in out and net.name in out
    finally:
        d.terminate()
        d.wait(timeout=5)


def test_concurrent_adds_start_one_daemon(env, netns):
    net = env.network("a")
    namespaces = [netns(s) for s in "abcdef"]
    results = {}

    def add(i, ns):
        results[i] = env.add(net, ns, f"par{i}", expect_ok=False)[0]

    # The bridge must exist before parallel ADDs: the reference bridge races creating it.
    first = namespaces.pop()
    env.add(net, first, "first")
    kill_daemon(env.state)
    threads = [threading.Thread(target=add, args=(i, ns)) for i, ns in enumerate(namespaces)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] is not None for i in range(len(namespaces))), results
    assert len(daemons_of(env.state)) == 1
    for i, ns in enumerate(namespaces):
        assert dig(first, net.gateway, f"par{i}") == [env.ip(ns)]


# --- forwarding ------------------------------------------------------------------------------


class UpstreamNs:
    """A namespace reached from the host over a veth pair (the host's end `link`, the peer
    "up0"), running servers (`procs`) that close() stops before the link goes."""

    def __init__(self, netns, tag, link, host_cidr, *addr_flags):
        self.ns = netns(tag)
        self.link = link
        self.procs = []
        sh("ip", "link", "add", self.link, "type", "veth", "peer", "name", "up0",
           "netns", self.ns.name)
        sh("ip", "addr", "add", host_cidr, "dev", self.link, *addr_flags)
        sh("ip", "link", "set", self.link, "up")
        self.ns.run("ip", "link", "set", "up0", "up")

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=5)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)


def upstream_fixture(cls, name):
    """The fixture `name` of an UpstreamNs subclass: closed at the end, its link checked gone."""
    @pytest.fixture(name=name)
    def fixture(netns):
        u = cls(netns)
        yield u
        u.close()
        assert subprocess.run(["ip", "link", "show", u.link], capture_output=True).returncode != 0
    return fixture


class Upstreams(UpstreamNs):
    """A namespace with DNS servers (dnsmasq) on .2 .3 .4, each answering who.example with
    192.0.2.<its last octet>, and .5 answering nothing of its own (REFUSED)."""

    def __init__(self, netns):
        octet = next(_octets)
        self.prefix = f"10.{octet}.0"
        super().__init__(netns, "u", f"{RUN}u{octet}", f"{self.prefix}.1/24")
        for last in (2, 3, 4, 5):
            addr = f"{self.prefix}.{last}"
            self.ns.run("ip", "addr", "add", f"{addr}/24", "dev", "up0", "nodad")
            argv = ["ip", "netns", "exec", self.ns.name, "dnsmasq", "--keep-in-foreground",
                    "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                    f"--listen-address={addr}", "--port=53", "--user=root", "--pid-file="]
            if last != 5:
                argv.append(f"--address=/who.example/192.0.2.{last}")
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        for last in (2, 3, 4):
            for _ in range(100):
                if sh("dig", f"@{self.prefix}.{last}", "who.example", "+short", "+time=1",
                      "+tries=1", check=False).strip():
                    break
                time.sleep(0.05)

    def addr(self, last):
        return f"{self.prefix}.{last}"


upstreams = upstream_fixture(Upstreams, "upstreams")


def test_forwarding_precedence(env, netns, upstreams):
    env.resolv.write_text(f"nameserver {upstreams.addr(4)}\n")
    a = env.network("a", upstreams=[upstreams.addr(3)])
    b = env.network("b")
    per_ctr, per_net, host = netns("a"), netns("b"), netns("c")
    env.add(a, per_ctr, "pc", cap={"dns": {"servers": [upstreams.addr(2)]}})
    env.add(a, per_net, "pn")
    env.add(b, host, "ph")
    assert dig(per_ctr, a.gateway, "who.example") == ["192.0.2.2"]
    assert dig(per_ctr, a.gateway, "who.example", "A", "+tcp") == ["192.0.2.2"]
    assert dig(per_net, a.gateway, "who.example") == ["192.0.2.3"]
    assert dig(per_net, a.gateway, "who.example", "A", "+tcp") == ["192.0.2.3"]
    assert dig(host, b.gateway, "who.example") == ["192.0.2.4"]
    # Names under our domain are never forwarded.
    assert status(host, b.gateway, f"who.example.{DOMAIN}") == "NXDOMAIN"
    # The host's resolv.conf is watched: a replaced file takes effect without a restart.
    tmp = env.resolv.with_name("resolv.new")
    tmp.write_text(f"# moved\nnameserver {upstreams.addr(2)}\n")
    tmp.rename(env.resolv)
    for _ in range(100):
        if dig(host, b.gateway, "who.example") == ["192.0.2.2"]:
            break
        time.sleep(0.02)
    assert dig(host, b.gateway, "who.example") == ["192.0.2.2"]


def test_forwarding_skips_refused_and_dead_servers(env, netns, upstreams):
    net = env.network("a")
    c1, c2 = netns("a"), netns("b")
    # .5 refuses, .3 answers.
    env.add(net, c1, "r1", cap={"dns": {"Servers": [upstreams.addr(5), upstreams.addr(3)]}})
    # .9 does not exist: after its share of the 5 s budget, .4 answers.
    env.add(net, c2, "r2", cap={"dns": {"servers": [upstreams.addr(9), upstreams.addr(4)]}})
    assert dig(c1, net.gateway, "who.example") == ["192.0.2.3"]
    out = c2.run("dig", f"@{net.gateway}", "-p", str(PORT), "who.example", "+short",
                 "+tries=1", "+time=5")
    assert out.split() == ["192.0.2.4"]
    # Every server failing: SERVFAIL.
    c3 = netns("c")
    env.add(net, c3, "r3", cap={"dns": {"servers": [upstreams.addr(5)]}})
    assert status(c3, net.gateway, "who.example") == "SERVFAIL"


def test_internal_network_does_not_forward(env, netns, upstreams):
    env.resolv.write_text(f"nameserver {upstreams.addr(4)}\n")
    net = env.network("i", internal=True, upstreams=[upstreams.addr(3)])
    c1, c2 = netns("a"), netns("b")
    env.add(net, c1, "in1", cap={"dns": {"servers": [upstreams.addr(2)]}})
    env.add(net, c2, "in2")
    assert dig(c1, net.gateway, "in2") == [env.ip(c2)]
    for ns in (c1, c2):
        assert dig(ns, net.gateway, "who.example") == []
        assert status(ns, net.gateway, "who.example") == "NXDOMAIN"


# --- IPv6 ------------------------------------------------------------------------------------


def wait_answer(ns, server, name, qtype):
    """The gateway's IPv6 address may still be in DAD for a moment after ADD."""
    for _ in range(50):
        got = dig(ns, server, name, qtype)
        if got:
            return got
        time.sleep(0.1)
    return dig(ns, server, name, qtype)


def test_ipv6_dual_stack_aaaa_ptr_over_the_v6_listener(env, netns):
    d = env.network("d6", v6=True)
    c1, c2 = netns("a"), netns("b")
    env.add(d, c1, "web1")
    r2, _ = env.add(d, c2, "web2")
    assert d.gateway6 in r2["dns"]["nameservers"]
    ip4, ip6 = env.ip(c1), env.ip6(c1)
    gw6 = d.gateway6
    assert wait_answer(c2, gw6, "web1", "AAAA") == [ip6]
    assert dig(c2, gw6, f"web1.{DOMAIN}", "A") == [ip4]
    assert dig(c2, gw6, "web1", "AAAA", "+tcp") == [ip6]
    assert sorted(dig(c2, gw6, "web1", "ANY")) == sorted([ip4, ip6])
    # PTR in ip6.arpa, over either listener; and in-addr.arpa over the v6 one.
    assert dig(c2, gw6, "-x", ip6) == [f"web1.{DOMAIN}."]
    assert dig(c2, d.gateway, "-x", ip6) == [f"web1.{DOMAIN}."]
    assert dig(c2, gw6, "-x", ip4) == [f"web1.{DOMAIN}."]
    assert status(c2, gw6, f"nosuch.{DOMAIN}", "AAAA") == "NXDOMAIN"
    # The v6 listener answers the asker by its v6 address: the scope is the same container.
    assert dig(c1, gw6, "web2", "AAAA") == [env.ip6(c2)]


def test_ipv6_nodata_for_the_missing_family_both_ways(env, netns):
    o4 = env.network("o4", default_route=False)
    o6 = env.network("o6", default_route=False, v4=False, v6=True)
    m, w4, w6 = netns("m"), netns("p"), netns("q")
    env.add(o4, w4, "only4")
    env.add(o6, w6, "only6")
    env.add(o4, m, "multi", ifname="eth0")
    env.add(o6, m, "multi", ifname="eth1")
    gw6 = o6.gateway6
    assert wait_answer(m, gw6, "only6", "AAAA") == [env.ip6(w6)]
    assert dig(m, o4.gateway, "only4", "A") == [env.ip(w4)]
    for server in (gw6, o4.gateway):
        # A v6-only name asked for A, a v4-only one for AAAA: NOERROR without answers.
        assert status(m, server, "only6", "A") == "NOERROR"
        assert dig(m, server, "only6", "A") == []
        assert status(m, server, "only4", "AAAA") == "NOERROR"
        assert dig(m, server, "only4", "AAAA") == []
    # The v6-only container asks over its only listener, the v6 one.
    assert wait_answer(w6, gw6, "multi", "AAAA") == [env.ip6(m, "eth1")]
    assert status(w6, gw6, "multi", "A") == "NOERROR" and dig(w6, gw6, "multi", "A") == []


class Upstream6(UpstreamNs):
    """A namespace with dnsmasq on an IPv6 address only, reached from the host over a veth pair:
    who6.example is 2001:db8::6 there, and nowhere else."""

    def __init__(self, netns):
        super().__init__(netns, "u6", f"{RUN}u6", f"fd{RUN[1:3]}:{RUN[3:]}ff::1/64", "nodad")
        self.addr = f"fd{RUN[1:3]}:{RUN[3:]}ff::2"
        self.ns.run("ip", "addr", "add", f"{self.addr}/64", "dev", "up0", "nodad")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, "dnsmasq", "--keep-in-foreground",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
             f"--listen-address={self.addr}", "--port=53", "--user=root", "--pid-file=",
             "--address=/who6.example/2001:db8::6"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if sh("dig", f"@{self.addr}", "who6.example", "AAAA", "+short", "+time=1",
                  "+tries=1", check=False).strip():
                break
            time.sleep(0.05)


upstream6 = upstream_fixture(Upstream6, "upstream6")


def test_ipv6_forwarding_to_an_ipv6_upstream(env, netns, upstream6):
    net = env.network("f6", v6=True, upstreams=[f"[{upstream6.addr}]:53"])
    host = env.network("h6", v6=True)
    c1, c2 = netns("a"), netns("b")
    env.add(net, c1, "fw1")
    assert wait_answer(c1, net.gateway6, "who6.example", "AAAA") == ["2001:db8::6"]
    assert dig(c1, net.gateway6, "who6.example", "AAAA", "+tcp") == ["2001:db8::6"]
    assert dig(c1, net.gateway, "who6.example", "AAAA") == ["2001:db8::6"]
    # The host's resolv.conf naming the IPv6 server (no port, as resolv.conf writes it).
    env.resolv.write_text(f"nameserver {upstream6.addr}\n")
    env.add(host, c2, "fw2")
    for _ in range(100):
        if dig(c2, host.gateway6, "who6.example", "AAAA") == ["2001:db8::6"]:
            break
        time.sleep(0.05)
    assert dig(c2, host.gateway6, "who6.example", "AAAA") == ["2001:db8::6"]


# --- robustness ------------------------------------------------------------------------------


def test_client_outside_the_networks_gets_no_answer(env, netns):
    net = env.network("a")
    c1, outsider = netns("a"), netns("o")
    env.add(net, c1, "web1")
    # The outsider is on the same bridge but in another subnet, with routes both ways.
    out_ip = f"10.{next(_octets)}.0.5"
    sh("ip", "link", "add", f"{RUN}o", "type", "veth", "peer", "name", "eth0",
       "netns", outsider.name)
    try:
        sh("ip", "link", "set", f"{RUN}o", "master", net.bridge, "up")
        outsider.run("ip", "addr", "add", f"{out_ip}/24", "dev", "eth0")
        outsider.run("ip", "link", "set", "eth0", "up")
        outsider.run("ip", "route", "add", f"{net.prefix}.0/24", "dev", "eth0")
        sh("ip", "route", "add", f"{out_ip}/32", "dev", net.bridge)
        # Packets do flow both ways: a closed port on the gateway answers with ICMP.
        probe = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                 f"s.settimeout(2); s.connect(({net.gateway!r}, 9)); s.send(b'x')\n"
                 "try:\n    s.recv(10)\nexcept ConnectionRefusedError:\n    print('refused')")
        assert outsider.run("/usr/bin/python3", "-c", probe).strip() == "refused"
        out = dig_full(outsider, net.gateway, "web1", "A", "+time=1")
        assert "timed out" in out or "no servers could be reached" in out, out
        out = dig_full(outsider, net.gateway, "web1", "A", "+time=1", "+tcp")
        assert "ANSWER SECTION" not in out and "status:" not in out, out
        assert dig(c1, net.gateway, "web1") == [env.ip(c1)]
    finally:
        subprocess.run(["ip", "link", "del", f"{RUN}o"], capture_output=True)


def test_malformed_packets_do_not_crash_the_daemon(env, netns):
    net = env.network("a")
    c1 = netns("a")
    env.add(net, c1, "web1")
    pid = daemon_pid(env.state)
    code = f"""
import os, random, socket, struct
random.seed(6)
gw, port = {net.gateway!r}, {PORT}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
good = struct.pack('>HHHHHH', 7, 0x0100, 1, 0, 0, 0) + b'\\x04web1\\x00' + struct.pack('>HH', 1, 1)
cases = [b'', b'\\x00', good[:11], good[:13], good[:-1], good + b'junk',
         struct.pack('>HHHHHH', 7, 0x8100, 1, 0, 0, 0) + good[12:],   # a response
         struct.pack('>HHHHHH', 7, 0x2800, 1, 0, 0, 0) + good[12:],   # opcode UPDATE
         struct.pack('>HHHHHH', 7, 0x0100, 2, 0, 0, 0) + good[12:],   # qdcount 2, one question
         struct.pack('>HHHHHH', 7, 0x0100, 0xffff, 0xffff, 0xffff, 0xffff) + good[12:],
         good[:12] + b'\\xc0\\x0c' + struct.pack('>HH', 1, 1),           # pointer loop
         good[:12] + b'\\x3f' + b'a' * 10,                               # label past the end
         b'\\xff' * 4000]
for _ in range(300):
    cases.append(os.urandom(random.randrange(1, 600)))
    m = bytearray(good)
    m[random.randrange(len(m))] = random.randrange(256)
    cases.append(bytes(m))
for c in cases:
    u.sendto(c, (gw, port))
for c in cases[:40]:
    t = socket.create_connection((gw, port), timeout=2)
    t.sendall(struct.pack('>H', len(c)) + c + b'\\x00\\x05abc')
    t.close()
t = socket.create_connection((gw, port), timeout=2)
t.sendall(b'\\xff\\xff' + b'x' * 100)   # a length it never sends
t.close()
print('sent', len(cases))
"""
    assert "sent" in c1.run("/usr/bin/python3", "-c", code)
    assert alive(pid)
    assert dig(c1, net.gateway, "web1") == [env.ip(c1)]


def test_tcp_several_queries_per_connection_and_truncation(env, netns, tmpdir_run):
    net = env.network("a")
    c1 = netns("a")
    env.add(net, c1, "web1")
    # An attachment with many addresses on the same network, registered directly with a
    # handmade prevResult: a name whose answer does not fit 512 bytes.
    ips = [f"{net.prefix}.{i}" for i in range(100, 160)]
    conf = dict(net.conflist()["plugins"][1], name=net.name, cniVersion="1.1.0")
    conf["args"] = {"cni": {"name": "big"}}
    conf["prevResult"] = {"cniVersion": "1.1.0",
                          "ips": [{"address": f"{ip}/24", "gateway": net.gateway} for ip in ips]}
    ok(run_plugin(PLUGIN, "ADD", conf, containerid=f"{RUN}-big", netns=c1.path))
    try:
        udp = dig_full(c1, net.gateway, "big", "A", "+noedns", "+ignore")
        assert " tc" in udp.split("flags:")[1].split(";")[0], udp
        small = dig(c1, net.gateway, "big", "A", "+noedns", "+ignore")
        assert 0 < len(small) < len(ips)
        edns = dig(c1, net.gateway, "big", "A", "+bufsize=4096")
        assert edns == sorted(ips)
        assert dig(c1, net.gateway, "big", "A", "+tcp") == sorted(ips)
        code = f"""
import socket, struct
def q(qid, name):
    m = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for l in name.split('.'):
        m += bytes([len(l)]) + l.encode()
    m += b'\\0' + struct.pack('>HH', 1, 1)
    return struct.pack('>H', len(m)) + m
t = socket.create_connection(({net.gateway!r}, {PORT}), timeout=3)
t.sendall(q(1, 'web1') + q(2, 'big') + q(3, 'web1.{DOMAIN}'))
buf = b''
got = []
while len(got) < 3:
    buf += t.recv(65536)
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack('>H', buf[:2])[0]:
        n = struct.unpack('>H', buf[:2])[0]
        m, buf = buf[2:2 + n], buf[2 + n:]
        got.append((struct.unpack('>H', m[:2])[0], struct.unpack('>H', m[6:8])[0]))
print(got)
"""
        assert c1.run("/usr/bin/python3", "-c", code).strip() == f"[(1, 1), (2, {len(ips)}), (3, 1)]"
    finally:
        run_plugin(PLUGIN, "DEL", conf, containerid=f"{RUN}-big", netns=c1.path)


# --- the CNI side ----------------------------------------------------------------------------


def test_podman_dnsname_conflist(env, netns, tmpdir_run):
    # podman's generated entry, with our binary installed under dnsname's name. stateDir, port
    # and resolvConf keep the test off the host's defaults.
    bindir = tmpdir_run / "bin"
    bindir.mkdir()
    (bindir / "dnsname").symlink_to(BIN / PLUGIN)
    env.search = [bindir, BIN, REF_BIN]
    net = env.network("p", domainName="dns.podman")
    c1, c2 = netns("a"), netns("b")
    extra = {"capabilities": {"aliases": True}}
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=podns;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID=x"
    r1, _ = env.add(net, c1, dns_type="dnsname", dns_extra=extra, args=args.format("web1"),
                    cap={"aliases": {net.name: ["web"], "othernet": ["never"]}})
    env.add(net, c2, dns_type="dnsname", dns_extra=extra, args=args.format("web2"),
            cap={"aliases": {net.name: ["api"]}})
    assert r1["dns"]["nameservers"] == [net.gateway]
    assert r1["dns"]["search"] == ["dns.podman"]
    assert dig(c2, net.gateway, "web1.dns.podman") == [env.ip(c1)]
    assert dig(c2, net.gateway, "web") == [env.ip(c1)]
    assert dig(c1, net.gateway, "api.dns.podman") == [env.ip(c2)]
    assert dig(c1, net.gateway, "never") == []


def test_check_status_gc(env, netns):
    net = env.network("a")
    c1, c2 = netns("a"), netns("b")
    r1, _ = env.add(net, c1, "web1")
    env.add(net, c2, "web2")
    cid1, cid2 = env.attachments[0][2], env.attachments[1][2]
    cl = net.conflist()
    _, res = run_chain(cl, "CHECK", containerid=cid1, netns=c1.path, prev_result=r1)
    assert all(r.rc == 0 for r in res), res
    dns_conf = dict(cl["plugins"][1], name=net.name, cniVersion="1.1.0")
    ok(run_plugin(PLUGIN, "STATUS", dns_conf))
    gc = dict(dns_conf, **{"cni.dev/valid-attachments": [{"containerID": cid1, "ifname": "eth0"}]})
    ok(run_plugin(PLUGIN, "GC", gc))
    assert dig(c1, net.gateway, "web2") == []
    assert status(c1, net.gateway, f"web2.{DOMAIN}") == "NXDOMAIN"
    assert dig(c2, net.gateway, "web1") == [env.ip(c1)]
    res = run_plugin(PLUGIN, "CHECK", dict(dns_conf, prevResult=r1), containerid=cid2,
                     netns=c2.path)
    assert res.rc == 1 and res.code == 100, res
    # GC without the key (cnitool) removes nothing.
    ok(run_plugin(PLUGIN, "GC", dns_conf))
    assert dig(c2, net.gateway, "web1") == [env.ip(c1)]
    # STATUS when no daemon can be started.
    bad = dict(dns_conf, stateDir="/dev/null/dns")
    res = run_plugin(PLUGIN, "STATUS", bad)
    assert res.rc == 1 and res.code == 50, res


def test_corrupt_record_is_check_error_100_and_del_removes_it(env, netns):
    net = env.network("k")
    c1 = netns("k")
    r1, _ = env.add(net, c1, "web1")
    cid1 = env.attachments[0][2]
    record = env.state / "records" / net.name / f"{cid1}:eth0.json"
    assert record.exists()
    dns_conf = dict(net.conflist()["plugins"][1], name=net.name, cniVersion="1.1.0")
    ok(run_plugin(PLUGIN, "CHECK", dict(dns_conf, prevResult=r1), containerid=cid1,
                  netns=c1.path))
    record.write_text("{not json")
    res = run_plugin(PLUGIN, "CHECK", dict(dns_conf, prevResult=r1), containerid=cid1,
                     netns=c1.path)
    assert res.rc == 1 and res.code == 100 and res.json["msg"] == "state corrupt", res
    assert str(record) in res.json["details"], res
    ok(run_plugin(PLUGIN, "DEL", dict(dns_conf, prevResult=r1), containerid=cid1,
                  netns=c1.path))
    assert not record.exists()


def test_record_of_the_old_layout_is_served_checked_and_removed(env, netns):
    """A node upgraded while its containers run: the records dns-sidecar 0.1 wrote
    (<stateDir>/records/<network>@<containerID>@<ifname>.json) still count."""
    net = env.network("o")
    c1, c2 = netns("o"), netns("p")
    r1, _ = env.add(net, c1, "web1")
    env.add(net, c2, "web2")
    cid1, cid2 = env.attachments[0][2], env.attachments[1][2]
    records = env.state / "records"
    for cid in (cid1, cid2):
        (records / net.name / f"{cid}:eth0.json").rename(records / f"{net.name}@{cid}@eth0.json")
    assert kill_daemon(env.state)
    dns_conf = dict(net.conflist()["plugins"][1], name=net.name, cniVersion="1.1.0")
    ok(run_plugin(PLUGIN, "STATUS", dns_conf))  # starts a daemon, which loads them
    ok(run_plugin(PLUGIN, "CHECK", dict(dns_conf, prevResult=r1), containerid=cid1,
                  netns=c1.path))
    assert dig(c1, net.gateway, "web2") == [env.ip(c2)]
    # DEL removes one, GC the other.
    ok(run_plugin(PLUGIN, "DEL", dict(dns_conf, prevResult=r1), containerid=cid1,
                  netns=c1.path))
    assert not (records / f"{net.name}@{cid1}@eth0.json").exists()
    assert dig(c2, net.gateway, "web1") == []
    ok(run_plugin(PLUGIN, "GC", dict(dns_conf, **{"cni.dev/valid-attachments": []})))
    assert not (records / f"{net.name}@{cid2}@eth0.json").exists()
    assert sorted(p.name for p in records.rglob("*.json")) == []


def test_add_requires_prev_result_and_valid_names(env, tmpdir_run):
    net = env.network("a")
    conf = dict(net.conflist()["plugins"][1], name=net.name, cniVersion="1.1.0")
    res = run_plugin(PLUGIN, "ADD", conf, netns="/proc/1/ns/net",
                     env={"CNI_NETNS_OVERRIDE": "1"})
    assert res.rc == 1 and res.code == 7 and "prevResult" in res.json["details"], res
    conf["prevResult"] = {"cniVersion": "1.1.0",
                          "ips": [{"address": f"{net.prefix}.9/24", "gateway": net.gateway}]}
    for args, key in (("K8S_POD_NAME=bad name", "container name"),):
        res = run_plugin(PLUGIN, "ADD", conf, args=args, netns="/proc/1/ns/net",
                         env={"CNI_NETNS_OVERRIDE": "1"})
        assert res.rc == 1 and res.code == 7 and key in res.json["details"], res
    conf["runtimeConfig"] = {"aliases": ["ok", "no/slash"]}
    res = run_plugin(PLUGIN, "ADD", conf, netns="/proc/1/ns/net",
                     env={"CNI_NETNS_OVERRIDE": "1"})
    assert res.rc == 1 and res.code == 7 and "aliases" in res.json["details"], res
    # DEL of something never added, with no daemon: success.
    ok(run_plugin(PLUGIN, "DEL", conf, containerid="never"))
    assert daemon_pid(env.state) is None


def control(state, request: bytes):
    """One request line on the daemon's control socket; its reply, parsed."""
    import socket as so
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(state / "control.sock"))
    s.sendall(request + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    return json.loads(reply)


def test_hostile_control_requests_are_refused_and_touch_nothing(env, netns, tmpdir_run):
    net = env.network("h")
    c1 = netns("h")
    env.add(net, c1, "web1")
    pid = daemon_pid(env.state)
    # A record file outside the state dir, where "../" keys would lead.
    outside = tmpdir_run / "outside"
    outside.mkdir()
    (outside / "victim:eth0.json").write_text("keep me\n")
    rel = os.path.relpath(outside, env.state / "records")
    deep = b"[" * 100000 + b"]" * 100000
    refused = [
        deep,                                                 # deeper than any JSON we accept
        b'{"op":"add","record":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"op":"sync","network":""}',
        b'{"op":"sync","network":' + json.dumps(rel).encode() + b"}",
        b'{"op":"sync","network":7}',
        b'{"op":"del","network":' + json.dumps(rel).encode() +
        b',"containerID":"victim","ifname":"eth0"}',
        b'{"op":"del","network":"' + net.name.encode() + b'","containerID":"../x","ifname":"eth0"}',
        b'{"op":"check","network":"' + net.name.encode() + b'","containerID":"a","ifname":"a/b"}',
        b'{"op":"nonsense"}',
        b"\xff\xfe not even UTF-8",
    ]
    for req in refused:
        reply = control(env.state, req)
        assert reply["ok"] is False, (req[:80], reply)
    assert alive(pid)
    assert (outside / "victim:eth0.json").read_text() == "keep me\n"
    # The daemon still serves and takes good requests.
    assert dig(c1, net.gateway, "web1") == [env.ip(c1)]
    assert control(env.state, b'{"op":"sync","network":"' + net.name.encode() + b'"}') == {"ok": True}
    assert dig(c1, net.gateway, "web1") == [env.ip(c1)]


def test_without_tether_dns_beside_it_add_fails_cleanly(env, tmpdir_run):
    """The daemon is tether-dns, started from the plugin's own directory: a dns-sidecar
    installed without it fails ADD with the CNI error naming it, and leaves no record behind;
    `dns-sidecar list` says what it could not run."""
    import shutil
    lone = Path(tmpdir_run) / "lone-bin"
    lone.mkdir()
    shutil.copy(BIN / PLUGIN, lone / PLUGIN)
    net = env.network("a")
    conf = dict(net.conflist()["plugins"][1], name=net.name, cniVersion="1.1.0")
    conf["prevResult"] = {"cniVersion": "1.1.0",
                          "ips": [{"address": f"{net.prefix}.9/24", "gateway": net.gateway}]}
    res = run_plugin(PLUGIN, "ADD", conf, bindir=lone, netns="/proc/1/ns/net",
                     env={"CNI_NETNS_OVERRIDE": "1"})
    assert res.rc == 1 and res.code == 50, res
    assert str(lone / "tether-dns") in res.json["msg"] + res.json.get("details", ""), res
    records = Path(env.state) / "records"
    assert not records.exists() or not any(records.rglob("*.json")), list(records.rglob("*"))
    assert daemon_pid(env.state) is None
    out = subprocess.run([str(lone / PLUGIN), "list", "--state-dir", str(env.state)],
                         capture_output=True, text=True)
    assert out.returncode == 127 and "tether-dns" in out.stderr, out
