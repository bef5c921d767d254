#!/usr/bin/env python3
"""make bench: tether, the reference plugins and podman's netavark side by side, in one run.

Sides (bench/sides.py): tether's chain (bridge + host-local + portmap + dns-sidecar) and the
reference chain (Debian's containernetworking-plugins + podman's dnsname) through libcni, and
netavark 1.4 + aardvark-dns as podman calls it; one published port and DNS on everywhere; and
the kernel's floor, a veth pair created and deleted by one netlink call in one process. Each
side runs in a private host namespace of its own (nothing of the real host is touched; deleting
the namespaces removes everything), driven by one long-lived tether-cnitool serve, so the
driver's start-up is in no figure.

Phases; the sides are interleaved call by call (or, in parallel, side after side) so that all
of them see the same machine load:
  growth     ADD of containers 1..N on one bridge, then DEL from N down to 1, so that the i-th
             point of either verb ran with i containers on the bridge. N is 1,000 for tether
             and the floor; the reference and netavark re-read their whole iptables ruleset on
             every call, which makes their ADD cost ~3 ms more per container present (about
             3 s each at 1,000) and a run to 1,000 take most of an hour, so they go to 200
             unless --long. The 50- and 200-sequential figures are the first 50/200 points of
             this run: 50/200 containers added one at a time, then deleted one at a time.
             On the way: DNS (bench/dnsbench.py) with 20 names; the profile (bench/
             chainprof.py) of one extra container at 1 and at N; after the ADDs, DNS with
             1,000 and 10,000 names.
  par8       ADD then DEL of 50 containers, 8 at a time
  startup    VERSION of every plugin, stripped binary sizes
  rss        peak RSS of every plugin process alone (bench/tools/hwm.cc)
Writes docs/benchmarks.md, .json and .png (bench/report.py).

Usage: bench.py BUILD_DIR [--quick | --long] [--out DIR]   (make bench [QUICK=1 | LONG=1])
"""
import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chainprof  # noqa: E402
import dnsbench  # noqa: E402
import report  # noqa: E402
from sides import (AARDVARK, NETAVARK, REF, Driver, FloorSide, NetavarkSide,  # noqa: E402
                   ReferenceSide, TetherSide, alive)

ROOT = Path(__file__).resolve().parents[1]
RUN = "b" + secrets.token_hex(2)
PORT_BASE = {"tether": 20000, "reference": 25000, "netavark": 30000, "floor": 0}

FULL = {"growth": {"tether": 1000, "reference": 200, "netavark": 200, "floor": 1000},
        "windows": [50, 200], "growth_window": 50, "par": 50, "dns_live": 20,
        "dns_counts": [1000, 10000], "dns_seconds": 4, "dns_rate": 2000, "dns_rounds": 4,
        "startup_runs": 200,
        "rss_containers": 3}
LONG = dict(FULL, growth={"tether": 1000, "reference": 1000, "netavark": 1000, "floor": 1000})
QUICK = {"growth": {"tether": 60, "reference": 30, "netavark": 30, "floor": 60},
         "windows": [10, 30], "growth_window": 10, "par": 16, "dns_live": 20,
         "dns_counts": [200], "dns_seconds": 1, "dns_rate": 500, "dns_rounds": 1,
         "startup_runs": 20,
         "rss_containers": 1}
RSS_KEYS = ("hwm_kb", "rss_at_exit_kb", "anon_at_exit_kb", "maxrss_with_children_kb")


