"""DNS per CPU-second: tether's daemon, dnsname's dnsmasq and aardvark-dns, side by side.

Each server is pinned to one core and dnsperf (and the fake upstream) to the other, so the
server's CPU time per query -- utime+stime from /proc/<pid>/stat before and after -- does not
depend on how much CPU the client takes. Queries/s is reported too, but with both cores in use
it measures whichever side is slower, often dnsperf. p99 latency comes from runs at a fixed,
modest rate (every server keeps up with it), so it measures service time rather than the queue
dnsperf builds at full speed; they are one-second slices that take the servers in turn, so that
a stall of the machine lands in one server's slice rather than in all of one server's samples.

Registered names: the real containers of the growth run (their own ADDs registered them), and
for the largest count synthetic ones added through each server's own reload path (tether:
record files + SIGHUP; dnsname: its addn-hosts file + SIGHUP; aardvark: its config file +
SIGHUP) and removed again before the containers are deleted.
"""
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from sides import NetavarkSide, ReferenceSide, TetherSide

CLIENT_CPU = "0"
SERVER_CPU = "1"
FORWARD_NAMES = 10000


def cpu_ticks(pid):
    """utime+stime of every thread of `pid`, in clock ticks. (Their split is not used: the
    kernel derives it from which mode each tick found the process in, and a server that
    sleeps between batches of queries is found in one mode far more often than it spends
    there; perf's samples give the kernel's share instead.)"""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


TICK = os.sysconf("SC_CLK_TCK")


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], capture_output=True, check=True)


def dnsperf(netns, server, qfile, seconds, extra=(), nice=0):
    cmd = ["ip", "netns", "exec", netns, "nice", "-n", str(nice), "taskset", "-c", CLIENT_CPU,
           "dnsperf", "-s", server, "-d", qfile, "-l", str(seconds), *extra]
    return subprocess.run(cmd, capture_output=True, text=True).stdout


