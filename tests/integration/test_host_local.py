"""host-local as a process: differential against the reference (/usr/lib/cni/host-local, Debian
1.1.1) on results and lease files, directories handed from one implementation to the other,
every error with its code and nothing written, GC, STATUS, crash safety and concurrency.

IPAM needs no network namespace: CNI_NETNS is any string. Every dataDir lives under tmpdir_run.
"""
import ipaddress
import json
import os
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BIN, REF_BIN, ok, run_plugin

PLUGIN = "host-local"
CRASHTEST = "host-local-crashtest"
NET = "hlnet"
LEASE_RE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.\-]*\r\neth\d+")


def conf(data_dir, ipam=None, version="1.0.0", name=NET, **top):
    ipam = dict(ipam or {"subnet": "10.77.0.0/24"})
    ipam.setdefault("type", "host-local")
    ipam["dataDir"] = str(data_dir)
    c = {"cniVersion": version, "name": name, "type": "bridge", "ipam": ipam}
    c.update(top)
    return c


def run(command, c, cid="ctr1", ifname="eth0", ref=False, **kw):
    return run_plugin(PLUGIN, command, c, containerid=cid, ifname=ifname, netns="/x",
                      bindir=REF_BIN if ref else None, **kw)


def files(data_dir, name=NET):
    """The lease directory as {file name: bytes}; {} when it does not exist."""
    d = Path(data_dir) / name
    if not d.exists():
        return {}
    return {p.name: p.read_bytes() for p in d.iterdir()}


def leases(data_dir, name=NET):
    return {n: v for n, v in files(data_dir, name).items()
            if n != "lock" and not n.startswith("last_reserved_ip.")}


def addresses(result):
    return [ip["address"] for ip in result["ips"]]


def assert_consistent(data_dir, name=NET):
    """No empty or partial file: leases are '<id>\\r\\n<ifname>', hints are one address, and the
    only other names are the lock and hidden temp files of a killed writer."""
    for n, content in files(data_dir, name).items():
        if n == "lock":
            continue
        if n.startswith("last_reserved_ip."):
            ipaddress.ip_address(content.decode())
        elif n.startswith(".") and (".tmp-" in n or n.endswith(".tmp")):
            # ".<name>.tmp-<pid>-<n>", or ".<name>.tmp" where an O_TMPFILE file is linked on its
            # way into place (common/files.cc): never read as a lease; the next scan removes it
            continue
        else:
            ipaddress.ip_address(n)
            assert LEASE_RE.fullmatch(content), (n, content)


def only_bookkeeping(data_dir, name=NET):
    return all(n == "lock" or n.startswith("last_reserved_ip.") for n in files(data_dir, name))


# ---------------------------------------------------------------------------------------------
# Differential: the same calls against the reference and against ours.

DIFF_CASES = {
    "legacy-subnet-routes": (
        {"subnet": "10.77.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16",
                                                                      "gw": "10.77.0.9"}]},
        {}),
    "dual-stack-custom-window": (
        {"ranges": [[{"subnet": "10.78.0.0/16", "rangeStart": "10.78.3.10",
                      "rangeEnd": "10.78.3.12", "gateway": "10.78.0.254"}],
                    [{"subnet": "fd00:78::/64", "rangeStart": "fd00:78::ffff"}]]},
        {}),
    "multi-subnet-wrap": (
        {"ranges": [[{"subnet": "10.79.0.0/30"}, {"subnet": "10.79.1.0/29",
                                                  "gateway": "10.79.1.3"}]]},
        {}),
    "legacy-plus-ranges": (
        {"subnet": "10.80.0.0/29", "ranges": [[{"subnet": "10.81.0.0/29"}]]},
        {}),
    "runtime-ipranges": (
        {"ranges": [[{"subnet": "10.82.0.0/29"}]]},
        {"runtimeConfig": {"ipRanges": [[{"subnet": "10.83.0.0/29"}]]}}),
    "version-0.4.0": ({"subnet": "10.84.0.0/29"}, {"cniVersion": "0.4.0"}),
    "version-0.3.1": ({"subnet": "10.85.0.0/29"}, {"cniVersion": "0.3.1"}),
}