def sh(*cmd, check=True, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {p.stderr.strip()}")
    return p.stdout


def netns_batch(op, names):
    """`ip netns add|del` for many names in one ip process."""
    if names:
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(
            f"netns {op} {n}\n" for n in names), capture_output=True, text=True,
            check=(op == "add"))


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Bench:
    def __init__(self, build, counts, work):
        self.build = build
        self.bin = build / "bin"
        self.counts = counts
        self.work = work
        self.made_netns = []
        self.results = {"run": RUN, "counts": counts, "load": {}, "phases": {}}
        self.sides = [TetherSide(self.bin, 201, RUN, work), ReferenceSide(202, RUN, work),
                      NetavarkSide(203, RUN, work),
                      FloorSide(self.bin / "tether-bench-veth", 204, RUN, work)]
        self.upstreams = []
        self.driver_env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        self.driver_env.update({"TETHER_LOG_LEVEL": "off",
                                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        self.phase_started = time.monotonic()

    # -- environment ---------------------------------------------------------------------------

    def start(self):
        for side in self.sides:
            sh("ip", "netns", "add", side.hostns)
            self.made_netns.append(side.hostns)
            sh("ip", "netns", "exec", side.hostns, "ip", "link", "set", "lo", "up")
            # `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf:
            # every DNS server started in this namespace forwards to the fake upstream there,
            # never to the machine's real resolvers.
            etc = Path("/etc/netns") / side.hostns
            etc.mkdir(parents=True)
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            if not side.floor:
                up = subprocess.Popen(
                    ["ip", "netns", "exec", side.hostns, str(self.bin / "tether-bench-upstream"),
                     "127.0.0.1", "53"], stdout=subprocess.PIPE, text=True)
                self.upstreams.append(up)
                if up.stdout.readline().strip() != "ready":
                    raise RuntimeError("tether-bench-upstream did not start")
                side.upstream_pid = up.pid
            side.driver = Driver(self.bin / "tether-cnitool", side.hostns, self.driver_env)

    def stop(self):
        for side in self.sides:
            if side.driver:
                side.driver.close()
            if not side.floor and alive(side.dns_pid()):
                os.kill(side.dns_pid(), 15)
        for up in self.upstreams:
            up.terminate()
            up.wait()
        netns_batch("del", self.made_netns)
        for side in self.sides:
            shutil.rmtree(Path("/etc/netns") / side.hostns, ignore_errors=True)
            if isinstance(side, ReferenceSide):
                shutil.rmtree(side.dnsname_dir(), ignore_errors=True)

    def containers(self, label, count):
        """Netns names of count[side] (or count) containers per side, created."""
        n = count if isinstance(count, dict) else {s.name: count for s in self.sides}
        names = {s.name: [f"{RUN}{s.name[0]}{label}-{i}" for i in range(n[s.name])]
                 for s in self.sides}
        flat = [x for v in names.values() for x in v]
        netns_batch("add", flat)
        self.made_netns += flat
        return names

    def drop(self, names):
        flat = [x for v in names.values() for x in v]
        netns_batch("del", flat)
        gone = set(flat)
        self.made_netns = [n for n in self.made_netns if n not in gone]

    # -- one side, one call --------------------------------------------------------------------

    def job(self, side, op, netns, i, label):
        return side.job(op, netns, i, PORT_BASE[side.name] + i if PORT_BASE[side.name] else 0,
                        f"{label}c{i}")

    @staticmethod
    def record(res, side, op, ms, err, out):
        if side.floor:
            res.setdefault(op + "_exec", []).append(ms)
            try:
                doc = json.loads(out)
                ms = doc["ms"]
                if "unregistered_ms" in doc:
                    res.setdefault(op + "_unregistered", []).append(doc["unregistered_ms"])
            except (ValueError, KeyError):
                ms = float("nan")
        res.setdefault(op, []).append(ms)
        if err:
            res["failures"] = res.get("failures", 0) + 1
            res.setdefault("errors", [])
            if len(res["errors"]) < 3:
                res["errors"].append(err[:500])

    def interleaved(self, op, names, label, indices, res, hook=None):
        """Runs `op` for container i of every side that has one, i in `indices` order, rotating
        which side goes first. hook(i) runs after each index."""
        for k, i in enumerate(indices):
            order = self.sides[k % len(self.sides):] + self.sides[:k % len(self.sides)]
            for side in order:
                if i < len(names[side.name]):
                    ms, err, out = side.driver.one(
                        self.job(side, op, names[side.name][i], i, label))
                    self.record(res[side.name], side, op, ms, err, out)
            if hook:
                hook(i)

    def begin(self):
        self.phase_started = time.monotonic()
        return loadavg()

    def finish_phase(self, key, res, t0):
        self.results["phases"][key] = res
        self.results["load"][key] = {"before": t0, "after": loadavg(),
                                     "seconds": round(time.monotonic() - self.phase_started, 1)}
        for side in self.sides:
            r = res[side.name]
            print(f"{key:9} {side.name:9}: ADD {median(r.get('add', [])):8.2f} ms  DEL "
                  f"{median(r.get('del', [])):8.2f} ms  failures {r.get('failures', 0)} "
                  f"{r.get('errors', [''])[0][:200]}", flush=True)
        print(f"{key:9} load {self.results['load'][key]}", flush=True)

    # -- phases --------------------------------------------------------------------------------

    def growth(self):
        key, t0 = "growth", self.begin()
        count = self.counts["growth"]
        # Two more per side: the profiler's extra containers (at 1 and at N).
        netns = self.containers("g", {s: n + 2 for s, n in count.items()})
        names = {s: v[:count[s]] for s, v in netns.items()}
        res = {s.name: {} for s in self.sides}
        dns = dnsbench.DnsBench(self.sides, self.work, self.counts["dns_seconds"],
                                self.counts["dns_rate"], self.counts["dns_rounds"],
                                profile_at=str(self.counts["dns_counts"][0]))
        clients = {s.name: names[s.name][0] for s in self.sides}
        dns_rows = []
        prof = chainprof.Profiler(self, netns, count)
        profiles = {"first": {}, "last": {}}

        def after_add(i):
            if i + 1 == self.counts["dns_live"]:
                dns_rows.extend(dns.measure(str(i + 1), self.registered(i + 1), clients))
            if i == 0:
                profiles["first"] = prof.run("first", self.sides)
            done = [s for s in self.sides if count[s.name] == i + 1 and not s.floor]
            if done:
                profiles["last"].update(prof.run("last", done))

        self.interleaved("add", names, "g", range(max(count.values())), res, hook=after_add)
        for total in self.counts["dns_counts"]:
            dns_rows.extend(self.dns_topped_up(dns, total, clients))
        up = dns.upstream_capacity(self.sides[0])
        self.results["conntrack_settle"] = self.settle_conntrack()
        self.interleaved("del", names, "g", range(max(count.values()) - 1, -1, -1), res)
        for side in self.sides:
            r = res[side.name]
            for k in ("del", "del_exec"):
                if k in r:
                    r[k].reverse()  # index order: point i ran with i+1 containers
        self.drop(netns)
        self.finish_phase(key, res, t0)
        self.results["dns"] = {"rows": dns_rows, "upstream": up, "load": loadavg(),
                               "profiles": dns.profiles, "profile_at": dns.profile_at}
        self.results["profile"] = profiles

    def conntrack_counts(self):
        """Conntrack entries in each side's host namespace."""
        out = {}
        for side in self.sides:
            p = subprocess.run(["ip", "netns", "exec", side.hostns, "cat",
                                "/proc/sys/net/netfilter/nf_conntrack_count"],
                               capture_output=True, text=True)
            out[side.name] = int(p.stdout.strip() or 0) if p.returncode == 0 else -1
        return out

    def settle_conntrack(self):
        """Flushes the DNS runs' conntrack entries before the DELs, in each side's namespaces.
        dnsperf's flows leave tens of thousands of UDP "stream" entries in the servers'
        namespaces, which live for nf_conntrack_udp_timeout_stream (120 s), and the kernel's
        conntrack hash is one for all namespaces: every veth delete of every side then has the
        kernel walk all of it (masquerade's NETDEV_DOWN cleanup), which made the first few
        hundred DELs of the run (those within 120 s of the DNS runs) up to 3x slower than the
        rest, the floor's as well. A host's real connections would cost every side the same;
        these are the benchmark's own, and no side's DEL is about them."""
        before = self.conntrack_counts()
        for side in self.sides:
            sh("ip", "netns", "exec", side.hostns, "conntrack", "-F", check=False)
        after = self.conntrack_counts()
        print(f"conntrack: {before} -> {after} (flushed)", flush=True)
        return {"before": before, "after": after}

    def registered(self, n):
        """The names the growth run's first n containers registered, per side."""
        return {s.name: [f"gc{i}" for i in range(min(n, self.counts["growth"][s.name]))]
                for s in self.sides}

    def dns_topped_up(self, dns, total, clients):
        """DNS with `total` names per server: the growth run's, plus synthetic ones."""
        real = self.registered(total)
        undo, names = [], {}
        try:
            for side in dns.sides:
                extra = total - len(real[side.name])
                names[side.name] = list(real[side.name])
                if extra > 0:
                    syn, u = dnsbench.add_synthetic(side, extra, 2 * total)
                    undo.append(u)
                    names[side.name] += syn
                    if not dnsbench.wait_resolves(clients[side.name], side.gateway,
                                                  f"{syn[-1]}.{side.domain}"):
                        raise RuntimeError(f"{side.name}: synthetic names do not resolve")
            return dns.measure(str(total), names, clients)
        finally:
            for u in undo:
                u()

    def parallel(self, n):
        key, t0 = "par8", self.begin()
        names = self.containers("p", n)
        res = {s.name: {} for s in self.sides}
        for op in ("add", "del"):
            for side in self.sides:
                jobs = [self.job(side, op, names[side.name][i], i, "p") for i in range(n)]
                ms, errs, outs = side.driver.run(jobs, parallel=8)
                for m, e, o in zip(ms, errs, outs):
                    self.record(res[side.name], side, op, m, e, o)
        self.drop(names)
        self.finish_phase(key, res, t0)

    def startup(self):
        """VERSION of every binary, timed by the driver (fork to exit, as libcni runs them),
        interleaved; stripped sizes beside."""
        binaries = {
            "tether": {p: self.bin / p for p in ("bridge", "host-local", "portmap",
                                                  "dns-sidecar")},
            "reference": {p: REF / p for p in ("bridge", "host-local", "portmap", "dnsname")},
            "netavark": {"netavark": NETAVARK, "aardvark-dns": AARDVARK},
            "floor": {"busybox true (static)": Path("/bin/busybox")},
        }
        jobs, keys = [], []
        for side, bins in binaries.items():
            for name, path in bins.items():
                argv = {"netavark": [str(path), "--version"],
                        "floor": [str(path), "true"]}.get(side, [str(path)])
                jobs.append({"kind": "exec", "argv": argv, "env": {"CNI_COMMAND": "VERSION"}})
                keys.append((side, name))
        times = {k: [] for k in keys}
        driver = self.sides[0].driver
        for _ in range(self.counts["startup_runs"]):
            ms, errs, _ = driver.run(jobs)
            for k, m, e in zip(keys, ms, errs):
                if e:
                    raise RuntimeError(f"{k} VERSION: {e}")
                times[k].append(m)
        out = {}
        for (side, name), ts in times.items():
            out.setdefault(side, {})[name] = {
                "ms": median(ts), "stripped_bytes": stripped_size(binaries[side][name])}
        self.results["startup"] = out
        print(f"startup: {json.dumps(out)}", flush=True)

    def rss(self):
        """Peak RSS of every plugin process alone, in the real chain: CNI_PATH is a directory
        of tether-bench-hwm links, so bridge's IPAM child is measured as its own process, and
        netavark runs under the wrapper (its iptables children are not counted either)."""
        hwm = self.bin / "tether-bench-hwm"
        log = self.work / "hwm.log"
        maps = self.work / "hwm.maps"
        names = self.containers("r", self.counts["rss_containers"])
        out = {}
        for side in self.sides:
            if side.floor:
                continue
            wrap = self.work / f"hwm-{side.name}"
            wrap.mkdir()
            if not isinstance(side, NetavarkSide):
                (wrap / "hwm.conf").write_text(f"real={side.bindir}\nlog={log}\nmaps={maps}\n")
                for p in side.plugins:
                    (wrap / p).symlink_to(hwm)
            per, by_file = {}, {}
            for op in ("add", "del"):
                log.write_text("")
                maps.write_text("")
                for i, netns in enumerate(names[side.name]):
                    port = PORT_BASE[side.name] + i
                    if isinstance(side, NetavarkSide):
                        label = "netavark-setup" if op == "add" else "netavark-teardown"
                        job = side.job(op, netns, i, port, f"rc{i}",
                                       wrapper=[str(hwm), "--log", str(log), "--label", label,
                                                "--"])
                    else:
                        job = side.job(op, netns, i, port, f"rc{i}", cnipath=wrap)
                    _, err, _ = side.driver.one(job)
                    if err:
                        raise RuntimeError(f"{side.name} {op} under tether-bench-hwm: {err}")
                for line in log.read_text().splitlines():
                    label, _verb, *kb = line.split()
                    e = per.setdefault(f"{label} {op.upper()}", dict.fromkeys(RSS_KEYS, 0))
                    for k, v in zip(RSS_KEYS, kb):
                        e[k] = max(e[k], int(v))
                # What the resident set is made of, per mapped file: the largest seen.
                for line in maps.read_text().splitlines():
                    parts = line.split(" ")
                    label, file, kb = parts[0], " ".join(parts[2:-1]), parts[-1]
                    f = by_file.setdefault(f"{label} {op.upper()}", {})
                    f[file] = max(f.get(file, 0), int(kb))
            out[side.name] = per
            if by_file:
                out[side.name + " by file"] = by_file
        self.drop(names)
        self.results["rss"] = out
        print(f"rss: {json.dumps(out)}", flush=True)


def stripped_size(path):
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / "b"
        shutil.copy(path, copy)
        subprocess.run(["strip", "--strip-all", str(copy)], capture_output=True)
        return copy.stat().st_size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    mode.add_argument("--long", action="store_true",
                      help="the reference and netavark to 1,000 containers too (about an hour)")
    ap.add_argument("--report", metavar="JSON",
                    help="only regenerate benchmarks.md/.png from a run's benchmarks.json (after "
                    "editing bench/findings.md or bench/report.py)")
    ap.add_argument("--out", help="where benchmarks.md/.json/.png go (default: docs/, and "
                    "BUILD_DIR/bench-quick for --quick, so that a smoke run never replaces the "
                    "committed figures)")
    a = ap.parse_args()
    counts = QUICK if a.quick else LONG if a.long else FULL
    build = Path(a.build).resolve()
    out = Path(a.out) if a.out else build / "bench-quick" if a.quick else ROOT / "docs"
    if a.report:
        report.write(json.loads(Path(a.report).read_text()), out)
        print(f"bench: report regenerated in {out}")
        return 0
    for tool in ("tether-cnitool", "tether-bench-veth", "tether-bench-hwm",
                 "tether-bench-upstream", "bridge", "host-local", "portmap", "dns-sidecar",
                 "tether-dns"):
        if not (build / "bin" / tool).exists():
            sys.exit(f"bench: {build}/bin/{tool} is missing: build first (make build)")
    for tool in (NETAVARK, AARDVARK, REF / "dnsname", Path("/usr/bin/dnsperf"),
                 Path("/usr/bin/perf"), Path("/usr/bin/strace"), Path("/bin/busybox")):
        if not tool.exists():
            sys.exit(f"bench: {tool} is missing: run scripts/install-deps.sh")
    work = Path(tempfile.mkdtemp(prefix=f"{RUN}-"))
    b = Bench(build, counts, work)
    started = time.monotonic()
    b.results["machine"] = {"cpus": os.cpu_count(), "kernel": os.uname().release,
                            "load_at_start": loadavg(), "mode": "quick" if a.quick else
                            "long" if a.long else "full"}
    try:
        b.start()
        b.startup()
        b.growth()
        b.parallel(counts["par"])
        b.rss()
    finally:
        b.stop()
        shutil.rmtree(work, ignore_errors=True)
    b.results["machine"]["load_at_end"] = loadavg()
    b.results["machine"]["minutes"] = round((time.monotonic() - started) / 60, 1)
    print(report.write(b.results, out))
    print(f"bench: results in {out}")


if __name__ == "__main__":
    sys.exit(main())