def renice(pid, value):
    """Sets the nice value of every thread of `pid`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.setpriority(os.PRIO_PROCESS, int(tid), value)


def short_symbol(sym):
    """A C++ symbol without its template arguments and parameter list."""
    while re.search(r"<[^<>]*>", sym):
        sym = re.sub(r"<[^<>]*>", "", sym)
    return re.sub(r"\(.*\)", "", sym).strip() or sym


def top_symbols(pid, seconds, run_load):
    """cpu-clock samples of `pid` while run_load() runs: the 12 hottest symbols, % of samples."""
    fd, data = tempfile.mkstemp(prefix="dnsperf-", suffix=".data")
    os.close(fd)
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-p", str(pid), "-o",
                            data, "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    run_load()
    rec.wait()
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"],
                         capture_output=True, text=True).stdout
    os.unlink(data)
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        sym = short_symbol(" ".join(parts[1:-1]))
        dso = parts[-1].strip("()").rsplit("/", 1)[-1]
        if sym == "[unknown]":
            sym = "?"
        key = f"{sym} ({dso})"
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values()) or 1
    kernel = sum(v for k, v in counts.items() if "kernel.kallsyms" in k)
    top = [(k, round(100 * v / total, 1)) for k, v in
           sorted(counts.items(), key=lambda kv: -kv[1])[:12]]
    return top + [("(all kernel symbols)", round(100 * kernel / total, 1))]


def parse_summary(out):
    def num(pattern, cast=float):
        m = re.search(pattern, out)
        return cast(m.group(1)) if m else None
    codes = dict((k, int(v)) for k, v in re.findall(r"(\b[A-Z]+) (\d+) \(", out.split(
        "Response codes:", 1)[1].splitlines()[0])) if "Response codes:" in out else {}
    return {"qps": num(r"Queries per second:\s+([\d.]+)") or 0.0,
            "completed": num(r"Queries completed:\s+(\d+)", int) or 0,
            "lost": num(r"Queries lost:\s+(\d+)", int), "codes": codes}


def percentile(xs, q):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class DnsBench:
    def __init__(self, sides, work, seconds, rate, rounds, profile_at=None):
        self.sides = [s for s in sides if not s.floor]
        self.profile_at = profile_at
        self.profiles = {}
        self.work = work
        self.seconds = seconds
        self.rate = rate
        self.rounds = rounds  # one-second latency slices per server and kind
        self.qdir = Path(tempfile.mkdtemp(prefix="dnsq-", dir=work))
        fwd = self.qdir / "forward"
        fwd.write_text("".join(f"q{k}.fwd.bench.example. A\n" for k in range(FORWARD_NAMES)))
        self.forward_file = str(fwd)

    def measure(self, label, names, client_netns):
        """One row per server and kind (local, forward) with `names[side.name]` registered.
        client_netns[side.name] is a container of that side, inside the network's scope."""
        rows = []
        qfiles = {}
        for side in self.sides:
            pid = side.dns_pid()
            if not pid:
                raise RuntimeError(f"{side.name}: no DNS server running")
            pin(pid, SERVER_CPU)
            pin(side.upstream_pid, CLIENT_CPU)
            local = self.qdir / f"{side.name}-{label}"
            local.write_text("".join(f"{n}.{side.domain}. A\n" for n in names[side.name]))
            for kind, qfile in (("local", str(local)), ("forward", self.forward_file)):
                qfiles[(side.name, kind)] = qfile
                c0, u0, t0 = cpu_ticks(pid), cpu_ticks(side.upstream_pid), time.monotonic()
                out = dnsperf(client_netns[side.name], side.gateway, qfile, self.seconds,
                              ["-c", "4", "-q", "64", "-t", "2"])
                c1, u1, t1 = cpu_ticks(pid), cpu_ticks(side.upstream_pid), time.monotonic()
                s = parse_summary(out)
                done = max(s["completed"], 1)
                rows.append({
                    "server": side.name, "names": len(names[side.name]), "kind": kind,
                    "qps": s["qps"], "completed": s["completed"], "lost": s["lost"],
                    "codes": s["codes"],
                    "cpu_us_per_query": (c1 - c0) / TICK * 1e6 / done,
                    "upstream_cpu_share": (u1 - u0) / TICK / (t1 - t0),
                    "server_cpu_share": (c1 - c0) / TICK / (t1 - t0),
                    "upstream_cpu_us_per_query": (u1 - u0) / TICK * 1e6 / done})
                if label == self.profile_at:
                    self.profiles[f"{side.name} {kind}"] = top_symbols(
                        pid, 2, lambda: dnsperf(client_netns[side.name], side.gateway, qfile, 2,
                                                ["-c", "4", "-q", "64", "-t", "2"]))
        # Latency at a fixed rate, in self.rounds one-second slices that take the servers in
        # turn (the order rotated each round), pooled per server and kind: a stall of the
        # machine (another engineer's build, the kernel's own workers) lands in one server's
        # slice, not in the whole of one server's run. Server and dnsperf at nice -5.
        lats = {key: [] for key in qfiles}
        for r in range(self.rounds):
            order = self.sides[r % len(self.sides):] + self.sides[:r % len(self.sides)]
            for side in order:
                pid = side.dns_pid()
                renice(pid, -5)
                for kind in ("local", "forward"):
                    out = dnsperf(client_netns[side.name], side.gateway,
                                  qfiles[(side.name, kind)], 1,
                                  ["-Q", str(self.rate), "-v", "-t", "2"], nice=-5)
                    lats[(side.name, kind)] += [
                        float(x) * 1000
                        for x in re.findall(r"^> \S+ \S+ \S+ ([\d.]+)$", out, re.M)]
                renice(pid, 0)
        for row in rows:
            got = lats[(row["server"], row["kind"])]
            row.update({"p50_ms": percentile(got, 0.5), "p99_ms": percentile(got, 0.99),
                        "latency_samples": len(got)})
            print(f"  dns {label:>6} {row['server']:9} {row['kind']:7}: {row['qps']:8.0f} q/s, "
                  f"{row['cpu_us_per_query']:6.2f} µs CPU/query (server at "
                  f"{100 * row['server_cpu_share']:3.0f}% of its core), p99 "
                  f"{row['p99_ms']:.3f} ms, codes {row['codes']}", flush=True)
        return rows

    def upstream_capacity(self, side):
        """The fake upstream alone (the one in `side`'s host namespace, on the server core)
        under the same dnsperf: its rate and CPU per query."""
        pin(side.upstream_pid, SERVER_CPU)
        u0 = cpu_ticks(side.upstream_pid)
        out = dnsperf(side.hostns, "127.0.0.1", self.forward_file, self.seconds,
                      ["-c", "4", "-q", "64"])
        u1 = cpu_ticks(side.upstream_pid)
        pin(side.upstream_pid, CLIENT_CPU)
        s = parse_summary(out)
        return {"qps": s["qps"], "completed": s["completed"],
                "cpu_us_per_query": (u1 - u0) / TICK * 1e6 / max(s["completed"], 1)}


