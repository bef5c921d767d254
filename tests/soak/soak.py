#!/usr/bin/python3
"""The DNS daemon's soak (issue 15): for SOAK_MINUTES, mixed queries at a steady rate (local
names, forwarded names, missing names; dnsperf) and a measuring client (one query at a time,
timed), while SOAK_CYCLES containers go through ADD and DEL of the real chain (bridge +
host-local + dns-sidecar, the built binaries of TETHER_BIN_DIR), each in a fresh namespace, and
the name of each is asked for while it exists. The daemon's RSS (VmRSS) and open fds are
sampled every SOAK_SAMPLE seconds.

Flat means: the largest RSS of the last quarter of the samples is at most RSS_SLACK_KB above
the largest of the first quarter, and the fewest fds of the last quarter at most FD_SLACK above
the fewest of the first (a leak raises the floor; a forward or a TCP query in flight at the
instant of a sample is no leak). It also fails when the daemon restarts, a cycle fails, the
measuring client's p99 exceeds 100 ms, or more than 0.1% of the queries go unanswered.

`make soak`: 30 minutes and 1,000 cycles; `make test` runs 2 minutes and 100 cycles (suite
"soak"). Prints a summary and, last, "soak: 1 passed" or "soak: 1 failed".

Everything it creates carries the run's prefix and is removed at the end, pass or fail.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from conftest import RUN, Netns, leftovers, run_chain  # noqa: E402
from test_dns_sidecar import (DOMAIN, NFT_TABLE, PORT, Env, Upstreams, alive,  # noqa: E402
                              daemon_pid, dig, usage)

LOAD = HERE.parent / "integration" / "dnsload.py"
MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
CYCLES = int(os.environ.get("SOAK_CYCLES", "1000"))
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE", "5" if MINUTES >= 10 else "2"))
RATE = int(os.environ.get("SOAK_QPS", "300"))  # dnsperf's steady rate
RSS_SLACK_KB = 2048
FD_SLACK = 2
P99_MS = 100
MAX_LOST = 0.001


class Namespaces:
    """The netns factory the fixtures expect, and the list to remove at the end."""

    def __init__(self):
        self.made = []

    def __call__(self, suffix="c"):
        ns = Netns(f"{RUN}-{len(self.made)}{suffix}")
        self.made.append(ns)
        return ns

    def drop(self, ns):
        ns.delete()
        self.made.remove(ns)

    def cleanup(self):
        for ns in self.made:
            ns.delete()


def dnsperf(ns, server, datafile, seconds):
    return subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "dnsperf", "-s", server, "-p", str(PORT), "-d",
         str(datafile), "-l", str(int(seconds)), "-Q", str(RATE), "-c", "4", "-t", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def dnsperf_counts(out):
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    done = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    codes = dict((k, int(v)) for k, v in re.findall(r"(NOERROR|NXDOMAIN|SERVFAIL|REFUSED) (\d+)",
                                                       out))
    return sent, done, codes


def measuring_client(ns, server, names, seconds, lat, errors, stop):
    """The paced client in chunks of 10 s (50 queries/s, every 10th over TCP)."""
    spec = ",".join(f"{n}={ip}" for n, ip in names.items())
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end - 1:
        count = int(min(10, end - time.monotonic()) * 50)
        p = subprocess.run(["ip", "netns", "exec", ns.name, "/usr/bin/python3", str(LOAD),
                            "good", "--server", server, "--port", str(PORT), "--names", spec,
                            "--count", str(count), "--interval", "20", "--tcp-every", "10",
                            "--raw"], capture_output=True, text=True)
        if p.returncode != 0:
            errors.append(p.stderr[-500:])
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        lat.extend(r["latencies"])
        if r["wrong"]:
            errors.extend(r["errors"])


def main():
    seconds = MINUTES * 60
    tmp = Path(tempfile.mkdtemp(prefix=f"{RUN}-"))
    spaces = Namespaces()
    env = Env(spaces, tmp)
    upstream = None
    ok = False
    failures = []
    try:
        upstream = Upstreams(spaces)
        net = env.network("s", upstreams=[upstream.addr(2)])
        asker, resident = spaces("q"), spaces("r")
        env.add(net, asker, "asker")
        env.add(net, resident, "web1", cap={"aliases": ["db"]})
        gw, ip1 = net.gateway, env.ip(resident)
        pid = daemon_pid(env.state)
        assert dig(asker, gw, "who.example") == ["192.0.2.2"], "the upstream does not answer"
        data = tmp / "queries.txt"
        data.write_text("".join(f"{n} A\n" for n in (
            "web1", f"web1.{DOMAIN}", "db", "asker", "who.example", f"nosuch.{DOMAIN}",
            "web1", "who.example", f"web1.{net.name}", "db")))
        samples = []
        lat, errors = [], []
        stop = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not stop.is_set():
                if not alive(pid):
                    failures.append("the daemon died")
                    return
                samples.append((round(time.monotonic() - t0, 1), *usage(pid)))
                stop.wait(SAMPLE_S)

        perf = dnsperf(asker, gw, data, seconds)
        sampler = threading.Thread(target=sample, daemon=True)
        client = threading.Thread(target=measuring_client, daemon=True, args=(
            asker, gw, {"web1": ip1, "who.example": "192.0.2.2"}, seconds, lat, errors, stop))
        sampler.start()
        client.start()
        t0 = time.monotonic()
        cycle_times = []
        conf = net.conflist()
        for i in range(CYCLES):
            # Evenly over the run, leaving its last tenth to queries alone.
            time.sleep(max(t0 + i * seconds * 0.9 / CYCLES - time.monotonic(), 0))
            ns = spaces("c")
            cid = f"{RUN}-cyc{i}"
            args = f"IgnoreUnknown=1;K8S_POD_NAME=cyc{i}"
            c0 = time.monotonic()
            result, res = run_chain(conf, "ADD", containerid=cid, netns=ns.path, args=args)
            if result is None:
                failures.append(f"cycle {i}: ADD failed: {res[-1]}")
            elif dig(asker, gw, f"cyc{i}") != [env.ip(ns)]:
                failures.append(f"cycle {i}: cyc{i} does not resolve")
            _, res = run_chain(conf, "DEL", containerid=cid, netns=ns.path, args=args,
                               prev_result=result)
            if any(r.rc != 0 for r in res):
                failures.append(f"cycle {i}: DEL failed: {res}")
            cycle_times.append(time.monotonic() - c0)
            spaces.drop(ns)
            if len(failures) > 10:
                break
        out, _ = perf.communicate(timeout=seconds + 60)
        stop.set()
        sampler.join()
        client.join(timeout=30)
        if perf.returncode != 0:
            failures.append(f"dnsperf failed: {out[-1000:]}")
        sent, done, codes = dnsperf_counts(out)
        if daemon_pid(env.state) != pid:
            failures.append(f"the daemon changed: {pid} -> {daemon_pid(env.state)}")
        failures.extend(f"measuring client: {e}" for e in errors[:5])

        q = max(len(samples) // 4, 1)
        first, last = samples[:q], samples[-q:]
        rss_first, rss_last = max(s[1] for s in first), max(s[1] for s in last)
        fd_first, fd_last = min(s[2] for s in first), min(s[2] for s in last)
        lat.sort()
        p99 = lat[max(0, -(-99 * len(lat) // 100) - 1)] if lat else float("inf")
        lost = sum(1 for x in lat if x >= 1000)
        print(f"soak: {MINUTES:g} min, {len(cycle_times)} of {CYCLES} ADD/DEL cycles "
              f"(median {sorted(cycle_times)[len(cycle_times) // 2] * 1000:.0f} ms each), "
              f"{len(samples)} samples every {SAMPLE_S:g} s")
        print(f"soak: RSS min {min(s[1] for s in samples)} max {max(s[1] for s in samples)} KiB "
              f"(max first quarter {rss_first}, last quarter {rss_last}); fds min "
              f"{min(s[2] for s in samples)} max {max(s[2] for s in samples)} (min first "
              f"quarter {fd_first}, last quarter {fd_last})")
        print(f"soak: dnsperf {done} of {sent} answered at {RATE}/s ({codes}); measuring "
              f"client {len(lat) - lost} of {len(lat)} answered, p50 "
              f"{lat[len(lat) // 2] if lat else 0:.1f} ms, p99 {p99:.1f} ms, max "
              f"{lat[-1] if lat else 0:.1f} ms")
        print("soak: samples (s, RSS KiB, fds): " + " ".join(
            f"{t:g}/{r}/{f}" for t, r, f in samples[::max(len(samples) // 20, 1)]))
        if rss_last > rss_first + RSS_SLACK_KB:
            failures.append(f"RSS grew: {rss_first} -> {rss_last} KiB (slack {RSS_SLACK_KB})")
        if fd_last > fd_first + FD_SLACK:
            failures.append(f"fds grew: {fd_first} -> {fd_last} (slack {FD_SLACK})")
        if p99 > P99_MS:
            failures.append(f"p99 {p99:.1f} ms > {P99_MS} ms")
        if sent == 0 or sent - done > MAX_LOST * sent:
            failures.append(f"dnsperf: {sent - done} of {sent} unanswered")
        if len(cycle_times) < CYCLES:
            failures.append(f"only {len(cycle_times)} of {CYCLES} cycles ran")
        ok = not failures
    except Exception:
        traceback.print_exc()
    finally:
        env.cleanup()
        if upstream:
            upstream.close()
        spaces.cleanup()
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)
        subprocess.run(["rm", "-rf", str(tmp)])
        left = leftovers()
        if left:
            failures.append(f"left behind: {left}")
            ok = False
    for f in failures:
        print(f"soak: FAIL {f}")
    print(f"soak: 1 {'passed' if ok else 'failed'}")
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
