"""bridge: the built plugin in real namespaces with real traffic.

Topology. Most tests run the plugin inside a namespace H that plays the host: the bridge, the
host ends of the veths, tether's nftables table, the forwarding sysctls and br_netfilter's
bridge-nf-call-iptables (per network namespace since Linux 5.3) all live in H, so toggling them
cannot disturb this machine or other tests running at the same time. Containers are namespaces
C*, and an "outside host" O is joined to H by a veth pair we create, with routes only for this
run's 10.x test subnets. A few tests run the plugin in the real host namespace to show that path
works too; they name everything with RUN and remove it.
"""
import json
import random
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, REF_BIN, RUN, ok, run_plugin, sh

# This run's test addresses: 10.<NET>.<n>.0/24 per network; 10.<NET>.250.0/30 is H <-> O.
NET = random.randint(64, 191)
HOST_O = f"10.{NET}.250.1"  # H's address towards O
OUT_O = f"10.{NET}.250.2"  # O's address
_subnets = iter(range(1, 240))


def subnet():
    return f"10.{NET}.{next(_subnets)}"


# ---- traffic helpers (python3 in the namespaces; no ping/tcpdump needed) ----------------------

PING = r"""
import os, socket, struct, sys, time
dst = sys.argv[1]
v6 = ':' in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
def csum(b):
    b += b'\0' * (len(b) % 2)
    s_ = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s_ = (s_ >> 16) + (s_ & 0xffff); s_ += s_ >> 16
    return ~s_ & 0xffff
req, rep = (128, 129) if v6 else (8, 0)
pkt = struct.pack('!BBHHH', req, 0, 0, ident, 1) + b'tether'
if not v6:
    pkt = struct.pack('!BBHHH', req, 0, csum(pkt), ident, 1) + b'tether'
s.settimeout(0.3)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    s.sendto(pkt, (dst, 0))
    try:
        while True:
            data, addr = s.recvfrom(1500)
            off = 0 if v6 else (data[0] & 15) * 4
            t, _, _, i, _ = struct.unpack('!BBHHH', data[off:off + 8])
            if t == rep and i == ident:
                sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""

SERVER = r"""
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, int(sys.argv[2])))
s.listen(64)
print('ready', flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.settimeout(float(sys.argv[3]))
    print(c.recv(100).decode())
except OSError:
    sys.exit(1)
"""


def ping(ns, dst, wait=1.5):
    """True when `dst` answers an ICMP echo from namespace `ns`."""
    return subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", PING, dst, str(wait)],
                          capture_output=True).returncode == 0


def tcp_peer(ns, dst, port, wait=1.5):
    """Connects from `ns` to dst:port; returns the source address the server saw, or None."""
    p = subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", CLIENT, dst, str(port),
                        str(wait)], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


@pytest.fixture
def servers():
    """Factory: servers(ns, addr, port) starts a TCP server that answers with the peer address."""
    procs = []

    def start(ns, addr, port):
        p = subprocess.Popen(["ip", "netns", "exec", ns.name, "python3", "-c", SERVER, addr,
                              str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.strip() == "ready", p.stderr.read() if p.poll() is not None else line
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


# ---- the lab: H (host), containers, O (outside) ------------------------------------------------


class Lab:
    def __init__(self, netns, tmp):
        self._netns = netns
        self.tmp = tmp
        self.h = netns("h")
        self.table = f"{RUN}-t"
        self.state = tmp / "state"
        self.ipam_dir = tmp / "ipam"
        self.fake_log = tmp / "fake-ipam.log"
        self.fake_type = f"{RUN}-ipam"
        bindir = tmp / "bin"
        bindir.mkdir(exist_ok=True)
        fake = bindir / self.fake_type
        fake.write_text(FAKE_IPAM)
        fake.chmod(0o755)
        self.path = f"{bindir}:{BIN}:{REF_BIN}"
        self.o = None

    def conf(self, br, sub=None, version="1.0.0", ipam=True, **keys):
        """A bridge config: bridge RUN+br; `ipam` as given, or host-local on <sub>.0/24."""
        c = {"cniVersion": version, "name": f"{RUN}-{br}", "type": "bridge",
             "bridge": f"{RUN}{br}", "nftTable": self.table, "stateDir": str(self.state)}
        if isinstance(ipam, dict):
            c["ipam"] = ipam
        elif ipam and sub:
            c["ipam"] = {"type": "host-local", "subnet": f"{sub}.0/24",
                         "dataDir": str(self.ipam_dir)}
        c.update(keys)
        return c

    def fake_ipam(self, ips, fail=None, routes=None):
        return {"type": self.fake_type, "log": str(self.fake_log), "ips": ips,
                "routes": routes or [], "fail": fail or {}}

    def fake_calls(self):
        return self.fake_log.read_text().split("\n")[:-1] if self.fake_log.exists() else []

    def run(self, cmd, conf, ctr=None, cid="ctr1", ifname="eth0", args=None, env=None,
            in_host=False, bridge_bin=None):
        return run_plugin("bridge", cmd, conf, containerid=cid, netns=ctr.path if ctr else "",
                          ifname=ifname, args=args, env=env, path=self.path,
                          ns=None if in_host else self.h.name, bindir=bridge_bin)

    def add(self, conf, ctr, cid=None, **kw):
        return ok(self.run("ADD", conf, ctr, cid=cid or ctr.name, **kw))

    def container(self, suffix="c"):
        return self._netns(suffix)

    def outside(self):
        """O: a namespace joined to H by a veth pair, routing this run's 10.NET/16 back to H."""
        if self.o:
            return self.o
        self.o = self._netns("o")
        sh("ip", "link", "add", "o0", "netns", self.h.name, "type", "veth", "peer", "name", "h0",
           "netns", self.o.name)
        self.h.run("ip", "addr", "add", f"{HOST_O}/30", "dev", "o0")
        self.h.run("ip", "link", "set", "o0", "up")
        self.o.run("ip", "addr", "add", f"{OUT_O}/30", "dev", "h0")
        self.o.run("ip", "link", "set", "h0", "up")
        self.o.run("ip", "route", "add", f"10.{NET}.0.0/16", "via", HOST_O)
        self.h.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        return self.o

    def nft(self, *args, ns=None):
        return (ns or self.h).run("nft", *args)

    def elements(self, set_name, family="inet", ns=None):
        """The elements of one of tether's sets as nft -j prints them ([] when absent)."""
        out = subprocess.run(["ip", "netns", "exec", (ns or self.h).name, "nft", "-j", "list",
                              "set", family, self.table, set_name], capture_output=True,
                             text=True)
        if out.returncode != 0:
            return []
        for obj in json.loads(out.stdout)["nftables"]:
            if "set" in obj or "map" in obj:
                return (obj.get("set") or obj.get("map")).get("elem", [])
        return []

    def link(self, name, ns=None):
        out = (ns or self.h).run("ip", "-j", "-d", "link", "show", name, check=False)
        return json.loads(out)[0] if out.strip() else None

    def addrs(self, ns, dev):
        return [f"{a['local']}/{a['prefixlen']}"
                for a in json.loads(ns.run("ip", "-j", "addr", "show", dev))[0]["addr_info"]
                if a.get("scope") != "link"]


FAKE_IPAM = """#!/usr/bin/python3
# A recording IPAM for the tests: logs each call, answers ADD with the configured ips, fails a
# verb on request with the configured CNI error code.
import json, os, sys
conf = json.load(sys.stdin)
ipam = conf["ipam"]
cmd = os.environ.get("CNI_COMMAND", "")
with open(ipam["log"], "a") as f:
    f.write(cmd + " " + os.environ.get("CNI_CONTAINERID", "") + "\\n")
code = ipam.get("fail", {}).get(cmd)
if code:
    print(json.dumps({"cniVersion": conf["cniVersion"], "code": code, "msg": "fake " + cmd}))
    sys.exit(1)
if cmd == "ADD":
    print(json.dumps({"cniVersion": conf["cniVersion"], "ips": ipam["ips"],
                      "routes": ipam.get("routes", []), "dns": ipam.get("dns", {})}))
"""


@pytest.fixture
def lab(netns, tmpdir_run):
    return Lab(netns, tmpdir_run)


def brnf(ns):
    return ns.run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").strip()


# ---- ADD: result, links, addresses, routes; CHECK; DEL ------------------------------------------


def test_add_result_links_addresses_check_del(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("b", sub, isGateway=True)
    res = lab.add(conf, c)
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == f"{RUN}b" and names[1].startswith("veth") and names[2] == "eth0"
    assert res["interfaces"][2]["sandbox"] == c.path
    assert "sandbox" not in res["interfaces"][0] and "sandbox" not in res["interfaces"][1]
    assert res["ips"] == [{"address": f"{sub}.2/24", "gateway": f"{sub}.1", "interface": 2}]
    br, veth = lab.link(f"{RUN}b"), lab.link(names[1])
    assert br["linkinfo"]["info_kind"] == "bridge" and "UP" in br["flags"]
    assert res["interfaces"][0]["mac"] == br["address"]
    assert res["interfaces"][1]["mac"] == veth["address"]
    assert veth["master"] == f"{RUN}b" and veth["operstate"] == "UP"
    assert lab.addrs(lab.h, f"{RUN}b") == [f"{sub}.1/24"]
    cl = lab.link("eth0", ns=c)
    assert cl["address"] == res["interfaces"][2]["mac"] and "UP" in cl["flags"]
    assert lab.addrs(c, "eth0") == [f"{sub}.2/24"]
    assert c.run("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").strip() == "1"
    assert c.run("cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad").strip() == "0"
    assert lab.h.run("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert lab.h.run("cat", f"/proc/sys/net/ipv6/conf/{RUN}b/accept_ra").strip() == "0"
    assert ping(c, f"{sub}.1")

    conf_prev = dict(conf, prevResult=res)
    ok(lab.run("CHECK", conf_prev, c, cid=c.name))
    ok(lab.run("DEL", conf_prev, c, cid=c.name))
    assert lab.link("eth0", ns=c) is None and lab.link(names[1]) is None
    assert not list((lab.ipam_dir / conf["name"]).glob(f"{sub}.*"))
    assert not list((lab.state / conf["name"]).glob("*.json"))
    ok(lab.run("DEL", conf_prev, c, cid=c.name))  # idempotent


def test_add_twice_same_ifname_fails_and_leaves_first(lab):
    c = lab.container()
    conf = lab.conf("b", subnet())
    lab.add(conf, c)
    r = lab.run("ADD", conf, c, cid="other")
    assert r.rc != 0 and "already exists" in r.json["msg"]
    assert len(lab.addrs(c, "eth0")) == 1
    # It failed before IPAM and before creating anything: one port on the bridge, one lease.
    assert len(list((lab.ipam_dir / conf["name"]).glob(f"10.{NET}.*"))) == 1
    assert len([l for l in json.loads(lab.h.run("ip", "-j", "link"))
                if l.get("master") == f"{RUN}b"]) == 1


def test_dual_stack_default_gateway_and_forwarding(lab):
    sub = subnet()
    c = lab.container()
    v6 = f"fd{NET:02x}:{next(_subnets):x}::"
    conf = lab.conf("b", isDefaultGateway=True, ipam={
        "type": "host-local", "dataDir": str(lab.ipam_dir),
        "ranges": [[{"subnet": f"{sub}.0/24"}], [{"subnet": f"{v6}/64"}]]})
    res = lab.add(conf, c)
    assert [i["address"] for i in res["ips"]] == [f"{sub}.2/24", f"{v6}2/64"]
    assert [i["gateway"] for i in res["ips"]] == [f"{sub}.1", f"{v6}1"]
    assert all(i["interface"] == 2 for i in res["ips"])
    assert {"dst": "0.0.0.0/0", "gw": f"{sub}.1"} in res["routes"]
    assert {"dst": "::/0", "gw": f"{v6}1"} in res["routes"]
    assert lab.addrs(lab.h, f"{RUN}b") == [f"{sub}.1/24", f"{v6}1/64"]
    routes = c.run("ip", "-6", "route", "show", "default")
    assert f"via {v6}1" in routes
    assert f"default via {sub}.1" in c.run("ip", "route", "show", "default")
    assert lab.h.run("cat", "/proc/sys/net/ipv6/conf/all/forwarding").strip() == "1"
    # No DAD by default: the address is usable at once (no "tentative" flag).
    assert "tentative" not in c.run("ip", "-6", "addr", "show", "dev", "eth0")
    assert ping(c, f"{v6}1") and ping(c, f"{sub}.1")
    ok(lab.run("CHECK", dict(conf, prevResult=res), c, cid=c.name))
    ok(lab.run("DEL", dict(conf, prevResult=res), c, cid=c.name))


# ---- every reference key ------------------------------------------------------------------------


def test_mtu_hairpin_promisc_port_isolation(lab):
    c = lab.container()
    res = lab.add(lab.conf("b", subnet(), mtu=1400, hairpinMode=True, portIsolation=True), c)
    veth = lab.link(res["interfaces"][1]["name"])
    assert veth["mtu"] == 1400 and lab.link("eth0", ns=c)["mtu"] == 1400
    assert lab.link(f"{RUN}b")["mtu"] == 1400
    slave = veth["linkinfo"]["info_slave_data"]
    assert slave["hairpin"] is True and slave["isolated"] is True
    c2 = lab.container()
    lab.add(lab.conf("p", subnet(), promiscMode=True), c2)
    assert "PROMISC" in lab.link(f"{RUN}p")["flags"]
    r = lab.run("ADD", lab.conf("x", subnet(), promiscMode=True, hairpinMode=True), c2, cid="x")
    assert r.rc != 0 and r.code == 7 and "hairpin" in r.json["details"]


def _port_vlans(lab, port):
    out = json.loads(lab.h.run("bridge", "-j", "vlan", "show", "dev", port))
    return {v["vlan"]: set(v.get("flags", [])) for v in out[0]["vlans"]} if out else {}


def _vlan_filtering_supported():
    """Whether this kernel has CONFIG_BRIDGE_VLAN_FILTERING (probed in a scratch namespace)."""
    name = f"{RUN}-vlanprobe"
    sh("ip", "netns", "add", name)
    try:
        return subprocess.run(["ip", "netns", "exec", name, "ip", "link", "add", "b", "type",
                               "bridge", "vlan_filtering", "1"],
                              capture_output=True).returncode == 0
    finally:
        sh("ip", "netns", "del", name)


VLAN_FILTERING = _vlan_filtering_supported()


def test_vlan_without_kernel_support_fails_cleanly_like_the_reference(lab, netns):
    """On a kernel without VLAN filtering both implementations refuse vlan/vlanTrunk; ours
    says why and leaves nothing behind. (With support, the tests below check the VLANs.)"""
    if VLAN_FILTERING:
        return
    for who, bindir in (("ref", REF_BIN), ("tether", BIN)):
        c = lab.container()
        conf = lab.conf("v" + who[0], subnet(), vlan=10)
        r = lab.run("ADD", conf, c, cid=c.name, bridge_bin=bindir)
        assert r.rc != 0
        assert lab.link("eth0", ns=c) is None and lab.link(f"{RUN}v{who[0]}") is None
        if who == "tether":
            assert "VLAN filtering" in r.json["details"]
            assert not (lab.state / conf["name"]).exists()


def test_vlan_trunk_preserve_default(lab):
    if not VLAN_FILTERING:
        return  # covered by the test above on this kernel
    c1, c2, c3 = lab.container(), lab.container(), lab.container()
    sub = subnet()
    r1 = lab.add(lab.conf("v", sub, vlan=10), c1)
    br = lab.link(f"{RUN}v")
    assert br["linkinfo"]["info_data"]["vlan_filtering"] == 1
    assert _port_vlans(lab, r1["interfaces"][1]["name"]) == {10: {"PVID", "Egress Untagged"}}
    r2 = lab.add(lab.conf("v", sub, vlanTrunk=[{"id": 20}, {"minID": 30, "maxID": 31}]), c2)
    assert _port_vlans(lab, r2["interfaces"][1]["name"]) == {
        1: {"PVID", "Egress Untagged"}, 20: set(), 30: set(), 31: set()}
    r3 = lab.add(lab.conf("v", sub, vlan=10, preserveDefaultVlan=True), c3)
    assert _port_vlans(lab, r3["interfaces"][1]["name"]) == {
        1: set(), 10: {"PVID", "Egress Untagged"}}


def test_vlan_gateway_interface(lab):
    if not VLAN_FILTERING:
        return  # covered by test_vlan_without_kernel_support_fails_cleanly_like_the_reference
    sub = subnet()
    c = lab.container()
    res = lab.add(lab.conf("g", sub, vlan=7, isGateway=True), c)
    gw = f"{RUN}g.7"
    assert [i["name"] for i in res["interfaces"]][3] == gw
    assert lab.addrs(lab.h, gw) == [f"{sub}.1/24"] and lab.addrs(lab.h, f"{RUN}g") == []
    assert ping(c, f"{sub}.1")


def test_macspoofchk(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("m", sub, isGateway=True, macspoofchk=True)
    res = lab.add(conf, c)
    veth, mac = res["interfaces"][1]["name"], res["interfaces"][2]["mac"]
    assert [e for e in lab.elements("spoof_ports", "bridge")] == [veth]
    assert ping(c, f"{sub}.1")
    # A frame with another source MAC is dropped at the bridge port.
    def set_mac(m):
        c.run("ip", "link", "set", "eth0", "down")
        c.run("ip", "link", "set", "eth0", "address", m)
        c.run("ip", "link", "set", "eth0", "up")
        c.run("ip", "neigh", "flush", "all")

    set_mac("02:00:00:00:be:ef")
    assert not ping(c, f"{sub}.1", wait=1)
    set_mac(mac)
    assert ping(c, f"{sub}.1")
    ok(lab.run("DEL", conf, None, cid=c.name))
    assert lab.elements("spoof_ports", "bridge") == []
    assert lab.elements("spoof_allowed", "bridge") == []


def test_enabledad_and_disable_container_interface(lab):
    c = lab.container()
    v6 = f"fd{NET:02x}:{next(_subnets):x}::"
    lab.add(lab.conf("d", enabledad=True, isGateway=True, ipam={
        "type": "host-local", "dataDir": str(lab.ipam_dir), "subnet": f"{v6}/64"}), c)
    assert c.run("cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad").strip() == "1"
    assert c.run("cat", "/proc/sys/net/ipv6/conf/eth0/enhanced_dad").strip() == "1"
    # ADD waited for DAD (there is a v6 gateway): nothing is tentative any more.
    assert "tentative" not in c.run("ip", "-6", "addr", "show", "dev", "eth0")

    c2 = lab.container()
    res = lab.add(lab.conf("l2", disableContainerInterface=True), c2)
    assert "ips" not in res or res["ips"] == []
    assert "UP" not in lab.link("eth0", ns=c2)["flags"]
    r = lab.run("ADD", lab.conf("l2", subnet(), disableContainerInterface=True), c2, cid="y",
                ifname="eth1")
    assert r.code == 7 and "DisableContainerInterface" in r.json["details"]
    c3 = lab.container()
    lab.add(lab.conf("l2"), c3)  # L2 without IPAM: the interface is up
    assert "UP" in lab.link("eth0", ns=c3)["flags"]


def test_dns_overrides_ipam_dns(lab):
    c = lab.container()
    dns = {"nameservers": ["10.9.9.9"], "search": ["example"], "domain": "d", "options": ["x"]}
    res = lab.add(lab.conf("n", subnet(), dns=dns), c)
    assert res["dns"] == dns


def test_dns_merges_per_field(lab):
    """runtime `dns` capability > network `dns` > IPAM's (the host's resolv.conf), per field."""
    rc = lab.tmp / "resolv.conf"
    rc.write_text("nameserver 10.0.0.53\nsearch host.example\noptions ndots:2\n")
    sub = subnet()
    ipam = {"type": "host-local", "subnet": f"{sub}.0/24", "dataDir": str(lab.ipam_dir),
            "resolvConf": str(rc)}
    # The cookbook's --dns-search alone: the host's nameserver and options stay.
    c1 = lab.container()
    conf = lab.conf("dm", ipam=ipam, dns={"search": ["net.example"]})
    res = lab.add(conf, c1)
    assert res["dns"] == {"nameservers": ["10.0.0.53"], "search": ["net.example"],
                          "options": ["ndots:2"]}
    # The runtime's servers (containerd's Go names) over everything, the network's search kept.
    c2 = lab.container()
    res = lab.add(dict(conf, runtimeConfig={"dns": {"Servers": ["10.2.0.1"], "Options": ["x"]}}),
                  c2)
    assert res["dns"] == {"nameservers": ["10.2.0.1"], "search": ["net.example"],
                          "options": ["x"]}
    # An IPAM other than host-local: bridge merges over whatever dns it returned.
    c3 = lab.container()
    fake = lab.fake_ipam([{"address": f"{sub}.200/24"}])
    fake["dns"] = {"nameservers": ["10.0.0.54"], "domain": "fake.example", "options": ["y"]}
    res = lab.add(lab.conf("dm", ipam=fake, dns={"nameservers": ["10.1.0.1"]}), c3)
    assert res["dns"] == {"nameservers": ["10.1.0.1"], "domain": "fake.example",
                          "options": ["y"]}
    # L2 only: no IPAM layer, the network's and the runtime's fields alone.
    c4 = lab.container()
    res = lab.add(lab.conf("dl", dns={"search": ["l2.example"]},
                           runtimeConfig={"dns": {"servers": ["10.2.0.2"]}}), c4)
    assert res["dns"] == {"nameservers": ["10.2.0.2"], "search": ["l2.example"]}
    for c, cf in ((c1, conf), (c2, conf), (c3, lab.conf("dm", ipam=fake)), (c4, lab.conf("dl"))):
        ok(lab.run("DEL", cf, c, cid=c.name))
    assert not [p for p in (lab.ipam_dir / f"{RUN}-dm").iterdir()
                if p.name != "lock" and not p.name.startswith("last_reserved_ip")]


def test_mac_precedence(lab):
    conf = lab.conf("mac", subnet())
    # IgnoreUnknown: host-local (ours and the reference) refuses a CNI_ARGS MAC otherwise.
    args = "IgnoreUnknown=1;MAC=02:00:00:00:01:01"
    cases = [({}, args, "02:00:00:00:01:01"),
             ({"args": {"cni": {"mac": "02:00:00:00:01:02"}}}, args, "02:00:00:00:01:02"),
             ({"args": {"cni": {"mac": "02:00:00:00:01:02"}},
               "runtimeConfig": {"mac": "02:00:00:00:01:03"}}, args, "02:00:00:00:01:03")]
    for extra, args, want in cases:
        c = lab.container()
        res = lab.add(dict(conf, **extra), c, args=args)
        assert res["interfaces"][2]["mac"] == want == lab.link("eth0", ns=c)["address"]


def test_force_address(lab):
    sub = subnet()
    lab.h.run("ip", "link", "add", f"{RUN}f", "type", "bridge")
    lab.h.run("ip", "addr", "add", f"{sub}.99/24", "dev", f"{RUN}f")
    c = lab.container()
    conf = lab.conf("f", sub, isGateway=True)
    r = lab.run("ADD", conf, c, cid=c.name)
    assert r.rc != 0 and "already has an IP address different from" in r.json["details"]
    # Rolled back: no container interface, no lease, no attachment state.
    assert lab.link("eth0", ns=c) is None
    assert not list((lab.ipam_dir / conf["name"]).glob(f"{sub}.*"))
    assert not list((lab.state / conf["name"]).glob("*.json"))
    lab.add(dict(conf, forceAddress=True), c)
    assert lab.addrs(lab.h, f"{RUN}f") == [f"{sub}.1/24"]


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_ipmasq_backend_accepted_and_done_in_nftables(lab, backend):
    sub = subnet()
    c = lab.container()
    lab.add(lab.conf("q", sub, isGateway=True, ipMasq=True, ipMasqBackend=backend), c)
    assert lab.elements("masq4") == [f"{sub}.2"]
    # Whatever the backend is called, the rules are in tether's table and nowhere else.
    assert lab.h.run("nft", "list", "tables").split("\n")[:-1] == [f"table inet {lab.table}"]


# ---- Docker's switches, with real traffic -------------------------------------------------------


@pytest.mark.parametrize("call_iptables", ["0", "1"])
def test_icc_false_blocks_containers_not_gateway(lab, servers, call_iptables):
    o = lab.outside()
    host_value = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text()
    lab.h.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={call_iptables}")
    assert brnf(lab.h) == call_iptables
    sub = subnet()
    c1, c2 = lab.container(), lab.container()
    conf = lab.conf("i", sub, isDefaultGateway=True, icc=False)
    lab.add(conf, c1)
    lab.add(conf, c2)
    servers(c2, "0.0.0.0", 8000)
    servers(lab.h, f"{sub}.1", 8001)
    assert tcp_peer(c1, f"{sub}.3", 8000, wait=1) is None
    assert not ping(c1, f"{sub}.3", wait=1)
    assert not ping(c2, f"{sub}.2", wait=1)
    # The routed path too: a host route through the gateway instead of ARP on the link.
    c1.run("ip", "route", "add", f"{sub}.3/32", "via", f"{sub}.1")
    assert tcp_peer(c1, f"{sub}.3", 8000, wait=1) is None
    assert not ping(c1, f"{sub}.3", wait=1)
    assert ping(c1, f"{sub}.1") and tcp_peer(c1, f"{sub}.1", 8001) == f"{sub}.2"

    # A published port (DNAT on the host, as portmap does, with its hairpin masquerade) stays
    # reachable from outside; the neighbour cannot use it to get round icc=false (Docker's
    # nftables model: the ICC drop comes before the published-port accept).
    pub = f"""table ip {RUN}-pub {{
      chain pre {{ type nat hook prerouting priority dstnat; ip daddr {{ {sub}.1, {HOST_O} }} tcp dport 9000 dnat to {sub}.3:8000; }}
      chain post {{ type nat hook postrouting priority srcnat; ct status dnat ip saddr {sub}.0/24 masquerade; }}
    }}"""
    lab.h.run("nft", "-f", "-", input=pub)
    assert tcp_peer(o, HOST_O, 9000) == OUT_O
    assert tcp_peer(c1, f"{sub}.1", 9000, wait=1) is None
    # icc=true on the same bridge lets them talk again (the verdict map entry is replaced).
    c3 = lab.container()
    lab.add(dict(conf, icc=True), c3)
    c1.run("ip", "route", "del", f"{sub}.3/32")
    # Ports already isolated stay so until re-added; the new one is not isolated.
    assert ping(c3, f"{sub}.3") and tcp_peer(c3, f"{sub}.3", 8000) == f"{sub}.4"
    # The machine's own br_netfilter setting was not touched.
    assert Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text() == host_value


UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print('ready', flush=True)
while True:
    data, peer = s.recvfrom(100)
    s.sendto(peer[0].encode(), peer)
"""

UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(100).decode())
except OSError:
    sys.exit(1)
"""


def udp_peer(ns, dst, port):
    p = subprocess.run(["ip", "netns", "exec", ns.name, "python3", "-c", UDP_ASK, dst, str(port)],
                       capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


@pytest.mark.parametrize("call_iptables", ["0", "1"])
def test_icc_false_link_opens_exactly_its_ports(lab, servers, call_iptables):
    """Docker's --icc=false + --link web1: web2 reaches web1's linked ports, nothing else."""
    host_value = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text()
    lab.h.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={call_iptables}")
    sub = subnet()
    web1, web2, other = lab.container(), lab.container(), lab.container()
    conf = lab.conf("k", sub, version="1.1.0", isDefaultGateway=True, icc=False)
    lab.add(conf, web1)  # .2
    link = {"cni": {"links": [{"peer": f"{sub}.2", "ports": ["8000/tcp", "5353/udp"]}]}}
    linked = dict(conf, args=link)
    res2 = lab.add(linked, web2)  # .3
    lab.add(conf, other)  # .4
    for ns, port in ((web1, 8000), (web1, 8001), (web2, 8000), (other, 8000)):
        servers(ns, "0.0.0.0", port)
    udp = [subprocess.Popen(["ip", "netns", "exec", web1.name, "python3", "-c", UDP_ECHO,
                             "0.0.0.0", str(port)], stdout=subprocess.PIPE, text=True)
           for port in (5353, 5354)]
    try:
        for p in udp:
            assert p.stdout.readline().strip() == "ready"
        # The linked ports, with the container's own source address (no NAT on the way).
        assert tcp_peer(web2, f"{sub}.2", 8000) == f"{sub}.3"
        assert udp_peer(web2, f"{sub}.2", 5353) == f"{sub}.3"
        # Nothing else from web2 to web1; nothing from web1 to web2, not even from a linked port.
        assert tcp_peer(web2, f"{sub}.2", 8001, wait=1) is None
        assert udp_peer(web2, f"{sub}.2", 5354) is None
        assert not ping(web2, f"{sub}.2", wait=1)
        assert tcp_peer(web1, f"{sub}.3", 8000, wait=1) is None
        assert not ping(web1, f"{sub}.3", wait=1)
        # The link is web2's alone, and only towards web1.
        assert tcp_peer(other, f"{sub}.2", 8000, wait=1) is None
        assert tcp_peer(web2, f"{sub}.4", 8000, wait=1) is None
        assert sorted((e["concat"][1], e["concat"][2], e["concat"][4])
                      for e in lab.elements("links4")) == [(f"{sub}.3", f"{sub}.2", 5353),
                                                          (f"{sub}.3", f"{sub}.2", 8000)]
        ok(lab.run("CHECK", dict(linked, prevResult=res2), web2, cid=web2.name))
        # The nft CLI reads the chain back (what an operator sees).
        chain = lab.nft("list", "chain", "inet", lab.table, "icc_false")
        assert 'comment "link v4"' in chain and 'comment "link replies v4"' in chain

        # DEL of the linking container removes its link; the peer's DEL would not have.
        ok(lab.run("DEL", linked, web2, cid=web2.name))
        assert lab.elements("links4") == []
        # Re-added with the link, then GC'd as stale: removed again, and the path is closed.
        lab.add(linked, web2)
        assert tcp_peer(web2, f"{sub}.2", 8000) is not None
        valid = {"cni.dev/valid-attachments": [{"containerID": c.name, "ifname": "eth0"}
                                               for c in (web1, other)]}
        ok(lab.run("GC", dict(conf, **valid)))
        assert lab.elements("links4") == []
        assert tcp_peer(web2, f"{sub}.2", 8000, wait=1) is None
    finally:
        for p in udp:
            p.kill()
            p.wait()
        lab.h.run("sysctl", "-qw", f"net.bridge.bridge-nf-call-iptables={host_value.strip()}")
    for c in (web1, other):
        ok(lab.run("DEL", conf, c, cid=c.name))
    assert lab.elements("links4") == [] and lab.elements("masq4") == []
    assert not (lab.state / conf["name"]).exists() or not list((lab.state / conf["name"]).iterdir())


@pytest.mark.parametrize("links, details", [
    ([{"peer": "10.0.0.5", "ports": ["80/icmp"]}], "args.cni.links[0].ports[0]"),
    ([{"peer": "10.0.0.5", "ports": ["0/tcp"]}], "args.cni.links[0].ports[0]"),
    ([{"peer": "10.0.0.5", "ports": []}], "args.cni.links[0].ports"),
    ([{"peer": "fd00::5", "ports": ["80"]}], "only IPv4 peers"),
    ([{"ports": ["80"]}], "args.cni.links[0].peer"),
    ("x", "args.cni.links"),
])
def test_icc_false_link_config_errors(lab, links, details):
    c = lab.container()
    r = lab.run("ADD", lab.conf("ke", subnet(), isGateway=True, icc=False,
                                args={"cni": {"links": links}}), c, cid=c.name)
    assert r.code == 7 and details in r.json["details"], r.json
    r = lab.run("ADD", lab.conf("kg", subnet(), icc=False,
                                args={"cni": {"links": [{"peer": "10.0.0.5", "ports": ["80"]}]}}),
                c, cid=c.name)
    assert r.code == 7 and "needs isGateway" in r.json["details"], r.json


def test_icc_true_containers_talk(lab, servers):
    sub = subnet()
    c1, c2 = lab.container(), lab.container()
    conf = lab.conf("t", sub, isGateway=True)
    lab.add(conf, c1)
    lab.add(conf, c2)
    servers(c2, "0.0.0.0", 8000)
    assert ping(c1, f"{sub}.3") and tcp_peer(c1, f"{sub}.3", 8000) == f"{sub}.2"


@pytest.mark.parametrize("masq", [True, False])
def test_ipmasq_seen_from_outside(lab, servers, masq):
    o = lab.outside()
    servers(o, OUT_O, 7000)
    sub = subnet()
    c = lab.container()
    lab.add(lab.conf("o", sub, isDefaultGateway=True, ipMasq=masq), c)
    assert tcp_peer(c, OUT_O, 7000) == (HOST_O if masq else f"{sub}.2")
    assert lab.elements("masq4") == ([f"{sub}.2"] if masq else [])


def test_internal_forwards_nothing(lab, servers):
    o = lab.outside()
    servers(o, OUT_O, 7000)
    sub = subnet()
    c1, c2 = lab.container(), lab.container()
    conf = lab.conf("n", sub, isDefaultGateway=True, ipMasq=True, internal=True)
    lab.add(conf, c1)
    lab.add(conf, c2)
    servers(c1, "0.0.0.0", 8000)
    servers(lab.h, f"{sub}.1", 8001)
    assert tcp_peer(c1, OUT_O, 7000, wait=1) is None
    assert not ping(c1, OUT_O, wait=1)
    assert tcp_peer(o, f"{sub}.2", 8000, wait=1) is None  # O routes 10.NET/16 via H
    assert not ping(o, f"{sub}.2", wait=1)
    assert lab.elements("masq4") == []  # no masquerade on an internal network
    assert ping(c2, f"{sub}.2") and tcp_peer(c2, f"{sub}.2", 8000) == f"{sub}.3"
    assert tcp_peer(c1, f"{sub}.1", 8001) == f"{sub}.2"  # the gateway (where DNS listens)


def test_isolate_between_bridges(lab, servers):
    o = lab.outside()
    servers(o, OUT_O, 7000)
    nets = {}
    for name, iso in (("a", True), ("b", True), ("c", False)):
        sub = subnet()
        ctr = lab.container(name)
        lab.add(lab.conf(name, sub, isDefaultGateway=True, isolate=iso), ctr)
        servers(ctr, "0.0.0.0", 8000)
        nets[name] = (ctr, f"{sub}.2")
    (ca, ipa), (cb, ipb), (cc, ipc) = nets["a"], nets["b"], nets["c"]
    assert tcp_peer(ca, ipb, 8000, wait=1) is None and tcp_peer(cb, ipa, 8000, wait=1) is None
    assert not ping(ca, ipb, wait=1) and not ping(cb, ipa, wait=1)
    # "Any other bridge that tether manages": the non-isolated one is cut off from them too.
    assert tcp_peer(cc, ipa, 8000, wait=1) is None and tcp_peer(ca, ipc, 8000, wait=1) is None
    # Everyone still routes to the outside.
    assert tcp_peer(cc, OUT_O, 7000) == ipc
    assert tcp_peer(ca, OUT_O, 7000) == ipa
    # A published port of A is reachable from B through the host's address (DNAT).
    pub = f"""table ip {RUN}-pub {{
      chain pre {{ type nat hook prerouting priority dstnat; ip daddr {HOST_O} tcp dport 9000 dnat to {ipa}:8000; }}
    }}"""
    lab.h.run("nft", "-f", "-", input=pub)
    assert tcp_peer(cb, HOST_O, 9000) == ipb
    assert tcp_peer(o, HOST_O, 9000) == OUT_O


def test_firewall_none_leaves_ruleset_byte_identical(lab):
    c0, c = lab.container(), lab.container()
    # A ruleset with something in it: tether's own table from another network, and a stranger's.
    lab.add(lab.conf("w", subnet(), isGateway=True, ipMasq=True, icc=False), c0)
    lab.h.run("nft", "add", "table", "ip", f"{RUN}-other")
    before = lab.h.run("nft", "list", "ruleset")
    conf = lab.conf("z", subnet(), isGateway=True, firewall="none")
    res = lab.add(conf, c)
    ok(lab.run("CHECK", dict(conf, prevResult=res), c, cid=c.name))
    ok(lab.run("DEL", dict(conf, prevResult=res), c, cid=c.name))
    assert lab.h.run("nft", "list", "ruleset") == before
    assert not (lab.state / conf["name"]).exists()
    r = lab.run("ADD", dict(conf, ipMasq=True), c, cid=c.name)
    assert r.code == 7 and "none" in r.json["details"]


# ---- DEL, CHECK, STATUS, GC ---------------------------------------------------------------------


def test_del_with_empty_netns_removes_only_that_attachment(lab):
    sub = subnet()
    c1, c2 = lab.container(), lab.container()
    conf = lab.conf("e", sub, isGateway=True, ipMasq=True, macspoofchk=True)
    r1 = lab.add(conf, c1)
    lab.add(conf, c2)
    assert sorted(lab.elements("masq4")) == [f"{sub}.2", f"{sub}.3"]
    ok(lab.run("DEL", conf, None, cid=c1.name))  # no CNI_NETNS, no prevResult
    assert lab.elements("masq4") == [f"{sub}.3"]
    assert [e["concat"][0] for e in lab.elements("masq_own4")] == [f"{sub}.3"]
    assert r1["interfaces"][1]["name"] not in lab.elements("spoof_ports", "bridge")
    assert len(lab.elements("spoof_allowed", "bridge")) == 1
    # The pair went with it although the netns was not named, and so did the lease and state.
    assert lab.link(r1["interfaces"][1]["name"]) is None and lab.link("eth0", ns=c1) is None
    assert not (lab.ipam_dir / conf["name"] / f"{sub}.2").exists()
    assert [p.name for p in (lab.state / conf["name"]).iterdir()] == [f"{c2.name}:eth0.json"]
    ok(lab.run("DEL", conf, None, cid=c1.name))
    ok(lab.run("DEL", conf, c1, cid=c1.name))


def test_del_idempotent_netns_gone_and_never_added(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("g", sub, isGateway=True, ipMasq=True)
    res = lab.add(conf, c)
    c.delete()  # the runtime removed the netns first
    prev = dict(conf, prevResult=res)
    ok(lab.run("DEL", prev, c, cid=c.name))
    assert lab.elements("masq4") == []
    ok(lab.run("DEL", prev, c, cid=c.name))
    ok(lab.run("DEL", conf, None, cid="never-added"))
    # Someone removed tether's table: DEL still succeeds and does not recreate it.
    c2 = lab.container()
    lab.add(conf, c2)
    lab.h.run("nft", "delete", "table", "inet", lab.table)
    ok(lab.run("DEL", conf, c2, cid=c2.name))
    assert lab.table not in lab.h.run("nft", "list", "tables")
    assert not (lab.state / conf["name"] / f"{c2.name}:eth0.json").exists()


def test_del_releases_the_lease_and_removes_the_veth_when_nftables_fails(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("n", sub, isGateway=True, ipMasq=True)
    res = lab.add(conf, c)
    host_veth = res["interfaces"][1]["name"]
    lease = lab.ipam_dir / conf["name"] / f"{sub}.2"
    state = lab.state / conf["name"] / f"{c.name}:eth0.json"
    assert lease.exists() and state.exists()
    # nftables refuses DEL's read: tether's table replaced by one whose masq4 set has another
    # key type (the kernel answers EINVAL for a key of the wrong length).
    lab.nft("delete", "table", "inet", lab.table)
    lab.nft("add", "table", "inet", lab.table)
    lab.nft("add", "set", "inet", lab.table, "masq4", "{ type inet_service; }")
    r = lab.run("DEL", dict(conf, prevResult=res), c, cid=c.name)
    assert r.rc != 0 and "masq4" in r.json["msg"] + r.json.get("details", ""), r
    # Everything else was still done: the lease is free, the pair is gone. The state file stays,
    # so that a DEL that can reach nftables removes the elements it names.
    assert not lease.exists()
    assert lab.link("eth0", ns=c) is None and lab.link(host_veth) is None
    assert state.exists()
    lab.nft("delete", "table", "inet", lab.table)
    ok(lab.run("DEL", dict(conf, prevResult=res), c, cid=c.name))
    assert not state.exists() and not lease.exists()
    assert lab.table not in lab.h.run("nft", "list", "tables")


def test_check_detects_missing_state(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("k", sub, isGateway=True, ipMasq=True)
    res = lab.add(conf, c)
    prev = dict(conf, prevResult=res)
    ok(lab.run("CHECK", prev, c, cid=c.name))
    r = lab.run("CHECK", conf, c, cid=c.name)
    assert r.rc != 0 and "prevResult" in r.json["msg"]
    lab.h.run("nft", "delete", "element", "inet", lab.table, "masq4", f"{{ {sub}.2 }}")
    r = lab.run("CHECK", prev, c, cid=c.name)
    assert r.rc != 0 and "masq4" in r.json["details"]
    lab.h.run("nft", "add", "element", "inet", lab.table, "masq4", f"{{ {sub}.2 }}")
    ok(lab.run("CHECK", prev, c, cid=c.name))
    c.run("ip", "addr", "del", f"{sub}.2/24", "dev", "eth0")
    r = lab.run("CHECK", prev, c, cid=c.name)
    assert r.rc != 0 and f"{sub}.2/24" in r.json["details"]
    bad = dict(prev, prevResult=dict(res, interfaces=[dict(res["interfaces"][0]),
                                                      dict(res["interfaces"][1]),
                                                      dict(res["interfaces"][2],
                                                           mac="02:00:00:00:00:09")]))
    r = lab.run("CHECK", bad, c, cid=c.name)
    assert r.rc != 0 and "MAC" in r.json["details"]


def test_corrupt_state_is_check_error_100_and_del_removes_it(lab):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("q", sub, isGateway=True, ipMasq=True)
    res = lab.add(conf, c)
    prev = dict(conf, prevResult=res)
    state = lab.state / conf["name"] / f"{c.name}:eth0.json"
    state.write_text("")  # what a power loss can leave: the file is not fsynced
    r = lab.run("CHECK", prev, c, cid=c.name)
    assert r.code == 100 and r.json["msg"] == "state corrupt", r
    assert str(state) in r.json["details"], r
    # DEL: the file names nothing, so the element it named stays; the file goes.
    ok(lab.run("DEL", prev, c, cid=c.name))
    assert not state.exists()
    assert lab.link("eth0", ns=c) is None
    assert not (lab.ipam_dir / conf["name"] / f"{sub}.2").exists()
    lab.nft("delete", "table", "inet", lab.table)


def test_check_delegates_to_ipam_and_rollback_runs_ipam_del(lab):
    sub = subnet()
    c = lab.container()
    ipam = lab.fake_ipam([{"address": f"{sub}.5/24", "gateway": f"{sub}.1"}])
    conf = lab.conf("y", isGateway=True, ipam=ipam)
    res = lab.add(conf, c)
    ok(lab.run("CHECK", dict(conf, prevResult=res), c, cid=c.name))
    assert lab.fake_calls() == [f"ADD {c.name}", f"CHECK {c.name}"]
    failing = dict(conf, ipam=dict(ipam, fail={"CHECK": 11}))
    r = lab.run("CHECK", dict(failing, prevResult=res), c, cid=c.name)
    assert r.code == 11
    # IPAM ADD fails: nothing is left; a failure after IPAM ADD: IPAM DEL runs.
    c2 = lab.container()
    r = lab.run("ADD", dict(conf, ipam=dict(ipam, fail={"ADD": 11})), c2, cid=c2.name)
    assert r.code == 11 and lab.link("eth0", ns=c2) is None
    lab.fake_log.unlink()
    # A route IPAM returns cannot be added (its gateway is not on-link): IPAM ADD had succeeded.
    unroutable = dict(ipam, routes=[{"dst": "10.254.0.0/16", "gw": "192.0.2.77"}])
    r = lab.run("ADD", dict(conf, ipam=unroutable), c2, cid=c2.name)
    assert r.rc != 0 and lab.link("eth0", ns=c2) is None
    assert lab.fake_calls() == [f"ADD {c2.name}", f"DEL {c2.name}"]
    assert not (lab.state / conf["name"] / f"{c2.name}:eth0.json").exists()


def test_status(lab):
    ipam = lab.fake_ipam([])
    conf = lab.conf("s", version="1.1.0", ipam=ipam)
    ok(lab.run("STATUS", conf))
    assert lab.fake_calls() == ["STATUS "]
    r = lab.run("STATUS", dict(conf, ipam=dict(ipam, fail={"STATUS": 50})))
    assert r.code == 50
    # nftables unusable (no CAP_NET_ADMIN) while the config needs it: 50; not needed: fine.
    l2 = lab.conf("s", version="1.1.0")
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": lab.path}
    p = subprocess.run(["ip", "netns", "exec", lab.h.name] + argv + [str(BIN / "bridge")],
                       input=json.dumps(l2), capture_output=True, text=True, env=env)
    assert p.returncode != 0 and json.loads(p.stdout)["code"] == 50, p
    p = subprocess.run(["ip", "netns", "exec", lab.h.name] + argv + [str(BIN / "bridge")],
                       input=json.dumps(dict(l2, firewall="none")), capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p


def test_gc_removes_stale_attachments_only(lab):
    sub = subnet()
    ipam = lab.fake_ipam([{"address": f"{sub}.7/24"}])
    conf = lab.conf("c", version="1.1.0", ipMasq=True, isGateway=True, ipam=ipam)
    c1, c2 = lab.container(), lab.container()
    lab.add(conf, c1)
    lab.add(dict(conf, ipam=dict(ipam, ips=[{"address": f"{sub}.8/24"}])), c2)
    assert sorted(lab.elements("masq4")) == [f"{sub}.7", f"{sub}.8"]
    ok(lab.run("GC", conf))  # no valid list: nothing is known to be stale
    assert len(lab.elements("masq4")) == 2
    valid = {"cni.dev/valid-attachments": [{"containerID": c1.name, "ifname": "eth0"}]}
    ok(lab.run("GC", dict(conf, **valid)))
    assert lab.elements("masq4") == [f"{sub}.7"]
    assert [e["concat"][0] for e in lab.elements("masq_own4")] == [f"{sub}.7"]
    assert [p.name for p in (lab.state / conf["name"]).iterdir()] == [f"{c1.name}:eth0.json"]
    assert lab.fake_calls().count("GC ") == 2
    ok(lab.run("GC", dict(conf, **{"cni.dev/attachments": []})))
    assert lab.elements("masq4") == []
    # The bridge itself gone: GC drops its policy elements as well.
    lab.h.run("ip", "link", "del", f"{RUN}c")
    ok(lab.run("GC", dict(conf, **valid)))
    assert lab.elements("bridges") == [] and lab.elements("same_bridge") == []


# ---- in the real host namespace -----------------------------------------------------------------


# ---- host-local carried in bridge's process (common/invoke.h) ------------------------------------


def _build_id(path):
    out = sh("readelf", "-n", str(path))
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


def _ipam_pids(log):
    """{plugin: set of pids} of the call lines ("ADD plugin=host-local ...") in a log file."""
    pids = {}
    for m in re.finditer(r"\[(\d+)\] info: \w+ plugin=([\w-]+) ", log.read_text()):
        pids.setdefault(m.group(2), set()).add(int(m.group(1)))
    return pids


def test_this_builds_host_local_runs_in_bridges_process_any_other_is_execd(lab):
    """bridge runs host-local's verbs itself when CNI_PATH's host-local is the binary of its own
    build (its GNU build ID), and execs any other: a copy whose build ID differs by one byte
    here. Both answer every verb alike, and leave the same lease files."""
    other = lab.tmp / "other-build"
    other.mkdir()
    data = (BIN / "host-local").read_bytes()
    bid = bytes.fromhex(_build_id(BIN / "host-local"))
    assert data.count(bid) == 1
    (other / "host-local").write_bytes(data.replace(bid, bid[:-1] + bytes([bid[-1] ^ 1])))
    (other / "host-local").chmod(0o755)
    assert _build_id(other / "host-local") != bid.hex()
    sides = {"carried": lab.path, "exec'd": f"{other}:{lab.path}"}
    seen = {}
    for side, path in sides.items():
        sub = subnet()
        ipam_dir = lab.tmp / f"ipam-{len(seen)}"
        log = lab.tmp / f"log-{len(seen)}"
        conf = lab.conf(f"i{len(seen)}", sub, version="1.1.0", isGateway=True,
                        ipam={"type": "host-local", "dataDir": str(ipam_dir),
                              "ranges": [[{"subnet": f"{sub}.0/24", "rangeStart": f"{sub}.2",
                                           "rangeEnd": f"{sub}.3"}]]})
        env = {"TETHER_LOG_FILE": str(log), "TETHER_LOG_LEVEL": "info"}

        def run(cmd, conf, ctr=None, cid="x", path=path, env=env):
            r = run_plugin("bridge", cmd, conf, containerid=cid, netns=ctr.path if ctr else "",
                           env=env, path=path, ns=lab.h.name)
            return r.rc, r.json

        ctrs = [lab.container() for _ in range(3)]
        out = {"add": [run("ADD", conf, c, cid=c.name) for c in ctrs]}
        added = [r for rc, r in out["add"] if rc == 0]
        out["check"] = run("CHECK", dict(conf, prevResult=added[0]), ctrs[0], cid=ctrs[0].name)
        out["status"] = run("STATUS", conf)
        out["leases"] = sorted(f.name for f in (ipam_dir / conf["name"]).iterdir()
                               if not f.name.startswith((".", "lock")))
        out["gc"] = run("GC", dict(conf, **{"cni.dev/valid-attachments": [
            {"containerID": ctrs[1].name, "ifname": "eth0"}]}))
        out["after_gc"] = sorted(f.name for f in (ipam_dir / conf["name"]).iterdir()
                                 if not f.name.startswith((".", "lock")))
        out["del"] = [run("DEL", conf, c, cid=c.name) for c in ctrs]
        out["bad"] = run("ADD", dict(conf, ipam=dict(conf["ipam"], ranges=[[{"subnet": "x"}]])),
                         ctrs[0], cid=ctrs[0].name)
        pids = _ipam_pids(log)
        # In bridge's process, host-local's lines carry bridge's pid; exec'd, pids of their own.
        assert pids["host-local"] and pids["bridge"]
        shared = pids["host-local"] & pids["bridge"]
        assert shared == (pids["host-local"] if side == "carried" else set()), (side, pids)
        # What differs between two networks (names, subnet, MACs) is made comparable.
        text = json.dumps(out).replace(str(ipam_dir), "IPAM").replace(sub, "SUB")
        text = text.replace(conf["name"], "NET")
        for c in ctrs:
            text = text.replace(c.name, "CTR")
        seen[side] = re.sub(r'"(mac|name)": "[^"]*"', r'"\1": ""', text)
    assert seen["carried"] == seen["exec'd"]
    got = json.loads(seen["carried"])
    assert [rc for rc, _ in got["add"]] == [0, 0, 1]  # two addresses in the range
    assert got["add"][2][1]["code"] == 50 and "no IP addresses available" in got["add"][2][1]["msg"]
    assert got["check"] == [0, None] and got["gc"] == [0, None]
    assert got["status"][0] == 1 and got["status"][1]["code"] == 50  # the range is full
    assert got["leases"] == ["SUB.2", "SUB.3", "last_reserved_ip.0"], got
    assert got["after_gc"] == ["SUB.3", "last_reserved_ip.0"], got
    assert got["del"] == [[0, None]] * 3
    assert got["bad"][0] == 1 and got["bad"][1]["code"] == 7, got["bad"]


@pytest.fixture
def host_cleanup():
    """Removes what a host-namespace test creates, on success and failure."""
    made = {"links": [], "tables": []}
    yield made
    for link in made["links"]:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for fam, table in made["tables"]:
        subprocess.run(["nft", "delete", "table", fam, table], capture_output=True)


def test_host_namespace_add_check_del(lab, host_cleanup):
    sub = subnet()
    c = lab.container()
    conf = lab.conf("H", sub, isGateway=True, ipMasq=True, icc=False,
                    nftTable=f"{RUN}-host")
    host_cleanup["links"].append(f"{RUN}H")
    host_cleanup["tables"].append(("inet", f"{RUN}-host"))
    res = ok(lab.run("ADD", conf, c, cid=c.name, in_host=True))
    assert ping(c, f"{sub}.1")
    assert f"{sub}.2" in sh("nft", "list", "set", "inet", f"{RUN}-host", "masq4")
    ok(lab.run("CHECK", dict(conf, prevResult=res), c, cid=c.name, in_host=True))
    ok(lab.run("DEL", conf, None, cid=c.name, in_host=True))
    assert f"{sub}.2" not in sh("nft", "list", "set", "inet", f"{RUN}-host", "masq4")
    assert lab.link(res["interfaces"][1]["name"]) is None


# ---- against the reference -----------------------------------------------------------------------


def _shape(res):
    """The parts of a result that must agree: keys, names, address/gateway/route values."""
    ifs = [(i["name"] if not i["name"].startswith("veth") else "veth*", sorted(i.keys()))
           for i in res["interfaces"]]
    return {"keys": sorted(res.keys()), "interfaces": ifs, "ips": res.get("ips"),
            "routes": res.get("routes"), "dns": res.get("dns")}


def _links(lab, ns_host, ctr, bridge):
    br = lab.link(bridge, ns=ns_host)
    ports = [l for l in json.loads(ns_host.run("ip", "-j", "-d", "link"))
             if l.get("master") == bridge]
    cl = lab.link("eth0", ns=ctr)
    return {"bridge": (br["linkinfo"]["info_kind"], br["mtu"], "UP" in br["flags"]),
            "bridge_addrs": lab.addrs(ns_host, bridge),
            "ports": [(p["linkinfo"]["info_kind"], p["mtu"], p["operstate"],
                       p["linkinfo"]["info_slave_data"]["hairpin"]) for p in ports],
            "container": (cl["linkinfo"]["info_kind"], cl["mtu"], "UP" in cl["flags"]),
            "container_addrs": lab.addrs(ctr, "eth0"),
            "routes": ctr.run("ip", "route").splitlines(),
            "arp_notify": ctr.run("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").strip()}


@pytest.mark.parametrize("keys", [
    {"isGateway": True},
    {"isDefaultGateway": True, "mtu": 1450, "hairpinMode": True},
    {"dns": {"nameservers": ["10.1.1.1"]}},
    {},
])
def test_differential_against_reference(lab, netns, keys):
    sub = subnet()
    conf = lab.conf("r", sub, **keys)
    conf.pop("nftTable"), conf.pop("stateDir")  # the same conflist for both
    got = {}
    for who, bindir in (("ref", REF_BIN), ("tether", BIN)):
        h = netns("r" + who[0])  # each in a host namespace of its own
        ctr = netns("c" + who[0])
        c = dict(conf, ipam=dict(conf["ipam"], dataDir=str(lab.tmp / f"ipam-{who}")))
        if who == "tether":
            c.update(nftTable=lab.table, stateDir=str(lab.state))
        res = run_plugin("bridge", "ADD", c, containerid="diff", netns=ctr.path, path=lab.path,
                         ns=h.name, bindir=bindir)
        res = ok(res)
        got[who] = (_shape(res), _links(lab, h, ctr, conf["bridge"]))
        ok(run_plugin("bridge", "DEL", dict(c, prevResult=res), containerid="diff",
                      netns=ctr.path, path=lab.path, ns=h.name, bindir=bindir))
        assert lab.link("eth0", ns=ctr) is None
    assert got["tether"][0] == got["ref"][0]
    assert got["tether"][1] == got["ref"][1]
