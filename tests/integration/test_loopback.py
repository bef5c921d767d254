"""loopback as a process, differential against the reference (/usr/lib/cni/loopback, Debian
1.1.1): for every cniVersion the reference speaks, both run on the same input in the same
fresh netns (recreated between the two), and stdout must be byte for byte the same, and so must
`lo` afterwards (flags and addresses). Then what only the spec says: DEL with an empty or gone
netns, CHECK, STATUS, GC, VERSION, errors with their codes.
"""
import json
import subprocess

import pytest

from conftest import BIN, REF_BIN, RUN, run_plugin, sh

PLUGIN = "loopback"
REF_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
# containerd's loopback network, verbatim.
CONTAINERD_CONF = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}


class Sandbox:
    """A netns as a runtime makes one: `lo` down, nothing configured. reset() gives a fresh one
    under the same path, so that both implementations see the same CNI_NETNS."""

    def __init__(self, name):
        self.name = name
        self.path = f"/run/netns/{name}"
        self.sysctls = {}
        sh("ip", "netns", "add", name)

    def reset(self):
        self.delete()
        sh("ip", "netns", "add", self.name)
        for k, v in self.sysctls.items():
            sh("ip", "netns", "exec", self.name, "sysctl", "-qw", f"{k}={v}")

    def sysctl(self, key, value):
        self.sysctls[key] = value
        sh("ip", "netns", "exec", self.name, "sysctl", "-qw", f"{key}={value}")

    def lo(self):
        """`lo`'s flags and addresses as the kernel reports them."""
        link = json.loads(sh("ip", "-j", "-n", self.name, "addr", "show", "dev", "lo"))[0]
        return {"flags": sorted(link["flags"]), "operstate": link["operstate"],
                "addrs": [(a["family"], a["local"], a["prefixlen"], a["scope"])
                          for a in link["addr_info"]]}

    def run(self, *cmd, check=True):
        return sh("ip", "netns", "exec", self.name, *cmd, check=check)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def sandbox():
    made = []

    def make(suffix="lo"):
        s = Sandbox(f"{RUN}-{len(made)}{suffix}")
        made.append(s)
        return s

    yield make
    for s in made:
        s.delete()


def conf(version="0.3.1", **extra):
    c = {"cniVersion": version, "name": "cni-loopback", "type": "loopback"}
    c.update(extra)
    return c


def run(command, c, netns, ref=False, ifname="lo", **kw):
    return run_plugin(PLUGIN, command, c, netns=netns, ifname=ifname,
                      bindir=REF_BIN if ref else BIN, **kw)


def both(sb, command, c, setup=None, **kw):
    """Runs the reference, then ours, each on a fresh netns at the same path (prepared by
    `setup`). Returns (ref result, ref lo state, our result, our lo state)."""
    out = []
    for ref in (True, False):
        sb.reset()
        if setup:
            setup(sb)
        res = run(command, c, sb.path, ref=ref, **kw)
        out += [res, sb.lo()]
    return tuple(out)


def prev_result(version):
    """A bridge-like result in the shape of `version`."""
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version,
                "ip4": {"ip": "10.88.0.5/16", "gateway": "10.88.0.1",
                        "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}]},
                "ip6": {"ip": "fd88::5/64", "routes": [{"dst": "::/0"}]},
                "dns": {"nameservers": ["10.88.0.1"], "search": ["pod.test"]}}
    legacy = version != "1.0.0"
    ips = [{"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"},
           {"interface": 2, "address": "fd88::5/64", "gateway": "fd88::1"}]
    if legacy:
        ips[0]["version"] = "4"
        ips[1]["version"] = "6"
    return {"cniVersion": version,
            "interfaces": [{"name": "cni0", "mac": "0a:58:0a:58:00:01"},
                           {"name": "veth1234", "mac": "0a:58:0a:58:00:02"},
                           {"name": "eth0", "mac": "0a:58:0a:58:00:05",
                            "sandbox": "/run/netns/elsewhere"}],
            "ips": ips,
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "::/0"}],
            "dns": {"nameservers": ["10.88.0.1"], "domain": "pod.test",
                    "search": ["pod.test"], "options": ["ndots:2"]}}


@pytest.mark.parametrize("version", REF_VERSIONS)
def test_add_is_byte_for_byte_the_reference(sandbox, version):
    sb = sandbox()
    ref, ref_lo, ours, our_lo = both(sb, "ADD", conf(version))
    assert ref.rc == 0, ref
    assert ours.rc == 0, ours
    assert ours.stdout == ref.stdout
    assert our_lo == ref_lo
    # What that is: lo up, with the kernel's two loopback addresses.
    assert "UP" in our_lo["flags"]
    assert [a[1:3] for a in our_lo["addrs"]] == [("127.0.0.1", 8), ("::1", 128)]
    assert ours.json["ips"] == [{"interface": 0, "address": "127.0.0.1/8"},
                                {"interface": 0, "address": "::1/128"}]
    assert ours.json["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00",
                                        "sandbox": sb.path}]


@pytest.mark.parametrize("version", REF_VERSIONS)
def test_add_passes_prev_result_through_as_the_reference(sandbox, version):
    sb = sandbox()
    c = conf(version, prevResult=prev_result(version))
    ref, ref_lo, ours, our_lo = both(sb, "ADD", c)
    assert ref.rc == 0, ref
    assert ours.rc == 0, ours
    assert ours.stdout == ref.stdout
    assert our_lo == ref_lo
    assert "UP" in our_lo["flags"]