@pytest.mark.parametrize("case", sorted(DIFF_CASES))
def test_differential_results_and_files(tmpdir_run, case):
    ipam, top = DIFF_CASES[case]
    dirs = {False: tmpdir_run / "ours", True: tmpdir_run / "ref"}
    confs = {r: {**conf(d, ipam), **top} for r, d in dirs.items()}
    # ADDs past the end of the small pools (exhaustion is part of the comparison), DELs in the
    # middle so round-robin must skip and wrap the same way.
    steps = [("ADD", f"c{i}") for i in range(4)] + [("DEL", "c1"), ("DEL", "c2")] + \
            [("ADD", f"c{i}") for i in range(4, 9)] + [("CHECK", "c0"), ("DEL", "c0")]
    for command, cid in steps:
        got = {r: run(command, confs[r], cid=cid, ref=r) for r in (False, True)}
        assert (got[False].rc == 0) == (got[True].rc == 0), (command, cid, got)
        if got[True].rc == 0:
            assert got[False].json == got[True].json, (command, cid)
        else:
            assert got[False].json["msg"] == got[True].json["msg"], (command, cid)
        assert files(dirs[False]) == files(dirs[True]), (command, cid)


def test_differential_resolvconf(tmpdir_run):
    rc = tmpdir_run / "resolv.conf"
    rc.write_text("# x\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain corp.example\n"
                  "search a.example b.example\noptions ndots:3 rotate\n")
    results = [ok(run("ADD", conf(tmpdir_run / str(r), {"subnet": "10.86.0.0/24",
                                                         "resolvConf": str(rc)}), ref=r))
               for r in (False, True)]
    assert results[0] == results[1]
    assert results[0]["dns"]["nameservers"] == ["10.0.0.53", "fd00::53"]


@pytest.mark.parametrize("source", ["cni_args", "args", "runtime"])
def test_differential_requested_ip(tmpdir_run, source):
    out = []
    for r in (False, True):
        c = conf(tmpdir_run / str(r), {"subnet": "10.87.0.0/24"})
        cni_args = None
        if source == "cni_args":
            cni_args = "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.87.0.42"
        elif source == "args":
            c["args"] = {"cni": {"ips": ["10.87.0.42/24"]}}
        else:
            c["runtimeConfig"] = {"ips": ["10.87.0.42"]}
        out.append((ok(run("ADD", c, args=cni_args, ref=r)), files(tmpdir_run / str(r))))
    assert out[0] == out[1]
    assert addresses(out[0][0]) == ["10.87.0.42/24"]
    assert out[0][1]["10.87.0.42"] == b"ctr1\r\neth0"


# ---------------------------------------------------------------------------------------------
# One directory, two implementations.

@pytest.mark.parametrize("first_ref", [True, False], ids=["ref-then-ours", "ours-then-ref"])
def test_directory_handover(tmpdir_run, first_ref):
    c = conf(tmpdir_run, {"ranges": [[{"subnet": "10.88.0.0/29"}], [{"subnet": "fd00:88::/120"}]]})
    a, b = first_ref, not first_ref
    ok(run("ADD", c, cid="x1", ref=a))
    ok(run("ADD", c, cid="x2", ref=a))
    # The other implementation continues round-robin from the first one's last_reserved_ip.
    assert addresses(ok(run("ADD", c, cid="x3", ref=b))) == ["10.88.0.4/29", "fd00:88::4/120"]
    # Each sees, checks and releases the other's leases.
    ok(run("CHECK", c, cid="x3", ref=a))
    ok(run("CHECK", c, cid="x1", ref=b))
    assert run("ADD", c, cid="x1", ref=b).rc != 0  # duplicate, seen across implementations
    ok(run("DEL", c, cid="x1", ref=b))
    ok(run("DEL", c, cid="x3", ref=a))
    assert sorted(leases(tmpdir_run)) == ["10.88.0.3", "fd00:88::3"]
    ok(run("DEL", c, cid="x2", ref=b))
    assert only_bookkeeping(tmpdir_run)


