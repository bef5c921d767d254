"""bridge with an overlay on one host: the VXLAN device, MTU, the overlay spec for the agent,
the firewall elements that keep overlays apart, and ipMasqExclude with real traffic. The
traffic across hosts is tests/multihost's."""
import json

from conftest import RUN
from test_bridge import HOST_O, OUT_O, lab, ping, servers, subnet, tcp_peer  # noqa: F401


def overlay_conf(lab, br, sub, vni, **keys):
    cluster = lab.tmp / "cluster.json"
    cluster.write_text(json.dumps({"etcd": ["http://127.0.0.1:2379"], "node": "h",
                                   "address": HOST_O}))
    return lab.conf(br, ipam={"type": "host-local", "ranges": [[{"subnet": f"{sub}.0/24"}]],
                              "dataDir": str(lab.ipam_dir)},
                    overlay={"vni": vni}, overlayDir=str(lab.tmp / "ov"),
                    cluster=str(cluster), isDefaultGateway=True, **keys)


def test_overlay_device_mtu_spec_and_elements(lab):
    lab.outside()  # o0 in H holds HOST_O: the underlay address of the cluster file
    lab.h.run("ip", "link", "set", "o0", "mtu", "1400")
    sub = subnet()
    c = lab.container()
    conf = overlay_conf(lab, "v", sub, 4242, ipMasq=True)
    res = lab.add(conf, c)
    dev = lab.link("tvx4242")
    info = dev["linkinfo"]["info_data"]
    assert info["id"] == 4242 and info["port"] == 4789 and info["local"] == HOST_O
    assert info["learning"] is False and "remote" not in info and "group" not in info
    assert dev["mtu"] == 1350 and "UP" in dev["flags"]  # underlay 1400 - 50
    assert lab.link(f"{RUN}v")["mtu"] == 1350
    assert lab.link("eth0", ns=c)["mtu"] == 1350
    assert lab.link(res["interfaces"][1]["name"])["mtu"] == 1350
    spec = json.loads((lab.tmp / "ov" / "4242.json").read_text())
    assert spec == {"device": "tvx4242", "vni": 4242, "port": 4789, "local": HOST_O, "mtu": 0,
                    "ranges": [f"{sub}.0/24"]}
    # Firewall: the bridge and its VXLAN device are one network (icc pairs both ways), both are
    # overlay interfaces, and the cluster range is never masqueraded to.
    assert sorted(lab.elements("overlays")) == sorted([f"{RUN}v", "tvx4242"])
    icc = lab.nft("list", "map", "inet", lab.table, "same_bridge")
    assert f'"{RUN}v" . "tvx4242" : accept' in icc and f'"tvx4242" . "{RUN}v" : accept' in icc
    nomasq = lab.nft("list", "set", "inet", lab.table, "nomasq4")
    assert f"{sub}.2 . {sub}.0/24" in nomasq
    ok_check = lab.run("CHECK", dict(conf, prevResult=res), c, cid=c.name)
    assert ok_check.rc == 0, ok_check
    # A second network on the same host and VNI reuses the device.
    sub2 = subnet()
    c2 = lab.container("d")
    lab.add(overlay_conf(lab, "w", sub2, 4242), c2)
    spec = json.loads((lab.tmp / "ov" / "4242.json").read_text())
    assert spec["ranges"] == sorted([f"{sub}.0/24", f"{sub2}.0/24"])
    assert lab.link("tvx4242")["ifindex"] == dev["ifindex"]

    assert lab.run("DEL", conf, c, cid=c.name).rc == 0
    assert f"{sub}.2" not in lab.nft("list", "set", "inet", lab.table, "nomasq4")
    lab.h.run("ip", "link", "del", "tvx4242")
    bad = lab.run("CHECK", dict(overlay_conf(lab, "w", sub2, 4242), prevResult=res), c2, cid=c2.name)
    assert bad.rc != 0 and "tvx4242" in bad.stdout


def test_overlays_apart_on_one_host(lab, servers):
    lab.outside()
    a, b, plain = subnet(), subnet(), subnet()
    ca, cb, cp = lab.container("a"), lab.container("b"), lab.container("p")
    lab.add(overlay_conf(lab, "a", a, 101), ca)
    lab.add(overlay_conf(lab, "b", b, 202), cb)
    lab.add(lab.conf("p", plain, isDefaultGateway=True), cp)
    for ctr in (ca, cb, cp):
        servers(ctr, "0.0.0.0", 8000)
    # Two overlays never reach each other, either way; a plain bridge keeps reaching both (as
    # two plain bridges do), and they it.
    assert tcp_peer(ca, f"{b}.2", 8000, wait=1) is None
    assert tcp_peer(cb, f"{a}.2", 8000, wait=1) is None
    assert not ping(ca, f"{b}.2", wait=1)
    assert tcp_peer(cp, f"{a}.2", 8000) == f"{plain}.2"
    assert tcp_peer(ca, f"{plain}.2", 8000) == f"{a}.2"


def test_ipmasq_exclude_without_overlay(lab, servers):
    o = lab.outside()
    o.run("ip", "addr", "add", f"{OUT_O[:-2]}.6/30", "dev", "h0")  # a second destination on O
    servers(o, "0.0.0.0", 7000)
    sub = subnet()
    c = lab.container()
    lab.add(lab.conf("x", sub, isDefaultGateway=True, ipMasq=True,
                     ipMasqExclude=[f"{OUT_O}/32"]), c)
    # Routed to the excluded CIDR: the receiver sees the container's own address; elsewhere it
    # is still masqueraded.
    assert tcp_peer(c, OUT_O, 7000) == f"{sub}.2"
    lab.h.run("ip", "route", "add", f"{OUT_O[:-2]}.6/32", "via", OUT_O)
    assert tcp_peer(c, f"{OUT_O[:-2]}.6", 7000) == HOST_O
