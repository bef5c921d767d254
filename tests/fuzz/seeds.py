#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/seed-* from conf-examples and from the
shapes the unit and integration tests use. Run from anywhere; rewrites only seed-* files (inputs
libFuzzer found and that were kept have other names)."""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
SEP = "\n%%\n"

seeds = {}


def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, {})[f"seed-{name}"] = data


def plugin_confs():
    """Every plugin config of conf-examples, as a runtime hands it to the plugin."""
    for path in sorted((ROOT / "conf-examples").glob("*.conflist")):
        net = json.loads(path.read_text())
        for i, p in enumerate(net["plugins"]):
            conf = dict(p, cniVersion=net["cniVersion"], name=net["name"])
            yield f"{path.stem}-{i}-{p['type']}", conf


PREV = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/var/run/netns/x", "mtu": 1500},
    ],
    "ips": [
        {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0", "mtu": 1400, "priority": 5}],
    "dns": {"nameservers": ["10.88.0.1"], "domain": "example.org", "search": ["a.example"],
            "options": ["ndots:2"]},
}
RUNTIME = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                     {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}],
    "dns": {"servers": ["1.1.1.1"], "searches": ["svc.local"], "options": ["ndots:5"]},
    "aliases": {"tether": ["web", "db"]},
    "ips": ["10.88.0.9/16"],
    "mac": "aa:bb:cc:00:00:01",
    "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
}
ARGS = {"cni": {"ips": ["10.88.0.10"], "mac": "aa:bb:cc:00:00:02", "hostname": "web1",
                "aliases": ["w1"], "containerAliases": ["me"]}}

confs = list(plugin_confs())
for name, conf in confs:
    add("netconf", name, json.dumps(conf, indent=1))
    full = dict(conf, cniVersion="1.1.0", prevResult=PREV, runtimeConfig=RUNTIME, args=ARGS)
    add("netconf", name + "-full", json.dumps(full))
add("netconf", "minimal", '{"cniVersion":"1.0.0","name":"n","type":"bridge"}')
add("netconf", "deep", '{"cniVersion":"1.0.0","name":"n","type":"x","a":' + "[" * 70 + "]" * 70 + "}")

cni_args = ["", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            "IP=10.88.0.7;MAC=aa:bb:cc:dd:ee:ff", "IgnoreUnknown=true;IP=fd00::7,10.88.0.8"]
for plugin, target in [("bridge", "config_bridge"), ("host-local", "config_hostlocal"),
                       ("portmap", "config_portmap"), ("dns-sidecar", "config_dns")]:
    n = 0
    for name, conf in confs:
        ipam = conf.get("ipam", {})
        if plugin == "host-local":
            if ipam.get("type") != "host-local":
                continue
        elif conf["type"] != plugin:
            continue
        for i, a in enumerate(cni_args):
            c = conf if i % 2 == 0 else dict(conf, cniVersion="1.1.0", prevResult=PREV,
                                             runtimeConfig=RUNTIME, args=ARGS)
            add(target, f"{name}-{i}", a + "\n" + json.dumps(c))
            n += 1
    base = {"cniVersion": "1.1.0", "name": "fz", "type": plugin if plugin != "host-local" else "bridge"}
    if plugin == "host-local":
        base["ipam"] = {"type": "host-local", "subnet": "10.9.0.0/24", "rangeStart": "10.9.0.10",
                        "rangeEnd": "10.9.0.20", "gateway": "10.9.0.1",
                        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/x", "resolvConf": ""}
    add(target, "base", "IP=10.9.0.12\n" + json.dumps(dict(base, prevResult=PREV, runtimeConfig=RUNTIME)))
    assert n > 0, plugin

# The CNI environment: COMMAND, CONTAINERID, NETNS, IFNAME, ARGS, PATH, stdin ("-": unset).
bridge_conf = json.dumps(dict(confs[0][1], cniVersion="1.1.0", prevResult=PREV))
envs = {
    "add": ["ADD", "c1", "/var/run/netns/x", "eth0", "", "/opt/cni/bin", bridge_conf],
    "del-no-netns": ["DEL", "c1", "-", "eth0", "IgnoreUnknown=1", "/opt/cni/bin", bridge_conf],
    "check": ["CHECK", "c1", "/var/run/netns/x", "eth0", "K8S_POD_NAME=a", "/opt/cni/bin", bridge_conf],
    "status": ["STATUS", "-", "-", "-", "-", "/opt/cni/bin", bridge_conf],
    "gc": ["GC", "-", "-", "-", "-", "/opt/cni/bin",
           json.dumps(dict(confs[0][1], cniVersion="1.1.0",
                           **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}))],
    "version": ["VERSION", "-", "-", "-", "-", "-", ""],
    "bad-id": ["ADD", "\xff\xfe", "/x", "eth0", "", "/b", bridge_conf],
    "bad-ifname": ["ADD", "c1", "/x", "a/b:c d", "", "/b", bridge_conf],
    "bad-args": ["ADD", "c1", "/x", "eth0", "A=;=B;C", "/b", bridge_conf],
    "old-version": ["CHECK", "c1", "/x", "eth0", "", "/b", '{"cniVersion":"0.3.1","name":"n","type":"t"}'],
    "unknown": ["FOO", "-", "-", "-", "-", "-", ""],
    "empty": ["", "-", "-", "-", "-", "-", ""],
}
for name, parts in envs.items():
    add("cni_env", name, SEP.join(parts).encode("utf-8", "surrogateescape"))

for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]:
    r = dict(PREV, cniVersion=v)
    if v < "1.0.0":
        r["ips"] = [dict(ip, version="4" if ":" not in ip["address"] else "6") for ip in PREV["ips"]]
    add("result", v, json.dumps(r))
add("result", "empty", '{"cniVersion":"1.1.0"}')
add("result", "no-name-iface", '{"cniVersion":"1.1.0","interfaces":[{"mac":"x"}],"ips":[{"address":"1.2.3.4/8","interface":0}]}')

lease = lambda cid, ifn: f"{cid}\r\n{ifn}"
add("hostlocal_lease", "empty", "")
add("hostlocal_lease", "leases", SEP.join([
    "10.1.0.2\n" + lease("c1", "eth0"), "10.1.0.3\n" + lease("c2", "eth0"), "last_reserved_ip.0\n10.1.0.3",
    "fd00::4\n" + lease("c1", "eth0"), "last_reserved_ip.1\nfd00::4"]))
add("hostlocal_lease", "legacy", SEP.join(["10.1.0.2\nc1", "10.1.0.5\n  c9 \n", "last_reserved_ip.0\n10.1.0.14"]))
add("hostlocal_lease", "index", SEP.join(["10.1.0.2\n" + lease("c1", "eth0"), "+10.1.0.2,eth0:c1\n",
                                          "+10.1.0.9,eth0:gone\n", ".10.1.0.4.tmp-1-2\nhalf"]))
add("hostlocal_lease", "mine", SEP.join(["10.1.0.7\n" + lease("fuzz-container", "eth0"),
                                         "+10.1.0.7,eth0:fuzz-container\n", "lock\n"]))
add("hostlocal_lease", "holders", SEP.join(["10.1.0.2\n" + lease("c1", "eth0"), "+eth0:c1/10.1.0.2\n",
                                            "fd00::4\n" + lease("c1", "eth0"), "+eth0:c1/fd00::4\n",
                                            "10.1.0.3\n" + lease("c2", "eth0"), "+eth0:c1/10.1.0.3\n",
                                            "+eth0:c2/10.1.0.3\n", "+eth0:gone/10.1.0.9\n",
                                            "+junk/10.1.0.2\n"]))
add("hostlocal_lease", "mine-holder", SEP.join(["10.1.0.7\n" + lease("fuzz-container", "eth0"),
                                                "+eth0:fuzz-container/10.1.0.7\n"]))
add("hostlocal_lease", "full", SEP.join(f"10.1.0.{i}\n" + lease(f"c{i}", "eth0") for i in range(1, 15)))

add("state_bridge", "basic", json.dumps({
    "containerID": "c0ffee", "ifname": "eth0", "bridge": "cni0", "fwInterfaces": ["cni0"],
    "hostVeth": "veth12345678", "containerMac": "aa:bb:cc:dd:ee:ff", "masqIPs": ["10.88.0.5"],
    "spoofchk": True, "masqExclude": ["10.0.0.0/8"],
    "links": [{"src": "10.88.0.5", "peer": "10.88.0.6", "proto": 6, "port": 80}]}))
add("state_bridge", "minimal", '{"containerID":"c0ffee","ifname":"eth0","bridge":"cni0","fwInterfaces":[],"masqIPs":[]}')
add("state_portmap", "basic", json.dumps({
    "network": "fuzznet", "containerID": "c0ffee", "ifname": "eth0", "table": "tether-portmap",
    "groups": [{"what": "tcp *:8080 -> 10.88.0.5:80", "exclusive": True,
                "keys": [{"set": "dnat4_any", "key": "06001f90", "data": "0a5800050050"}],
                "members": [{"set": "masq4", "key": "0a580005", "keyEnd": "0a5800ff"}]}],
    "udp": [{"family": 4, "port": 5353, "count": 1, "hostIP": "127.0.0.1"}, {"family": 6, "port": 53, "count": 2}]}))
add("state_portmap", "empty", '{"network":"fuzznet","containerID":"c0ffee","ifname":"eth0","table":"t","groups":[],"udp":[]}')
record = {"network": "fuzznet", "containerID": "c0ffee", "ifname": "eth0", "name": "web1",
          "hostname": "web1", "aliases": ["svc"], "containerAliases": ["me", "db=web2"],
          "addresses": ["10.88.0.5/16", "fd00::5/64"], "gateways": ["10.88.0.1"],
          "upstreams": ["1.1.1.1"], "domain": "tether.internal", "networkUpstreams": ["9.9.9.9:53"],
          "internal": False, "ttl": 5, "serial": 12345, "port": 5353}
add("state_dns", "record", json.dumps(record))
add("state_dns", "cluster", json.dumps(dict(record, node="h1", cluster=True, gateways=[])))

def query(qid, name, qtype=1, qclass=1, flags=0x0100, edns=None, qd=1):
    out = struct.pack(">HHHHHH", qid, flags, qd, 0, 0, 1 if edns else 0)
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    out += b"\0" + struct.pack(">HH", qtype, qclass)
    if edns:
        out += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return out

qs = {
    "a-web1": (0x00, query(1, "web1.test.internal")),
    "a-short": (0x00, query(2, "web2")),
    "aaaa-v6-source": (0x01, query(3, "web1", 28)),
    "alias": (0x02, query(4, "svc.test.internal", 255)),
    "container-alias": (0x00, query(5, "backend", 1)),
    "ptr": (0x00, query(6, "2.0.1.10.in-addr.arpa", 12)),
    "ptr6": (0x01, query(7, ".".join(reversed("fd010000000000000000000000000002")) + ".ip6.arpa", 12)),
    "nx": (0x03, query(8, "nobody.test.internal")),
    "forward": (0x03, query(9, "example.com")),
    "internal": (0x04, query(10, "example.com")),
    "unregistered-source": (0x05, query(11, "web1")),
    "stranger": (0x06, query(12, "web1")),
    "tcp-edns": (0x08 | 0x10, query(13, "web1", 1, 1, 0x0100, 4096)),
    "mx": (0x10, query(14, "web1", 15)),
    "notimpl": (0x00, query(15, "web1", flags=0x2800)),
    "formerr": (0x00, query(16, "web1", qd=2)),
    "response": (0x00, query(17, "web1", flags=0x8000)),
    "chaos": (0x00, query(18, "version.bind", 16, 3)),
}
for name, (sel, wire) in qs.items():
    add("dns_query", name, bytes([sel]) + wire)
add("dns_query", "short", b"\x00\x12\x34")

rec_line = json.dumps({"op": "add", "record": dict(record, gateways=[])})
add("control", "ping", '{"op":"ping"}\n')
add("control", "add-list-del", "\n".join([rec_line, '{"op":"list"}',
    '{"op":"check","network":"fuzznet","containerID":"c0ffee","ifname":"eth0"}',
    '{"op":"del","network":"fuzznet","containerID":"c0ffee","ifname":"eth0"}', '{"op":"list"}']) + "\n")
add("control", "sync", '{"op":"sync","network":"fuzznet"}\n{"op":"sync"}\n')
add("control", "bad", 'not json\n{"op":1}\n{"op":"add"}\n{"op":"nope"}\n[]\n')
add("control", "add-twice", rec_line + "\n" + json.dumps({"op": "add", "record": dict(record, gateways=[], name="web9", serial=99999)}) + "\n")

add("resolv_conf", "debian", "# generated\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nsearch lan example.org\ndomain lan\noptions ndots:2 edns0\n")
add("resolv_conf", "systemd", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
add("resolv_conf", "many", "".join(f"nameserver 10.0.0.{i}\n" for i in range(6)) + "nameserver ::1 # comment\n;x\n")

cluster = json.loads((ROOT / "conf-examples" / "cluster.json").read_text())
add("cluster_config", "example", json.dumps(cluster))
add("cluster_config", "full", json.dumps(dict(cluster, prefix="/tether/", agentSocket="/run/a.sock",
    stateDir="/var/lib/a", overlayDir="/var/lib/o", leaseTTL=10, timeoutMs=500,
    tls={"cert": "/etc/c.pem", "key": "/etc/k.pem", "ca": "/etc/ca.pem"})))



def elf_note(name, ntype, desc, align):
    """One ELF note: the 12-byte header, the name and the description, each padded to align."""
    pad = lambda b, at: b + b"\0" * (-(at + len(b)) % align)
    head = struct.pack("<III", len(name) + 1, len(desc), ntype)
    name_part = pad(name.encode() + b"\0", len(head))
    return head + name_part + pad(desc, len(head) + len(name_part))


# A linker's two segments: the build ID (4-aligned), and the property note before it (8).
add("elf_notes", "build-id", b"\0" + elf_note("GNU", 3, bytes(range(20)), 4))
add("elf_notes", "property-then-id", b"\1" + elf_note("GNU", 5, bytes(16), 8) +
    elf_note("GNU", 3, bytes(range(20)), 8))
add("elf_notes", "go-then-gnu", b"\0" + elf_note("Go", 4, b"abcd", 4) +
    elf_note("GNU", 3, bytes(range(8)), 4))

for target, files in seeds.items():
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in files.items():
        (d / name).write_bytes(data)
print(sum(len(f) for f in seeds.values()), "seeds in", len(seeds), "targets")
