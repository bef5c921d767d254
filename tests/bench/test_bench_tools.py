"""Smoke tests of make bench's parts, a few seconds in all (make bench itself takes minutes and
stays out of make test): the tools in bench/tools as real processes, the driver's serve mode,
and the analysis and report code on known input, so that a change that breaks the benchmark
shows before the next benchmark run.

Root: the veth floor tool works in network namespaces this test creates (prefix RUN) and
removes.
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TETHER_BIN_DIR", ROOT / "build" / "bin")).resolve()
sys.path.insert(0, str(ROOT / "bench"))

import chainprof  # noqa: E402
import dnsbench  # noqa: E402
import report  # noqa: E402

RUN = "t" + secrets.token_hex(2)


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


# -- tools ------------------------------------------------------------------------------------

def test_hwm_measures_the_process_alone(tmp_path):
    """A shell that runs a 60 MB child: the shell's own peak is small, wait4's includes the
    child's."""
    log = tmp_path / "hwm.log"
    p = run(BIN / "tether-bench-hwm", "--log", log, "--label", "sh", "--", "/bin/sh", "-c",
            "/usr/bin/python3 -c 'x = bytearray(60 << 20); x[::4096] = b\"y\" * len(x[::4096])'"
            "; exit 3")
    assert p.returncode == 3  # the program's status is passed on
    label, verb, hwm, rss, anon, maxrss = log.read_text().split()
    assert (label, verb) == ("sh", "-")
    assert 0 < int(hwm) < 20000 and 0 < int(anon) <= int(rss)
    assert int(maxrss) > 60000


def test_hwm_link_mode_runs_the_real_program(tmp_path):
    wrap = tmp_path / "wrap"
    wrap.mkdir()
    (wrap / "hwm.conf").write_text(f"real=/bin\nlog={tmp_path / 'log'}\n")
    (wrap / "echo").symlink_to(BIN / "tether-bench-hwm")
    p = run(wrap / "echo", "hello", env={"CNI_COMMAND": "ADD"})
    assert p.returncode == 0 and p.stdout == "hello\n"
    assert (tmp_path / "log").read_text().split()[:2] == ["echo", "ADD"]