def test_add_with_ipv6_disabled_reports_ipv4_only(sandbox):
    sb = sandbox()
    sb.sysctls = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.lo.disable_ipv6": 1}
    ref, ref_lo, ours, our_lo = both(sb, "ADD", CONTAINERD_CONF)
    assert ours.rc == 0 and ref.rc == 0, (ours, ref)
    assert ours.stdout == ref.stdout
    assert our_lo == ref_lo
    assert ours.json["ips"] == [{"interface": 0, "address": "127.0.0.1/8"}]


def test_add_ignores_ifname_as_the_reference(sandbox):
    sb = sandbox()
    ref, ref_lo, ours, our_lo = both(sb, "ADD", CONTAINERD_CONF, ifname="eth0")
    assert ours.rc == 0 and ref.rc == 0, (ours, ref)
    assert ours.stdout == ref.stdout
    assert our_lo == ref_lo
    assert ours.json["interfaces"][0]["name"] == "lo"


def test_add_refuses_a_non_loopback_address_on_lo(sandbox):
    sb = sandbox()

    def odd_address(s):
        s.run("ip", "addr", "add", "10.9.9.9/32", "dev", "lo")

    ref, _, ours, _ = both(sb, "ADD", CONTAINERD_CONF, setup=odd_address)
    assert ref.rc != 0 and ours.rc != 0
    assert ours.code == 999
    assert "non-loopback address" in ours.json["msg"]
    assert ours.json["details"] == "10.9.9.9"


def test_add_1_1_0_which_the_reference_does_not_speak(sandbox):
    sb = sandbox()
    ref, _, ours, our_lo = both(sb, "ADD", conf("1.1.0"))
    assert ref.rc != 0 and ref.code == 1
    assert ours.rc == 0, ours
    assert json.loads(ours.stdout) == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sb.path}],
        "ips": [{"interface": 0, "address": "127.0.0.1/8"},
                {"interface": 0, "address": "::1/128"}],
        "dns": {}}
    assert "UP" in our_lo["flags"]


def test_prev_result_of_another_version_is_a_decode_error(sandbox):
    sb = sandbox()
    c = conf("0.3.1", prevResult=prev_result("1.0.0"))
    ref, ref_lo, ours, our_lo = both(sb, "ADD", c)
    assert ref.rc != 0 and ours.rc != 0
    assert ours.code == 6
    assert "prevResult" in ours.json["msg"]
    # Refused before touching the netns.
    assert "UP" not in our_lo["flags"]


def test_add_needs_an_existing_netns():
    res = run("ADD", CONTAINERD_CONF, f"/run/netns/{RUN}-missing")
    assert res.rc != 0 and res.code == 8, res
    res = run("ADD", CONTAINERD_CONF, "")
    assert res.rc != 0 and res.code == 4, res


@pytest.mark.parametrize("ref", [True, False], ids=["reference", "tether"])
def test_del_brings_lo_down_and_is_idempotent(sandbox, ref):
    sb = sandbox()
    assert run("ADD", CONTAINERD_CONF, sb.path, ref=ref).rc == 0
    res = run("DEL", CONTAINERD_CONF, sb.path, ref=ref)
    assert res.rc == 0 and res.stdout == "", res
    assert "UP" not in sb.lo()["flags"]
    assert run("DEL", CONTAINERD_CONF, sb.path, ref=ref).rc == 0
    # containerd's second teardown: CNI_NETNS empty; and a netns that is gone.
    assert run("DEL", CONTAINERD_CONF, "", ref=ref).rc == 0
    gone = f"/run/netns/{RUN}-gone"
    res = run("DEL", CONTAINERD_CONF, gone, ref=ref)
    assert res.rc == 0 and res.stdout == "", res


def test_del_of_a_removed_netns_after_add(sandbox):
    sb = sandbox()
    assert run("ADD", CONTAINERD_CONF, sb.path).rc == 0
    sb.delete()
    res = run("DEL", CONTAINERD_CONF, sb.path)
    assert res.rc == 0 and res.stdout == "", res


@pytest.mark.parametrize("ref", [True, False], ids=["reference", "tether"])
def test_check(sandbox, ref):
    sb = sandbox()
    c = conf("1.0.0")
    assert run("ADD", c, sb.path, ref=ref).rc == 0
    assert run("CHECK", c, sb.path, ref=ref).rc == 0
    sb.run("ip", "link", "set", "lo", "down")
    res = run("CHECK", c, sb.path, ref=ref)
    assert res.rc != 0
    assert res.code == 999 and res.json["msg"] == "loopback interface is down", res
    # CHECK came with 0.4.0.
    res = run("CHECK", conf("0.3.1"), sb.path, ref=ref)
    assert res.rc != 0 and res.code == 1, res


def test_status_gc_and_version():
    c = conf("1.1.0")
    res = run_plugin(PLUGIN, "STATUS", c)
    assert res.rc == 0 and res.stdout == "", res
    gc = dict(c, **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "lo"}]})
    res = run_plugin(PLUGIN, "GC", gc)
    assert res.rc == 0 and res.stdout == "", res
    res = run_plugin(PLUGIN, "GC", dict(c, **{"cni.dev/valid-attachments": [{"ifname": "lo"}]}))
    assert res.rc != 0 and res.code == 7, res
    res = run_plugin(PLUGIN, "GC", conf("1.0.0"))
    assert res.rc != 0 and res.code == 1, res

    res = run_plugin(PLUGIN, "VERSION", c)
    assert res.rc == 0
    ref = run_plugin(PLUGIN, "VERSION", c, bindir=REF_BIN)
    # Every version the reference speaks, and 1.1.0.
    assert res.json["supportedVersions"] == ref.json["supportedVersions"] + ["1.1.0"]


def test_unknown_version_and_bad_config():
    res = run("ADD", conf("0.9.0"), "/x")
    assert res.rc != 0 and res.code == 1, res
    res = run("ADD", "{not json", "/x")
    assert res.rc != 0 and res.code == 6, res
