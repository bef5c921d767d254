"""portmap in real namespaces with real traffic, chained behind bridge + host-local (tether's when
they are built, the reference's otherwise).

Topology of every test (names and subnets carry the per-run prefix, see `Topo`):

    outside ns (eth0: .130, .131, fd..:1::2/3) --veth-- host (<RUN>o, .129, fd..:1::1)
    host (<RUN>b bridge, gateway .1, fd..::1) -- containers (.2, .3, ... fd..::x)

An echo server in each container answers "<label> <peer address>" on its TCP and UDP ports, so a
test sees both that the packet arrived and which source address it arrived with (masquerade).
Only the test subnets are routed; the host's own routes and tables are never touched.
"""
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RUN, ok, run_chain, run_plugin, sh

PY = "/usr/bin/python3"
A = 100 + int(RUN[1:3], 16) % 100
B = int(RUN[3:5], 16)
SUBNET4 = f"10.{A}.{B}.0/25"
GW4 = f"10.{A}.{B}.1"
OUT_HOST4 = f"10.{A}.{B}.129"
OUT_ALLOWED4 = f"10.{A}.{B}.130"
OUT_OTHER4 = f"10.{A}.{B}.131"
SUBNET6 = f"fd{A:02x}:{B:x}::/64"
GW6 = f"fd{A:02x}:{B:x}::1"
OUT_HOST6 = f"fd{A:02x}:{B:x}:1::1"
OUT_ALLOWED6 = f"fd{A:02x}:{B:x}:1::2"
OUT_OTHER6 = f"fd{A:02x}:{B:x}:1::3"

ECHO_SERVER = r'''
import socket, sys, threading
label, specs = sys.argv[1], sys.argv[2:]
def peer(addr):
    return addr[0][7:] if addr[0].startswith("::ffff:") else addr[0]
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(16)
    def serve():
        while True:
            c, a = s.accept()
            try:
                c.recv(100); c.sendall(f"{label}:{port} {peer(a)}\n".encode())
            finally:
                c.close()
    threading.Thread(target=serve, daemon=True).start()
def udp(port, addr=None):
    if addr:
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
    def serve():
        while True:
            d, a = s.recvfrom(100)
            s.sendto(f"{label}:{port} {peer(a)}\n".encode(), a)
    threading.Thread(target=serve, daemon=True).start()
for spec in specs:
    proto, port = spec.split(":")
    if proto == "tcp":
        tcp(int(port))
    else:
        port, _, addr = port.partition("@")
        udp(int(port), addr or None)
print("ready", flush=True)
threading.Event().wait()
'''

CLIENT = r'''
import socket, sys
proto, host, port, src, sport, timeout = sys.argv[1:7]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(float(timeout))
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if src != "-" or sport != "0":
    s.bind(("" if src == "-" else src, int(sport)))
try:
    if proto == "tcp":
        s.connect((host, int(port))); s.sendall(b"hi\n"); print(s.recv(100).decode().strip())
    else:
        s.sendto(b"hi\n", (host, int(port))); print(s.recvfrom(100)[0].decode().strip())
except Exception as e:
    print(f"ERR {e!r}"); sys.exit(1)
'''

# SCTP: the kernel has SCTP conntrack and NAT but (on the CI machine) no SCTP sockets, so the
# client sends a real SCTP INIT through a raw socket and the container captures it raw: the test
# proves the packet was DNATed (destination address and port rewritten, checksum valid).
SCTP_SEND = r'''
import socket, struct, sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
init = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1234567, 65535, 1, 1, 1)
pkt = struct.pack("!HHII", sport, port, 0, 0) + init
pkt = pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
for _ in range(3):
    s.sendto(pkt, (host, 0))
'''

SCTP_SNIFF = r'''
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    data = s.recv(2000)
except Exception as e:
    print(f"ERR {e!r}", flush=True); sys.exit(1)
ihl = (data[0] & 15) * 4
print(socket.inet_ntoa(data[16:20]), struct.unpack("!H", data[ihl + 2:ihl + 4])[0], flush=True)
'''


def nft_json(*args):
    out = sh("nft", "-j", "list", *args, check=False)
    return json.loads(out)["nftables"] if out.strip() else []