def test_upstream_answers_with_ttl_zero():
    port = 20000 + secrets.randbelow(20000)
    up = subprocess.Popen([BIN / "tether-bench-upstream", "127.0.0.1", str(port)],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout.readline().strip() == "ready"
        out = run("dig", "+noall", "+answer", "+time=2", "-p", port, "@127.0.0.1",
                  "x.fwd.bench.example", "A").stdout.split()
        assert out[-1] == "192.0.2.1" and out[1] == "0"  # the address, TTL 0
        aaaa = run("dig", "+time=2", "-p", port, "@127.0.0.1", "x.example", "AAAA").stdout
        assert "status: NOERROR" in aaaa and "ANSWER: 0" in aaaa
    finally:
        up.terminate()
        up.wait()


@pytest.fixture
def netns():
    name = f"{RUN}-fl"
    assert run("ip", "netns", "add", name).returncode == 0
    yield name
    run("ip", "netns", "del", name)
    assert name not in run("ip", "netns", "list").stdout


def test_veth_floor_adds_and_deletes_one_pair(netns):
    tool, br, veth = BIN / "tether-bench-veth", f"{RUN}br", f"{RUN}v0"
    try:
        p = run(tool, "add", br, veth, f"/run/netns/{netns}")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["ms"] > 0
        host = json.loads(run("ip", "-j", "-d", "link", "show", veth).stdout)[0]
        assert host["master"] == br and "UP" in host["flags"]
        assert run("ip", "-n", netns, "link", "show", "eth0").returncode == 0
        p = run(tool, "del", veth)
        assert p.returncode == 0 and json.loads(p.stdout)["ms"] > 0
        assert run("ip", "link", "show", veth).returncode != 0
        assert run("ip", "-n", netns, "link", "show", "eth0").returncode != 0
    finally:
        run("ip", "link", "del", veth)
        run(tool, "del-bridge", br)
    assert run("ip", "link", "show", br).returncode != 0


def test_cnitool_serve_times_execs_in_order(tmp_path):
    drv = subprocess.Popen([BIN / "tether-cnitool", "serve"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        jobs = [{"kind": "exec", "argv": ["/bin/sh", "-c", "sleep 0.05; echo $X"],
                 "env": {"X": "one"}, "lock": str(tmp_path / "lock")},
                {"kind": "exec", "argv": ["/bin/cat"], "stdin": "two"},
                {"kind": "exec", "argv": ["/bin/false"]}]
        drv.stdin.write(json.dumps({"parallel": 2, "jobs": jobs}) + "\n")
        drv.stdin.flush()
        r = json.loads(drv.stdout.readline())
        assert r["out"][:2] == ["one\n", "two"]
        assert r["errors"][:2] == ["", ""] and "exit status 1" in r["errors"][2]
        assert r["ms"][0] >= 50
    finally:
        drv.stdin.close()
        assert drv.wait(timeout=10) == 0


# -- analysis and report ----------------------------------------------------------------------

STRACE = """\
100 1.000000 execve("/opt/bin/bridge", ["bridge"], 0x1 /* 3 vars */) = 0 <0.000300>
100 1.001000 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_NETFILTER) = 3<NETLINK:[1]> <0.000010>
100 1.002000 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) = 4<NETLINK:[2]> <0.000010>
100 1.003000 recvmsg(3<NETLINK:[1]>, 0x7ff, 0) = 1000 <0.000020>
100 1.004000 recvmsg(4<NETLINK:[ROUTE:7]>, 0x7ff, 0) = 300 <0.000020>
100 1.005000 openat(AT_FDCWD</>, "/var/lib/x", O_RDONLY) = 5</var/lib/x> <0.000010>
100 1.006000 close(3<NETLINK:[1]>) = 0 <0.009000>
100 1.016000 exit_group(0) = ?
100 1.017000 +++ exited with 0 +++
"""


def test_strace_analysis_attributes_netlink_by_socket_protocol():
    (p,) = chainprof.analyze_strace(STRACE)["processes"]
    assert p["exe"] == "bridge" and p["opens"] == 1
    assert p["netlink_bytes_in"] == {"netlink nftables": 1000, "netlink route": 300}
    assert p["counts"]["close (netlink nftables)"] == 1
    assert abs(p["wall_ms"] - 17.0) < 0.01


PERF = """\
cnitool 50/50 [000] 10.000000: sched:sched_process_exec: filename=/b/tether-cnitool pid=50 old_pid=50
cnitool 50/50 [000] 10.001000: sched:sched_process_fork: comm=cnitool pid=50 child_comm=cnitool child_pid=51
portmap 51/51 [001] 10.002000: sched:sched_process_exec: filename=/b/portmap pid=51 old_pid=51
portmap 51/51 [001] 10.003000: syscalls:sys_enter_read: fd: 0x00000000, buf: 0x1, count: 0x10
portmap 51/51 [001] 10.004000:       sched:sched_switch: prev_comm=portmap prev_pid=51 prev_prio=120 prev_state=D ==> next_comm=swapper/1 next_pid=0 next_prio=120
\tffffffff82265908 __schedule
\tffffffff82266273 schedule
\tffffffff8226d5d0 wait_for_completion
\tffffffff81ebd12b __flush_work
\tffffffff81ebd12c nft_rcv_nl_event
\tffffffff81ebd12d netlink_release

swapper 0/0 [001] 10.013000:       sched:sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=portmap next_pid=51 next_prio=120
portmap 51/51 [001] 10.014000: sched:sched_process_exit: comm=portmap pid=51 prio=120 group_dead=true
"""


def test_perf_analysis_names_what_a_plugin_waited_for():
    procs = {p["exe"]: p for p in chainprof.analyze_perf(PERF, "/b/tether-cnitool")["processes"]}
    pm = procs["portmap"]
    assert pm["parent"] == "tether-cnitool"
    assert abs(pm["wall_ms"] - 12.0) < 1e-6 and abs(pm["startup_ms"] - 1.0) < 1e-6
    ((cat, ms),) = pm["offcpu_ms"].items()
    assert cat.startswith("nft socket close") and abs(ms - 9.0) < 1e-6
    assert "nft_rcv_nl_event" in pm["offcpu_stacks"][cat]
    assert chainprof.categorize("R+", ["__schedule"]).startswith("runnable")


DNSPERF = """\
  Queries sent:         1000
  Queries completed:    990 (99.00%)
  Queries lost:         10 (1.00%)

  Response codes:       NOERROR 980 (98.99%), NXDOMAIN 10 (1.01%)
  Queries per second:   12345.678
"""


def test_dnsperf_summary():
    s = dnsbench.parse_summary(DNSPERF)
    assert s == {"qps": 12345.678, "completed": 990, "lost": 10,
                 "codes": {"NOERROR": 980, "NXDOMAIN": 10}}


def synthetic_results():
    def side(add, dele):
        return {"add": [add] * 4 + [2 * add] * 4, "del": [dele] * 8}
    growth = {"tether": side(10.0, 40.0), "reference": side(80.0, 200.0),
              "netavark": side(60.0, 120.0), "floor": side(1.0, 20.0)}
    for v in growth.values():
        v["add_exec"], v["del_exec"] = v["add"], v["del"]
    par = {k: dict(v) for k, v in growth.items()}
    rss = {"hwm_kb": 3000, "rss_at_exit_kb": 3000, "anon_at_exit_kb": 300,
           "maxrss_with_children_kb": 3100}
    pairs = {"tether": ["bridge", "host-local", "portmap", "dns-sidecar"],
             "reference": ["bridge", "host-local", "portmap", "dnsname"]}
    row = {"qps": 1000.0, "completed": 1000, "lost": 0, "codes": {"NOERROR": 1000},
           "server_cpu_share": 0.5, "upstream_cpu_us_per_query": 1.0, "p50_ms": 0.1,
           "p99_ms": 0.2, "latency_samples": 100}
    return {
        "run": "t0000", "counts": {"windows": [4], "growth_window": 4, "par": 8,
                                   "growth": {"tether": 8, "reference": 8, "netavark": 8,
                                              "floor": 8}, "dns_rate": 100, "dns_live": 20,
                                   "startup_runs": 3},
        "machine": {"cpus": 2, "kernel": "k", "load_at_start": ["1"], "load_at_end": ["2"],
                    "mode": "quick", "minutes": 1.0},
        "load": {"growth": {"before": ["1"], "after": ["2"], "seconds": 9.0}},
        "phases": {"growth": growth, "par8": par},
        "rss": {s: {f"{p} {v}": dict(rss) for p in ps for v in ("ADD", "DEL")}
                for s, ps in pairs.items()} | {"netavark": {}},
        "startup": {s: {p: {"ms": 1.0 if s == "tether" else 2.0, "stripped_bytes": 2048}
                        for p in ps} for s, ps in pairs.items()} | {"netavark": {},
                                                                   "floor": {}},
        "dns": {"rows": [dict(row, server=s, names=20, kind="local",
                              cpu_us_per_query=c) for s, c in
                         (("tether", 5.0), ("reference", 10.0), ("netavark", 20.0))],
                "upstream": {"qps": 9000.0, "cpu_us_per_query": 2.0}, "profiles": {}},
        "profile": {},
    }


def test_report_tables_carry_the_ratios(tmp_path):
    text_path = tmp_path / "benchmarks.md"
    report.write(synthetic_results(), tmp_path)
    text = text_path.read_text()
    assert "| ADD, 4 sequential | 80.0 / 80.0 | 60.0 / 60.0 | **10.0 / 10.0** |" in text
    assert "| 8.0× faster | 6.0× faster | 10.0× |" in text  # vs reference, netavark, floor
    assert "| tether | 1 → 8 | 10.0 | 20.0 | **2.00×** |" in text
    assert "| 20 | local | 0.50 | 0.25 |" in text  # CPU per query vs dnsmasq, aardvark
    assert (tmp_path / "benchmarks.png").stat().st_size > 10000
    assert json.loads((tmp_path / "benchmarks.json").read_text())["run"] == "t0000"