@pytest.mark.parametrize("ref", [False, True], ids=["ours", "ref"])
def test_legacy_id_only_leases(tmpdir_run, ref):
    c = conf(tmpdir_run, {"subnet": "10.89.0.0/29"})
    ok(run("ADD", c, cid="new"))
    (tmpdir_run / NET / "10.89.0.5").write_bytes(b"oldctr")  # written by a pre-ifname version
    ok(run("CHECK", c, cid="oldctr", ref=ref))
    assert run("ADD", c, cid="oldctr", ref=ref).rc != 0  # it already holds .5
    ok(run("DEL", c, cid="oldctr", ref=ref))
    assert sorted(leases(tmpdir_run)) == ["10.89.0.2"]


@pytest.mark.parametrize("verb", ["ADD", "DEL"])
def test_empty_lease_from_killed_reference_is_reclaimed(tmpdir_run, verb):
    """The reference creates a lease and then writes it; killed in between it leaves an empty
    file that no DEL can match. Any locked call of ours removes it."""
    c = conf(tmpdir_run, {"subnet": "10.104.0.0/29"})
    ok(run("ADD", c, cid="a", ref=True))
    (tmpdir_run / NET / "10.104.0.3").write_bytes(b"")
    ok(run(verb, c, cid="b"))
    assert "10.104.0.3" not in leases(tmpdir_run) or verb == "ADD"
    if verb == "ADD":
        assert leases(tmpdir_run)["10.104.0.3"] == b"b\r\neth0"  # reclaimed and handed out
    assert leases(tmpdir_run)["10.104.0.2"] == b"a\r\neth0"


# ---------------------------------------------------------------------------------------------
# Errors: code, the reference's message, nothing written.