def table_exists(table):
    return any(t.get("table", {}).get("name") == table
               for t in nft_json("tables"))


def elements(table):
    """{set name: [elements]} of every set of `table`."""
    out = {}
    for obj in nft_json("table", "inet", table):
        for kind in ("set", "map"):
            if kind in obj:
                out[obj[kind]["name"]] = obj[kind].get("elem", [])
    return out


def element_count(table):
    return sum(len(v) for v in elements(table).values())


class Container:
    def __init__(self, topo, ns, cid, result):
        self.topo, self.ns, self.cid, self.result = topo, ns, cid, result
        self.ip4 = next(i["address"].split("/")[0] for i in result["ips"] if "." in i["address"])
        ip6 = [i["address"].split("/")[0] for i in result["ips"] if ":" in i["address"]]
        self.ip6 = ip6[0] if ip6 else None
        self.server = None

    def serve(self, *specs, label=None):
        """Starts the echo server on specs like "tcp:80", "udp:53"."""
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, PY, str(self.topo.dir / "echo.py"),
             label or self.cid, *specs], stdout=subprocess.PIPE, text=True)
        assert self.server.stdout.readline().strip() == "ready"
        self.topo.procs.append(self.server)


class Topo:
    """A bridge network with portmap, an outside namespace routed through the host, and
    everything removed afterwards (containers' DEL, links, the table, sysctls)."""

    def __init__(self, netns, tmpdir):
        self.netns, self.dir = netns, tmpdir
        self.table = f"{RUN}-pm"
        self.bridge_table = f"{RUN}-br"
        self.bridge = f"{RUN}b"
        self.state_dir = tmpdir / "portmap"
        self.procs = []
        self.containers = []
        for name, text in (("echo.py", ECHO_SERVER), ("client.py", CLIENT),
                           ("sctp_send.py", SCTP_SEND), ("sctp_sniff.py", SCTP_SNIFF)):
            (tmpdir / name).write_text(text)
        self.outside = netns("o")
        self.host_veth = f"{RUN}o"
        sh("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0",
           "netns", self.outside.name)
        sh("ip", "addr", "add", f"{OUT_HOST4}/25", "dev", self.host_veth)
        sh("ip", "addr", "add", f"{OUT_HOST6}/64", "dev", self.host_veth, "nodad")
        sh("ip", "link", "set", self.host_veth, "up")
        o = self.outside
        o.run("ip", "addr", "add", f"{OUT_ALLOWED4}/25", "dev", "eth0")
        o.run("ip", "addr", "add", f"{OUT_OTHER4}/25", "dev", "eth0")
        o.run("ip", "addr", "add", f"{OUT_ALLOWED6}/64", "dev", "eth0", "nodad")
        o.run("ip", "addr", "add", f"{OUT_OTHER6}/64", "dev", "eth0", "nodad")
        o.run("ip", "link", "set", "eth0", "up")

    def conflist(self, **portmap):
        pm = {"type": "portmap", "capabilities": {"portMappings": True},
              "nftTable": self.table, "stateDir": str(self.state_dir)}
        pm.update(portmap)
        return {"cniVersion": "1.0.0", "name": f"{RUN}-net", "plugins": [
            # hairpinMode: with br_netfilter active, a container reaching its own published
            # port needs it (README.md). nftTable/stateDir: tether's bridge keeps its firewall
            # in a table of its own; the reference ignores the keys.
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True, "nftTable": self.bridge_table,
             "stateDir": str(self.dir / "bridge"),
             "ipam": {"type": "host-local", "dataDir": str(self.dir / "ipam"),
                      "ranges": [[{"subnet": SUBNET4}], [{"subnet": SUBNET6}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
            pm]}

    def add(self, mappings=None, cid=None, expect_ok=True, **portmap):
        ns = self.netns("c")
        cid = cid or f"{RUN}-c{len(self.containers)}"
        caps = {"portMappings": mappings} if mappings is not None else None
        conf = self.conflist(**portmap)
        result, steps = run_chain(conf, "ADD", containerid=cid, netns=ns.path,
                                  capability_args=caps)
        c = None
        if result is not None:
            c = Container(self, ns, cid, result)
            c.conf, c.caps = conf, caps
        # Registered even when ADD failed: the runtime runs DEL after a failed ADD, so do we.
        self.containers.append((ns, cid, conf, caps, result))
        if expect_ok:
            assert result is not None, steps
            return c
        return c, steps

    def delete(self, c):
        for i, (ns, cid, conf, caps, result) in enumerate(self.containers):
            if cid == c.cid:
                _, steps = run_chain(conf, "DEL", containerid=cid, netns=ns.path,
                                     capability_args=caps, prev_result=result)
                for s in steps:
                    assert s.rc == 0, s
                del self.containers[i]
                return

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns, cid, conf, caps, result in reversed(self.containers):
            run_chain(conf, "DEL", containerid=cid, netns=ns.path, capability_args=caps,
                      prev_result=result)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)
        for family in ("inet", "bridge"):
            subprocess.run(["nft", "delete", "table", family, self.bridge_table],
                           capture_output=True)

    # -- traffic --------------------------------------------------------------------------
    def request(self, proto, host, port, ns=None, src="-", sport=0, timeout=1.0):
        argv = [PY, str(self.dir / "client.py"), proto, host, str(port), src, str(sport),
                str(timeout)]
        if ns is not None:
            argv = ["ip", "netns", "exec", ns.name] + argv
        p = subprocess.run(argv, capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None

    def reach(self, proto, host, port, ns=None, src="-", sport=0, deadline=8.0):
        """The reply, retrying while addresses settle (IPv6 DAD) or the server starts."""
        end = time.time() + deadline
        while True:
            reply = self.request(proto, host, port, ns, src, sport)
            if reply is not None or time.time() > end:
                return reply
            time.sleep(0.2)


@pytest.fixture
def topo(netns, tmpdir_run):
    forwarding6 = Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text()
    t = Topo(netns, tmpdir_run)
    try:
        yield t
    finally:
        t.cleanup()
        # The bridge (ours or the reference) enables IPv6 forwarding for its gateway; put the
        # host back the way it was.
        if Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text() != forwarding6:
            Path("/proc/sys/net/ipv6/conf/all/forwarding").write_text(forwarding6)
        assert not any(t.table in l for l in sh("nft", "list", "tables").splitlines())


def pm(host_port, container_port, protocol="tcp", host_ip="", **extra):
    m = {"hostPort": host_port, "containerPort": container_port, "protocol": protocol,
         "hostIP": host_ip}
    m.update(extra)
    return m


def portmap_conf(topo, c, command_extra=None, **portmap):
    """The portmap plugin's own config as libcni derives it for container c."""
    conf = dict(topo.conflist(**portmap)["plugins"][1])
    conf.pop("capabilities")
    conf.update({"name": f"{RUN}-net", "cniVersion": "1.0.0"})
    if command_extra:
        conf.update(command_extra)
    return conf


# ---- reachability ------------------------------------------------------------------------------

def test_outside_localhost_host_address_tcp_udp(topo):
    c = topo.add([pm(18080, 80), pm(18053, 53, "udp")])
    c.serve("tcp:80", "udp:53")
    o = topo.outside
    # From outside through the host: the container sees the real client address (no SNAT).
    assert topo.reach("tcp", OUT_HOST4, 18080, o) == f"{c.cid}:80 {OUT_ALLOWED4}"
    assert topo.reach("udp", OUT_HOST4, 18053, o) == f"{c.cid}:53 {OUT_ALLOWED4}"
    # From the host itself to 127.0.0.1 (route_localnet + masquerade) and to a host address.
    assert topo.reach("tcp", "127.0.0.1", 18080) == f"{c.cid}:80 {GW4}"
    assert topo.reach("udp", "127.0.0.1", 18053) == f"{c.cid}:53 {GW4}"
    assert topo.reach("tcp", OUT_HOST4, 18080).startswith(f"{c.cid}:80 ")
    assert topo.reach("udp", GW4, 18053).startswith(f"{c.cid}:53 ")
    bridge_conf = f"/proc/sys/net/ipv4/conf/{topo.bridge}/route_localnet"
    assert Path(bridge_conf).read_text().strip() == "1"


def test_ipv6_outside_and_host(topo):
    c = topo.add([pm(18081, 80)])
    c.serve("tcp:80")
    assert c.ip6
    assert (topo.reach("tcp", OUT_HOST6, 18081, topo.outside, src=OUT_ALLOWED6) ==
            f"{c.cid}:80 {OUT_ALLOWED6}")
    assert topo.reach("tcp", OUT_HOST6, 18081).startswith(f"{c.cid}:80 ")


def test_hairpin_own_port_and_neighbour(topo):
    c1 = topo.add([pm(18082, 80), pm(18054, 53, "udp")])
    c2 = topo.add([])
    c1.serve("tcp:80", "udp:53")
    # The container reaches its own published port through a host address: masqueraded to the
    # gateway, or the reply would come from itself and be dropped.
    assert topo.reach("tcp", OUT_HOST4, 18082, c1.ns) == f"{c1.cid}:80 {GW4}"
    assert topo.reach("udp", GW4, 18054, c1.ns) == f"{c1.cid}:53 {GW4}"
    # A neighbour on the same bridge: masqueraded too, or c1 would answer it directly.
    assert topo.reach("tcp", OUT_HOST4, 18082, c2.ns) == f"{c1.cid}:80 {GW4}"
    assert topo.reach("tcp", GW6, 18082, c2.ns) == f"{c1.cid}:80 {GW6}"


def test_snat_false_keeps_neighbour_source(topo):
    c1 = topo.add([pm(18083, 80)], snat=False)
    c1.serve("tcp:80")
    assert topo.reach("tcp", OUT_HOST4, 18083, topo.outside) == f"{c1.cid}:80 {OUT_ALLOWED4}"
    assert masq_entries(topo.table, c1.ip4) == [] and masq_entries(topo.table, c1.ip6) == []


def masq_entries(table, ip):
    """(set, source network) of every masquerade element of container `ip`."""
    out = []
    for name, elems in elements(table).items():
        if name.startswith(("masq4_", "masq6_")):
            for e in elems:
                key = e.get("elem", {}).get("val", e) if isinstance(e, dict) else e
                if key["concat"][0] == ip:
                    out.append((name, key["concat"][1]))
    return sorted(out)


def test_masquerade_and_unrestricted_ports_use_exact_keys(topo):
    """An ADD with snat on puts `container . source network` in one hash set per prefix length
    (its subnet's, and /8 for localhost): no interval set, which the kernel's cost grows with the
    containers in it. An unrestricted port adds nothing to the restrict and allow sets."""
    before = {n: len(v) for n, v in elements(topo.table).items()}
    c = topo.add([pm(18098, 80)])
    net4 = ipaddress.ip_network(SUBNET4)
    net6 = ipaddress.ip_network(SUBNET6)
    assert masq_entries(topo.table, c.ip4) == sorted(
        [(f"masq4_{net4.prefixlen}", str(net4.network_address)), ("masq4_8", "127.0.0.0")])
    assert masq_entries(topo.table, c.ip6) == [
        (f"masq6_{net6.prefixlen}", str(net6.network_address))]
    sets = {o["set"]["name"]: o["set"] for o in nft_json("table", "inet", topo.table)
            if "set" in o}
    for name in (f"masq4_{net4.prefixlen}", "masq4_8", f"masq6_{net6.prefixlen}"):
        assert "interval" not in sets[name].get("flags", []), sets[name]
    after = {n: len(v) for n, v in elements(topo.table).items()}
    for name in ("restrict4_any", "restrict6_any", "allow4_any", "allow6_any"):
        assert after.get(name, 0) == before.get(name, 0), name
    topo.delete(c)
    assert masq_entries(topo.table, c.ip4) == [] and masq_entries(topo.table, c.ip6) == []


def test_range(topo):
    c = topo.add([pm(18090, 90, range=3), pm(18190, 190, "udp", range=2)])
    c.serve("tcp:90", "tcp:91", "tcp:92", "udp:190", "udp:191")
    o = topo.outside
    assert topo.reach("tcp", OUT_HOST4, 18090, o) == f"{c.cid}:90 {OUT_ALLOWED4}"
    assert topo.reach("tcp", OUT_HOST4, 18092, o) == f"{c.cid}:92 {OUT_ALLOWED4}"
    assert topo.reach("udp", OUT_HOST4, 18191, o) == f"{c.cid}:191 {OUT_ALLOWED4}"
    assert topo.request("tcp", OUT_HOST4, 18093, o) is None  # past the range: not published
    dnat = elements(topo.table)["dnat4_any"]
    assert len(dnat) == 5


def test_sctp(topo):
    c = topo.add([pm(18070, 70, "sctp")])
    sniff = subprocess.Popen(["ip", "netns", "exec", c.ns.name, PY,
                              str(topo.dir / "sctp_sniff.py"), "5"],
                             stdout=subprocess.PIPE, text=True)
    topo.procs.append(sniff)
    assert sniff.stdout.readline().strip() == "ready"
    topo.outside.run(PY, str(topo.dir / "sctp_send.py"), OUT_HOST4, "18070", "40000")
    out, _ = sniff.communicate(timeout=10)
    assert out.strip() == f"{c.ip4} 70"


# ---- source restrictions -----------------------------------------------------------------------

def test_allowed_sources(topo):
    c = topo.add([pm(18084, 80), pm(18085, 85, sourceRanges=[f"{OUT_OTHER4}/32"])],
                 allowedSources=[f"{OUT_ALLOWED4}/32", f"{OUT_ALLOWED6}/128"])
    c.serve("tcp:80", "tcp:85")
    o = topo.outside
    assert topo.reach("tcp", OUT_HOST4, 18084, o, src=OUT_ALLOWED4) == f"{c.cid}:80 {OUT_ALLOWED4}"
    assert topo.request("tcp", OUT_HOST4, 18084, o, src=OUT_OTHER4) is None
    assert topo.reach("tcp", OUT_HOST6, 18084, o, src=OUT_ALLOWED6) == f"{c.cid}:80 {OUT_ALLOWED6}"
    assert topo.request("tcp", OUT_HOST6, 18084, o, src=OUT_OTHER6) is None
    # The mapping's own sourceRanges replace the plugin's list; it names no IPv6 source, so the
    # port is closed to IPv6.
    assert topo.reach("tcp", OUT_HOST4, 18085, o, src=OUT_OTHER4) == f"{c.cid}:85 {OUT_OTHER4}"
    assert topo.request("tcp", OUT_HOST4, 18085, o, src=OUT_ALLOWED4) is None
    assert topo.request("tcp", OUT_HOST6, 18085, o, src=OUT_ALLOWED6) is None
    # Localhost is a source like any other: not in the list, so refused.
    assert topo.request("tcp", "127.0.0.1", 18084) is None


def test_host_ip(topo):
    c = topo.add([pm(18086, 80, host_ip=OUT_HOST4), pm(18087, 87, host_ip=OUT_HOST6)])
    c.serve("tcp:80", "tcp:87")
    o = topo.outside
    assert topo.reach("tcp", OUT_HOST4, 18086, o) == f"{c.cid}:80 {OUT_ALLOWED4}"
    # Only that address: the gateway address of the same host does not forward the port.
    assert topo.request("tcp", GW4, 18086) is None
    assert topo.reach("tcp", OUT_HOST6, 18087, o, src=OUT_ALLOWED6) == f"{c.cid}:87 {OUT_ALLOWED6}"
    # A host address of the other family is skipped for that family.
    sets = elements(topo.table)
    assert len(sets["dnat4_ip"]) == 1 and len(sets["dnat6_ip"]) == 1
    assert sets["dnat4_any"] == [] and sets["dnat6_any"] == []


# ---- conflicts, lifecycle ----------------------------------------------------------------------

def test_conflict(topo):
    c1 = topo.add([pm(18088, 80), pm(18089, 81, "udp")])
    before = elements(topo.table)
    c2, steps = topo.add([pm(18095, 95), pm(18088, 80)], expect_ok=False)
    assert c2 is None
    res = steps[-1]
    assert res.code == 101, res
    assert "18088" in res.json["details"] and c1.cid in res.json["details"]
    assert elements(topo.table) == before  # nothing of the failed ADD was added
    cid2 = topo.containers[-1][1]
    assert not (topo.state_dir / f"{RUN}-net" / f"{cid2}:eth0.json").exists()
    # Another protocol or another host address on the same port is no conflict.
    topo.add([pm(18088, 80, "udp"), pm(18088, 80, host_ip=OUT_HOST4)])


def test_del_with_and_without_prev_result(topo):
    mappings = [pm(18096, 80), pm(18097, 53, "udp", range=2)]
    c = topo.add(mappings)
    assert element_count(topo.table) > 0
    conf = portmap_conf(topo, c)
    conf["runtimeConfig"] = {"portMappings": mappings}
    # DEL without prevResult (the runtime lost its cache), twice; then with prevResult.
    for extra in ({}, {}, {"prevResult": c.result}):
        res = run_plugin("portmap", "DEL", dict(conf, **extra), containerid=c.cid,
                         netns=c.ns.path)
        assert res.rc == 0, res
        assert element_count(topo.table) == 0
    # With an empty CNI_NETNS too (the netns is gone).
    assert run_plugin("portmap", "DEL", conf, containerid=c.cid, netns="").rc == 0
    assert list((topo.state_dir / f"{RUN}-net").iterdir()) == []
    topo.delete(c)


def test_del_leaves_zero_elements(topo):
    cs = [topo.add([pm(18100 + i, 80), pm(18200 + i, 53, "udp")], allowedSources=["10.0.0.0/8"])
          for i in range(3)]
    assert element_count(topo.table) > 0
    for c in cs:
        topo.delete(c)
    assert element_count(topo.table) == 0


def test_check(topo):
    c = topo.add([pm(18098, 80)])
    conf = portmap_conf(topo, c)
    conf["runtimeConfig"] = {"portMappings": [pm(18098, 80)]}
    conf["prevResult"] = c.result
    ok(run_plugin("portmap", "CHECK", conf, containerid=c.cid, netns=c.ns.path))
    # An element removed behind the plugin's back: CHECK says so.
    sh("nft", "flush", "map", "inet", topo.table, "dnat4_any")
    res = run_plugin("portmap", "CHECK", conf, containerid=c.cid, netns=c.ns.path)
    assert res.code == 102 and "18098" in res.json["details"], res
    # DEL still succeeds and removes what is left.
    ok(run_plugin("portmap", "DEL", conf, containerid=c.cid, netns=c.ns.path))
    assert element_count(topo.table) == 0


def test_gc(topo):
    c1 = topo.add([pm(18101, 80)])
    c2 = topo.add([pm(18102, 80)])
    conf = portmap_conf(topo, c1)
    conf["cniVersion"] = "1.1.0"
    # No list (cnitool): nothing can be judged stale.
    ok(run_plugin("portmap", "GC", conf))
    assert len(elements(topo.table)["dnat4_any"]) == 2
    conf["cni.dev/valid-attachments"] = [{"containerID": c2.cid, "ifname": "eth0"}]
    ok(run_plugin("portmap", "GC", conf))
    sets = elements(topo.table)
    assert len(sets["dnat4_any"]) == 1 and len(sets["dnat6_any"]) == 1
    names = [p.name for p in (topo.state_dir / f"{RUN}-net").iterdir()]
    assert names == [f"{c2.cid}:eth0.json"]
    # The older key name works too.
    conf.pop("cni.dev/valid-attachments")
    conf["cni.dev/attachments"] = []
    ok(run_plugin("portmap", "GC", conf))
    assert element_count(topo.table) == 0


def test_status(topo):
    conf = portmap_conf(topo, None)
    conf["cniVersion"] = "1.1.0"
    ok(run_plugin("portmap", "STATUS", conf))
    # A state directory that cannot be created: not available (50).
    blocker = topo.dir / "file"
    blocker.write_text("")
    conf["stateDir"] = str(blocker / "sub")
    assert run_plugin("portmap", "STATUS", conf).code == 50


def test_no_mappings_no_table(topo):
    c = topo.add(None)
    assert not table_exists(topo.table)
    c2 = topo.add([])
    assert not table_exists(topo.table)
    # The result passed through unchanged: what the bridge returned.
    conf = portmap_conf(topo, c)
    conf["prevResult"] = c.result
    assert ok(run_plugin("portmap", "ADD", conf, containerid=c.cid, netns=c.ns.path)) == c.result
    del c2


def test_must_be_chained(topo):
    conf = portmap_conf(topo, None)
    conf["runtimeConfig"] = {"portMappings": [pm(18110, 80)]}
    res = run_plugin("portmap", "ADD", conf, containerid="x", netns="/proc/self/ns/net",
                     env={"CNI_NETNS_OVERRIDE": "1"})
    assert res.code == 7 and "chained" in res.json["msg"], res


def test_udp_conntrack_flush(topo):
    topo.add([pm(18121, 121)])  # the table exists: conntrack and NAT are active on the host
    c = topo.add([])  # the container exists before its port is published
    o = topo.outside
    # A UDP client that already sends to the host port before it is published leaves a
    # conntrack entry that is not NATed; without the flush its next packets would keep hitting
    # the host.
    assert topo.request("udp", OUT_HOST4, 18120, o, sport=40120, timeout=0.3) is None
    entry = f"src={OUT_ALLOWED4} dst={OUT_HOST4} sport=40120 dport=18120"
    assert entry in Path("/proc/net/nf_conntrack").read_text()
    conf = portmap_conf(topo, c)
    conf["runtimeConfig"] = {"portMappings": [pm(18120, 120, "udp")]}
    conf["prevResult"] = c.result
    ok(run_plugin("portmap", "ADD", conf, containerid=c.cid, netns=c.ns.path))
    c.serve("udp:120")
    assert topo.request("udp", OUT_HOST4, 18120, o, sport=40120) == f"{c.cid}:120 {OUT_ALLOWED4}"
    # And after DEL the same client's entry, NATed to the container, is flushed too: its next
    # packet reaches a listener on the host instead of the gone mapping.
    ok(run_plugin("portmap", "DEL", conf, containerid=c.cid, netns=c.ns.path))
    host = subprocess.Popen([PY, str(topo.dir / "echo.py"), "host", f"udp:18120@{OUT_HOST4}"],
                            stdout=subprocess.PIPE, text=True)
    topo.procs.append(host)
    assert host.stdout.readline().strip() == "ready"
    assert topo.request("udp", OUT_HOST4, 18120, o, sport=40120) == f"host:18120 {OUT_ALLOWED4}"


# ---- configuration errors as a process ------------------------------------------------------

@pytest.mark.parametrize("extra,code,text", [
    ({"conditionsV4": ["-d", "10.0.0.1"]}, 7, "iptables-syntax"),
    ({"conditionsV4": ["tcp dport 22"]}, 2, "conditionsV4"),
    ({"backend": "iptables"}, 2, "backend"),
    ({"markMasqBit": 40}, 7, "markMasqBit"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 1}]}}, 7, "hostPort"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 1, "protocol": "icmp"}]}},
     7, "protocol"),
])
def test_config_errors(topo, extra, code, text):
    conf = portmap_conf(topo, None)
    conf["runtimeConfig"] = {"portMappings": [pm(18111, 80)]}
    conf["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}
    conf.update(extra)
    res = run_plugin("portmap", "ADD", conf, containerid="x", netns="/proc/self/ns/net",
                     env={"CNI_NETNS_OVERRIDE": "1"})
    assert res.code == code and text in res.stdout, res
    assert not table_exists(topo.table)


def test_earlier_layout_is_refused(topo):
    """A table that tether's layout 1 (interval sets everywhere) made is refused with code 7,
    and nothing is added to it or left in the state dir."""
    table = topo.table + "-l1"
    conf = portmap_conf(topo, None, nftTable=table)
    conf["runtimeConfig"] = {"portMappings": [pm(18114, 80)]}
    conf["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        f"table inet {table} {{\n chain prerouting {{\n type nat hook prerouting priority -100\n"
        f' counter comment "tether-portmap layout 1"\n }}\n}}\n'))
    state = Path(conf["stateDir"])
    files = lambda: sorted(p.name for p in state.rglob("*") if p.is_file() and p.name != "lock")
    try:
        before = (nft_json("table", "inet", table), files())
        res = run_plugin("portmap", "ADD", conf, containerid="l1", netns="/proc/self/ns/net",
                         env={"CNI_NETNS_OVERRIDE": "1"})
        assert res.code == 7 and "nftTable" in res.json["details"], res
        assert (nft_json("table", "inet", table), files()) == before
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=False)


def test_conditions(topo):
    # Only traffic from the allowed outside address is port-mapped at all (nft-syntax subset).
    c = topo.add([pm(18112, 80)], conditionsV4=[f"ip saddr {OUT_ALLOWED4}"],
                 conditionsV6=["ip6 saddr != ::/0"])
    c.serve("tcp:80")
    o = topo.outside
    assert topo.reach("tcp", OUT_HOST4, 18112, o, src=OUT_ALLOWED4) == f"{c.cid}:80 {OUT_ALLOWED4}"
    assert topo.request("tcp", OUT_HOST4, 18112, o, src=OUT_OTHER4) is None
    assert topo.request("tcp", OUT_HOST6, 18112, o, src=OUT_ALLOWED6) is None
    # Another network with other conditions cannot share the table.
    c2, steps = topo.add([pm(18113, 80)], expect_ok=False)
    assert steps[-1].code == 7 and "nftTable" in steps[-1].json["details"], steps[-1]


def test_parallel_adds_and_dels(topo):
    """Eight ADDs, then eight DELs, at once: the state-dir lock and the batch generation check
    keep every one of them whole; nothing fails and nothing is left."""
    from concurrent.futures import ThreadPoolExecutor
    ns = topo.netns("p")
    base = portmap_conf(topo, None)

    def conf_for(i):
        c = dict(base)
        c["runtimeConfig"] = {"portMappings": [pm(18300 + i, 80), pm(18400 + i, 53, "udp")]}
        c["prevResult"] = {"cniVersion": "1.0.0",
                           "interfaces": [{"name": "eth0", "sandbox": ns.path}],
                           "ips": [{"address": f"10.{A}.{B}.{10 + i}/25", "interface": 0}]}
        return c

    def call(command, i):
        return run_plugin("portmap", command, conf_for(i), containerid=f"{RUN}-p{i}",
                          netns=ns.path)

    with ThreadPoolExecutor(8) as pool:
        for res in pool.map(lambda i: call("ADD", i), range(8)):
            assert res.rc == 0, res
        assert len(elements(topo.table)["dnat4_any"]) == 16
        for res in pool.map(lambda i: call("DEL", i), range(8)):
            assert res.rc == 0, res
    assert element_count(topo.table) == 0


def test_del_with_unreadable_state(topo):
    """A state file a power loss truncated (it is not fsynced, see state.h) does not make DEL
    fail forever: DEL succeeds and removes it."""
    c = topo.add([pm(18130, 80)])
    path = topo.state_dir / f"{RUN}-net" / f"{c.cid}:eth0.json"
    path.write_text("")
    conf = portmap_conf(topo, c)
    ok(run_plugin("portmap", "DEL", conf, containerid=c.cid, netns=c.ns.path))
    assert not path.exists()


def test_state_of_the_old_layout_is_found_and_removed(topo):
    """A node upgraded while its containers run: the state files portmap 0.1 wrote
    (<stateDir>/<network>/<containerID>@<ifname>.json) are still found, by DEL and by GC."""
    c1 = topo.add([pm(18140, 80)])
    c2 = topo.add([pm(18141, 80)])
    net_dir = topo.state_dir / f"{RUN}-net"
    for c in (c1, c2):
        (net_dir / f"{c.cid}:eth0.json").rename(net_dir / f"{c.cid}@eth0.json")
    conf = portmap_conf(topo, c1)
    ok(run_plugin("portmap", "DEL", conf, containerid=c1.cid, netns=c1.ns.path))
    assert not (net_dir / f"{c1.cid}@eth0.json").exists()
    assert len(elements(topo.table)["dnat4_any"]) == 1
    # An ADD of the same port by another container is still a conflict naming its owner.
    c3, steps = topo.add([pm(18141, 80)], expect_ok=False)
    assert c3 is None and steps[-1].code == 101 and c2.cid in steps[-1].json["details"]
    conf["cniVersion"] = "1.1.0"
    conf["cni.dev/valid-attachments"] = []
    ok(run_plugin("portmap", "GC", conf))
    assert element_count(topo.table) == 0
    assert list(net_dir.iterdir()) == []