# Synthetic registrations, each through the server's own reload path. Each returns an undo.

def add_synthetic(side, count, first_index):
    """Registers `count` extra names (syn<k>) with `side`'s server; returns (names, undo)."""
    names = [f"syn{k}" for k in range(count)]
    ips = [side.ip(first_index + k) for k in range(count)]
    if isinstance(side, TetherSide):
        undo = _tether_records(side, names, ips)
    elif isinstance(side, ReferenceSide):
        undo = _dnsname_hosts(side, names, ips)
    elif isinstance(side, NetavarkSide):
        undo = _aardvark_config(side, names, ips)
    else:
        raise ValueError(side.name)
    return names, undo


def _hup(side):
    os.kill(side.dns_pid(), 1)


def _tether_records(side, names, ips):
    # common/attachment_store.h: records/<network>/<containerID>:<ifname>.json
    records = side.work / "dns" / "records" / side.net
    template_path = sorted(records.glob("*.json"))[0]
    template = json.loads(template_path.read_text())
    made = []
    for n, ip in zip(names, ips):
        rec = retarget(template, n, ip)
        path = records / f"{rec['containerID']}:eth0.json"
        path.write_text(json.dumps(rec))
        made.append(path)
    _hup(side)

    def undo():
        for p in made:
            p.unlink()
        _hup(side)
    return undo


def retarget(template, name, ip):
    """A copy of a tether registration record (plugins/dns-sidecar/registry.cc) for container
    `name` at `ip`, on the template's network."""
    rec = dict(template)
    prefix = template["addresses"][0].split("/")[1]
    rec.update({"containerID": f"syn-{name}", "name": name, "hostname": "", "aliases": [],
                "containerAliases": [], "addresses": [f"{ip}/{prefix}"]})
    return rec


def _dnsname_hosts(side, names, ips):
    hosts = side.dnsname_dir() / "addnhosts"
    before = hosts.read_text()
    hosts.write_text(before + "".join(f"{ip}\t{n}\n" for n, ip in zip(names, ips)))
    _hup(side)

    def undo():
        text = hosts.read_text()
        extra = "".join(f"{ip}\t{n}\n" for n, ip in zip(names, ips))
        hosts.write_text(text.replace(extra, ""))
        _hup(side)
    return undo


def _aardvark_config(side, names, ips):
    conf = side.config / "aardvark-dns" / side.net
    before = conf.read_text()
    lines = "".join(f"{'%064x' % (k + 1)} {ip}  {n}\n" for k, (n, ip) in enumerate(zip(names, ips)))
    conf.write_text(before + ("" if before.endswith("\n") else "\n") + lines)
    _hup(side)

    def undo():
        conf.write_text(conf.read_text().replace(lines, ""))
        _hup(side)
    return undo


def wait_resolves(netns, server, name, timeout=30):
    """Waits until `server` answers `name` (a reload is asynchronous for dnsmasq and aardvark)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", netns, "dig", "+short", "+time=1",
                              "+tries=1", f"@{server}", name], capture_output=True,
                             text=True).stdout.strip()
        if re.fullmatch(r"[\d.]+", out.splitlines()[0] if out else ""):
            return True
        time.sleep(0.2)
    return False