BAD_CONFIGS = {
    "no-ipam": (None, 7, "IPAM config missing 'ipam' key"),
    "no-ranges": ({"type": "host-local"}, 7, "no IP ranges specified"),
    "slash-32": ({"subnet": "10.90.0.1/32"}, 7,
                 "invalid range set 0: Network 10.90.0.1/32 too small to allocate from"),
    "slash-31": ({"subnet": "10.90.0.0/31"}, 7, None),
    "slash-127": ({"ranges": [[{"subnet": "fd00::/127"}]]}, 7, None),
    "slash-128": ({"ranges": [[{"subnet": "fd00::1/128"}]]}, 7, None),
    "host-bits": ({"subnet": "10.90.0.5/24"}, 7,
                  "invalid range set 0: Network has host bits set. For a subnet mask of length "
                  "24 the network address is 10.90.0.0"),
    "start-outside": ({"subnet": "10.90.0.0/24", "rangeStart": "10.91.0.1"}, 7,
                      "invalid range set 0: RangeStart 10.91.0.1 not in network 10.90.0.0/24"),
    "end-outside": ({"ranges": [[{"subnet": "10.90.0.0/24", "rangeEnd": "10.90.1.1"}]]}, 7,
                    "invalid range set 0: RangeEnd 10.90.1.1 not in network 10.90.0.0/24"),
    "sets-overlap": ({"ranges": [[{"subnet": "10.90.0.0/24"}], [{"subnet": "10.90.0.0/25"}]]},
                     7, "range set 0 overlaps with 1"),
    "subnets-overlap": ({"ranges": [[{"subnet": "10.90.0.0/24"}, {"subnet": "10.90.0.0/16"}]]},
                        7, "invalid range set 0: subnets 10.90.0.1-10.90.0.254 and "
                           "10.90.0.1-10.90.255.254 overlap"),
    "mixed-families": ({"ranges": [[{"subnet": "10.90.0.0/24"}, {"subnet": "fd00::/64"}]]}, 7,
                       "invalid range set 0: mixed address families"),
    "empty-set": ({"ranges": [[]]}, 7, "invalid range set 0: empty range set"),
    "bad-subnet": ({"subnet": "10.90.0.0"}, 7, None),
    "bad-gateway": ({"subnet": "10.90.0.0/24", "gateway": "nope"}, 7, None),
    "wrong-type": ({"subnet": "10.90.0.0/24", "routes": {"dst": "0.0.0.0/0"}}, 7, None),
    "bad-route": ({"subnet": "10.90.0.0/24", "routes": [{"dst": "10.0.0.1"}]}, 7, None),
    "missing-resolvconf": ({"subnet": "10.90.0.0/24", "resolvConf": "/nonexistent/resolv"}, 7,
                           None),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_config(tmpdir_run, case):
    ipam, code, ref_msg = BAD_CONFIGS[case]
    c = conf(tmpdir_run, ipam or {})
    if ipam is None:
        del c["ipam"]
    res = run("ADD", c)
    assert res.rc != 0 and res.code == code, res
    if ref_msg:
        assert res.json["msg"] == ref_msg
        assert run("ADD", c, ref=True).json["msg"] == ref_msg  # parity, checked live
    if code == 7 and ipam is not None:
        assert res.json.get("details"), res  # names the key
    assert not (tmpdir_run / NET).exists()  # nothing written, not even the directory
    if case != "missing-resolvconf":  # only ADD reads resolvConf, as in the reference
        for command in ("DEL", "CHECK"):
            assert run(command, c).code == code


@pytest.mark.parametrize("cni_args", ["FOO=bar", "IP=10.92.0.300", "garbage"])
def test_bad_cni_args(tmpdir_run, cni_args):
    res = run("ADD", conf(tmpdir_run, {"subnet": "10.92.0.0/24"}), args=cni_args)
    assert res.code == 4, res
    assert files(tmpdir_run) == {}


def test_requested_ip_errors_write_nothing(tmpdir_run):
    c = conf(tmpdir_run, {"ranges": [[{"subnet": "10.93.0.0/29"}], [{"subnet": "fd00:93::/120"}]]})
    ok(run("ADD", c, cid="holder", args="IP=10.93.0.4"))
    before = files(tmpdir_run)
    cases = [
        ("IP=10.93.0.4", 50, "failed to allocate for range 0: requested IP address 10.93.0.4 "
                             "is not available in range set 10.93.0.1-10.93.0.6"),
        ("IP=10.93.0.1", 7, "failed to allocate for range 0: requested ip 10.93.0.1 is "
                            "subnet's gateway"),
        # The reference allocates in both sets before failing, and leaves last_reserved_ip
        # moved; ours fails before writing.
        ("IP=10.94.0.1", 7, "failed to allocate all requested IPs: 10.94.0.1"),
    ]
    for cni_args, code, msg in cases:
        res = run("ADD", c, cid="other", args=cni_args)
        assert (res.code, res.json["msg"]) == (code, msg), res
        assert files(tmpdir_run) == before
    res = run("ADD", c, cid="holder")
    assert res.code == 100 and "duplicate allocation is not allowed" in res.json["msg"]
    assert files(tmpdir_run) == before


def test_exhaustion_in_second_set_releases_first(tmpdir_run):
    c = conf(tmpdir_run, {"ranges": [[{"subnet": "10.95.0.0/24"}], [{"subnet": "10.96.0.0/30"}]]})
    ok(run("ADD", c, cid="a"))
    before = files(tmpdir_run)
    res = run("ADD", c, cid="b")
    assert res.code == 50
    assert res.json["msg"] == ("failed to allocate for range 1: no IP addresses available in "
                               "range set: 10.96.0.1-10.96.0.2")
    assert files(tmpdir_run) == before  # no lease in set 0, last_reserved_ip.0 untouched


def test_del_idempotent_and_check(tmpdir_run):
    c = conf(tmpdir_run)
    ok(run("DEL", c))  # nothing ever held, directory absent
    assert not (tmpdir_run / NET).exists()
    ok(run("ADD", c))
    ok(run("CHECK", c))
    res = run("CHECK", c, ifname="eth1")
    assert res.code == 101 and res.json["msg"] == \
        "host-local: Failed to find address added by container ctr1"
    ok(run("DEL", c))
    ok(run("DEL", c))
    assert run("CHECK", c).code == 101
    assert only_bookkeeping(tmpdir_run)


@pytest.fixture
def mounts(tmpdir_run):
    """mount(dir, options): a tmpfs at `dir`, unmounted at the end."""
    made = []

    def mount(path, options):
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
        made.append(path)
        return path

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_unwritable_data_dir(tmpdir_run, mounts):
    ro = mounts(tmpdir_run / "ro", "ro,size=1m")
    c = conf(ro, version="1.1.0")
    res = run("ADD", c)
    assert res.code == 5, res
    assert list(ro.iterdir()) == []
    res = run("STATUS", c)
    assert res.code == 50 and "not writable" in res.json["msg"], res
    ok(run("DEL", c))  # nothing held: success, nothing created
    # An existing network directory on a filesystem turned read-only.
    rw = mounts(tmpdir_run / "rw", "size=1m")
    c = conf(rw, version="1.1.0")
    ok(run("ADD", c, cid="a"))
    before = files(rw)
    subprocess.run(["mount", "-o", "remount,ro", str(rw)], check=True)
    assert run("ADD", c, cid="b").code == 5
    assert files(rw) == before
    assert run("STATUS", c).code == 50


def test_full_disk_writes_nothing(tmpdir_run, mounts):
    d = mounts(tmpdir_run / "full", "size=64k")
    c = conf(d, {"ranges": [[{"subnet": "10.97.0.0/24"}], [{"subnet": "fd00:97::/120"}]]},
             version="1.1.0")
    ok(run("ADD", c, cid="a"))
    # Fill the filesystem: the next lease's content cannot be written.
    fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    before = files(d)
    res = run("ADD", c, cid="b")
    assert res.code == 5, res
    assert files(d) == before  # no empty lease, no temp file, hints untouched
    assert run("STATUS", c).code == 50
    os.unlink(d / "filler")
    ok(run("STATUS", c))
    assert addresses(ok(run("ADD", c, cid="b"))) == ["10.97.0.3/24", "fd00:97::3/120"]


# ---------------------------------------------------------------------------------------------
# GC (CNI 1.1; the reference 1.1.1 has none).

def gc_conf(data_dir, valid, key="cni.dev/valid-attachments"):
    c = conf(data_dir, {"subnet": "10.98.0.0/24"}, version="1.1.0")
    if valid is not None:
        c[key] = [{"containerID": cid, "ifname": ifn} for cid, ifn in valid]
    return c


def populate(data_dir):
    c = conf(data_dir, {"subnet": "10.98.0.0/24"})
    for cid in ("a", "b", "c"):
        ok(run("ADD", c, cid=cid))
    ok(run("ADD", c, cid="a", ifname="eth1", ref=True))  # one from the reference
    d = Path(data_dir) / NET
    (d / "10.98.0.100").write_bytes(b"legacy")
    (d / ".10.98.0.101.tmp-999999-1").write_bytes(b"x")  # a killed writer's temp file


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_releases_what_is_not_valid(tmpdir_run, key):
    populate(tmpdir_run)
    ok(run("GC", gc_conf(tmpdir_run, [("a", "eth1"), ("legacy", "eth0"), ("c", "eth0")], key)))
    got = files(tmpdir_run)
    assert sorted(got) == ["10.98.0.100", "10.98.0.4", "10.98.0.5", "last_reserved_ip.0", "lock"]
    assert got["10.98.0.5"] == b"a\r\neth1"


def test_gc_prefers_valid_attachments(tmpdir_run):
    populate(tmpdir_run)
    c = gc_conf(tmpdir_run, [("b", "eth0")])
    c["cni.dev/attachments"] = [{"containerID": "a", "ifname": "eth0"}]
    ok(run("GC", c))
    assert sorted(leases(tmpdir_run)) == ["10.98.0.3"]


def test_gc_empty_list_releases_all(tmpdir_run):
    populate(tmpdir_run)
    ok(run("GC", gc_conf(tmpdir_run, [])))
    assert sorted(files(tmpdir_run)) == ["last_reserved_ip.0", "lock"]


def test_gc_missing_key_releases_nothing(tmpdir_run):
    populate(tmpdir_run)
    before = files(tmpdir_run)
    res = run("GC", gc_conf(tmpdir_run, None))
    assert res.rc == 0 and res.stdout == "", res
    assert "valid-attachments" in res.stderr and "releasing nothing" in res.stderr
    assert files(tmpdir_run) == before


def test_gc_needs_1_1_0(tmpdir_run):
    c = gc_conf(tmpdir_run, [])
    c["cniVersion"] = "1.0.0"
    assert run("GC", c).code == 1


# ---------------------------------------------------------------------------------------------
# STATUS (CNI 1.1).

def test_status(tmpdir_run):
    c = conf(tmpdir_run, {"ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "10.100.0.0/30"}]]},
             version="1.1.0")
    res = run("STATUS", c)
    assert res.rc == 0 and res.stdout == "", res
    ok(run("ADD", c, cid="a"))
    res = run("STATUS", c)
    assert res.code == 50, res
    assert res.json["msg"] == "no IP addresses available in range set: 10.100.0.1-10.100.0.2"
    ok(run("DEL", c, cid="a"))
    assert run("STATUS", c).rc == 0
    c["cniVersion"] = "1.0.0"
    assert run("STATUS", c).code == 1
    big = conf(tmpdir_run / "v6", {"ranges": [[{"subnet": "fd00::/64"}]]}, version="1.1.0")
    assert run("STATUS", big).rc == 0  # counted, not walked


# ---------------------------------------------------------------------------------------------
# Crash safety: kill -9 at named points (host-local-crashtest) and at random instants.

CRASH_POINTS = ["after-lock", "before-lease-write", "after-lease-write", "after-all-leases",
                "after-last-reserved"]


def crash_conf(data_dir):
    return conf(data_dir, {"ranges": [[{"subnet": "10.101.0.0/24"}],
                                      [{"subnet": "fd00:101::/120"}]]}, version="1.1.0")


@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("recover", ["DEL", "GC"])
def test_crash_at_named_point(tmpdir_run, point, recover):
    assert (BIN / CRASHTEST).exists(), "build the host-local target: it builds the crash test too"
    c = crash_conf(tmpdir_run)
    ok(run("ADD", c, cid="keep"))
    before = files(tmpdir_run)
    res = run_plugin(CRASHTEST, "ADD", c, containerid="victim", netns="/x",
                     env={"TETHER_CRASH_AT": point})
    assert res.rc == -signal.SIGKILL, res
    assert_consistent(tmpdir_run)
    if recover == "DEL":
        ok(run("DEL", c, cid="victim"))
    else:
        ok(run("GC", {**c, "cni.dev/valid-attachments": [{"containerID": "keep",
                                                           "ifname": "eth0"}]}))
    assert leases(tmpdir_run) == {n: v for n, v in before.items()
                                  if n != "lock" and not n.startswith("last_reserved_ip.")}
    assert not [n for n in files(tmpdir_run) if ".tmp-" in n]
    # The allocator still works and never hands out the survivor's addresses.
    kept = set(leases(tmpdir_run))
    assert not {a.split("/")[0] for a in addresses(ok(run("ADD", c, cid="next")))} & kept


@pytest.mark.parametrize("verb", ["DEL", "GC"])
def test_crash_while_releasing(tmpdir_run, verb):
    c = crash_conf(tmpdir_run)
    for cid in ("a", "b"):
        ok(run("ADD", c, cid=cid))
    if verb == "GC":
        c = {**c, "cni.dev/valid-attachments": []}
    res = run_plugin(CRASHTEST, verb, c, containerid="a", netns="/x",
                     env={"TETHER_CRASH_AT": "after-release"})
    assert res.rc == -signal.SIGKILL, res
    assert_consistent(tmpdir_run)
    ok(run(verb, c, cid="a"))  # the retry finishes the job
    if verb == "GC":
        assert only_bookkeeping(tmpdir_run)
    else:
        assert sorted(leases(tmpdir_run)) == ["10.101.0.3", "fd00:101::3"]


def test_sigkill_loop(tmpdir_run):
    """kill -9 at random instants of ADD and DEL; after each the directory is consistent, and
    DEL/GC brings it back to exactly the live attachments."""
    c = crash_conf(tmpdir_run)
    rnd = random.Random(1234)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": str(BIN)})
    stdin = json.dumps(c)

    def start(command, cid):
        p = subprocess.Popen([str(BIN / PLUGIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env={**env, "CNI_COMMAND": command, "CNI_CONTAINERID": cid})
        p.stdin.write(stdin.encode())
        p.stdin.close()
        return p

    # The kill instants are uniform over the plugin's lifetime, measured here: the shortest of
    # five un-killed calls per verb (a fixed window would put most kills after the exit as the
    # plugin gets faster).
    runs = {"ADD": [], "DEL": []}
    for j in range(5):
        for verb in ("ADD", "DEL"):
            p = start(verb, f"cal{j}")
            t0 = time.monotonic()  # the kill's clock starts here too
            out, err = p.stdout.read(), p.stderr.read()
            rc = p.wait()
            runs[verb].append(time.monotonic() - t0)
            p.stdout.close()
            p.stderr.close()
            assert rc == 0, (out, err)
    lifetime = {verb: min(v) for verb, v in runs.items()}
    assert leases(tmpdir_run) == {}
    live = set()
    kills = 0
    for i in range(150):
        cid = f"k{i}"
        command = "DEL" if live and rnd.random() < 0.3 else "ADD"
        if command == "DEL":
            cid = rnd.choice(sorted(live))
        p = start(command, cid)
        time.sleep(rnd.uniform(0, lifetime[command]))
        p.send_signal(signal.SIGKILL)
        rc = p.wait()
        p.stdout.close()
        p.stderr.close()
        kills += rc == -signal.SIGKILL
        assert_consistent(tmpdir_run)
        if command == "ADD":
            if rc == 0:
                live.add(cid)
            else:
                ok(run("DEL", c, cid=cid))  # the runtime's DEL after a failed ADD
        elif rc == 0:
            live.discard(cid)
        else:
            ok(run("DEL", c, cid=cid))
            live.discard(cid)
        holders = {v.split(b"\r\n")[0].decode() for v in leases(tmpdir_run).values()}
        assert holders == live, i
    print(f"\nkills landed {kills} of 150; kill windows (s) {lifetime}")
    assert kills > 50, lifetime  # most calls really were killed mid-way
    ok(run("GC", {**c, "cni.dev/valid-attachments": []}))
    assert only_bookkeeping(tmpdir_run)


# ---------------------------------------------------------------------------------------------
# Concurrency.

def test_parallel_add_del(tmpdir_run):
    c = conf(tmpdir_run, {"subnet": "10.102.0.0/24"})
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda i: run("ADD", c, cid=f"p{i}"), range(100)))
    addrs = [addresses(ok(r))[0] for r in results]
    assert len(set(addrs)) == 100
    assert len(leases(tmpdir_run)) == 100
    with ThreadPoolExecutor(max_workers=100) as pool:
        for r in pool.map(lambda i: run("DEL", c, cid=f"p{i}"), range(100)):
            ok(r)
    assert sorted(files(tmpdir_run)) == ["last_reserved_ip.0", "lock"]


def test_parallel_mixed_with_reference(tmpdir_run):
    """Both implementations on one directory at once: the shared flock keeps them apart."""
    c = conf(tmpdir_run, {"ranges": [[{"subnet": "10.103.0.0/25"}], [{"subnet": "fd00:103::/120"}]]})
    with ThreadPoolExecutor(max_workers=60) as pool:
        results = list(pool.map(lambda i: run("ADD", c, cid=f"m{i}", ref=i % 2 == 1), range(60)))
    addrs = [a for r in results for a in addresses(ok(r))]
    assert len(set(addrs)) == 120
    with ThreadPoolExecutor(max_workers=60) as pool:
        for r in pool.map(lambda i: run("DEL", c, cid=f"m{i}", ref=i % 2 == 0), range(60)):
            ok(r)
    assert only_bookkeeping(tmpdir_run)


# ---------------------------------------------------------------------------------------------
# DNS: runtime `dns` capability > network `dns` key > resolvConf, field by field (README).

HOST_DNS = {"nameservers": ["10.0.0.53"], "domain": "corp.example", "search": ["a.example"],
            "options": ["ndots:3"]}


@pytest.mark.parametrize("network, runtime, want", [
    # The cookbook's --dns-search without --dns: the host's nameservers and options stay.
    ({"search": ["net.example"]}, None,
     {"nameservers": ["10.0.0.53"], "search": ["net.example"], "options": ["ndots:3"]}),
    # A network domain replaces the host's search list as well (domain and search are one field).
    ({"domain": "net.example"}, None,
     {"nameservers": ["10.0.0.53"], "domain": "net.example", "options": ["ndots:3"]}),
    ({"nameservers": ["10.1.0.1"]}, None, dict(HOST_DNS, nameservers=["10.1.0.1"])),
    # The runtime's capability (Go field names, as containerd sends them) over both.
    ({"nameservers": ["10.1.0.1"], "options": ["rotate"]}, {"Servers": ["10.2.0.1"]},
     {"nameservers": ["10.2.0.1"], "domain": "corp.example", "search": ["a.example"],
      "options": ["rotate"]}),
    (None, {"servers": [], "searches": ["rt.example"], "options": ["edns0"]},
     {"nameservers": ["10.0.0.53"], "search": ["rt.example"], "options": ["edns0"]}),
    (None, None, HOST_DNS),
])
def test_dns_merges_per_field(tmpdir_run, network, runtime, want):
    rc = tmpdir_run / "resolv.conf"
    rc.write_text("nameserver 10.0.0.53\ndomain corp.example\nsearch a.example\n"
                  "options ndots:3\n")
    top = {}
    if network is not None:
        top["dns"] = network
    if runtime is not None:
        top["runtimeConfig"] = {"dns": runtime}
    c = conf(tmpdir_run / "d", {"subnet": "10.87.0.0/24", "resolvConf": str(rc)}, **top)
    assert ok(run("ADD", c))["dns"] == want
    ok(run("DEL", c))
    assert leases(tmpdir_run / "d") == {}


def test_dns_without_resolvconf(tmpdir_run):
    """No host file: the network's and the runtime's fields alone; neither gives no dns."""
    c = conf(tmpdir_run / "d", {"subnet": "10.87.1.0/24"}, dns={"search": ["net.example"]},
             runtimeConfig={"dns": {"servers": ["10.2.0.1"]}})
    assert ok(run("ADD", c))["dns"] == {"nameservers": ["10.2.0.1"], "search": ["net.example"]}
    bare = conf(tmpdir_run / "d", {"subnet": "10.87.1.0/24"})
    assert ok(run("ADD", bare, cid="ctr2")).get("dns", {}) == {}
    bad = dict(c, runtimeConfig={"dns": {"servers": "10.2.0.1"}})
    r = run("ADD", bad, cid="ctr3")
    assert r.rc != 0 and r.json["code"] == 7 and "runtimeConfig.dns.servers" in r.json["details"]
    ok(run("DEL", c))
    ok(run("DEL", bare, cid="ctr2"))
    assert leases(tmpdir_run / "d") == {}
