#!/usr/bin/env python3
"""Side-by-side benchmarks: tether against the reference plugins, in one run, on this machine.

The same chain (bridge + host-local + portmap + a DNS plugin) runs through libcni (our
tether-cnitool driver, which times AddNetworkList/DelNetworkList itself, so the driver's start-up
is not counted) once with tether's binaries and once with Debian's reference plugins
(/usr/lib/cni, with podman's dnsname for DNS). Reports ADD/DEL medians and p90s for 1, 50 and 200
sequential containers and 50 with 8 in parallel, ADD growth from the first 20 to the last 20 of
200, peak RSS of each plugin process, and DNS throughput with dnsperf against tether's daemon and
against dnsname's dnsmasq. Writes docs/benchmarks.md, docs/benchmarks.json and
docs/benchmarks.png.

Usage: bench.py BUILD_DIR [--quick] [--out DIR]
Everything it creates carries a per-run prefix and is removed at the end, also on failure.
"""
import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = Path("/usr/lib/cni")
RUN = "b" + secrets.token_hex(2)


def sh(*cmd, check=True):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {p.stderr.strip()}")
    return p.stdout


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


class Side:
    """One implementation under test: its plugin dir, its conflist and its private state."""

    def __init__(self, name, bindir, dns_plugin, octet, work):
        self.name = name
        self.bindir = Path(bindir)
        self.work = work / name
        self.netconf = self.work / "net.d"
        self.netconf.mkdir(parents=True)
        self.bridge = f"{RUN}{name[:3]}"
        self.net = f"{RUN}-{name}"
        self.gateway = f"10.{octet}.0.1"
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                  "hairpinMode": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{octet}.0.0/16"}]],
                           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.work / "ipam")}}
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
        dns = {"type": dns_plugin, "domainName": "bench.internal",
               "capabilities": {"aliases": True}}
        if name == "tether":
            # Private tables and state dirs; the reference plugins have no such keys.
            bridge.update({"nftTable": f"{RUN}-br", "stateDir": str(self.work / "bridge")})
            portmap.update({"nftTable": f"{RUN}-pm", "stateDir": str(self.work / "portmap")})
            dns["stateDir"] = str(self.work / "dns")
        self.conflist = {"cniVersion": "1.0.0", "name": self.net,
                         "plugins": [bridge, portmap, dns]}
        (self.netconf / f"{self.net}.conflist").write_text(json.dumps(self.conflist))

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        e.update({"NETCONFPATH": str(self.netconf), "CNI_PATH": str(self.bindir),
                  "CNI_CACHE_DIR": str(self.work / "cache"), "TETHER_LOG_LEVEL": "off"})
        return e

    def bench(self, cnitool, op, namespaces, parallel=1, port_base=None):
        """Times op (add|del) per namespace: (ms per call, failures). Container i publishes
        hostPort port_base+i, so portmap does real work on both sides."""
        env = self.env()
        if port_base is not None:
            env["BENCH_PORT_BASE"] = str(port_base)
        p = subprocess.run([cnitool, "bench", op, self.net, str(parallel)] +
                           [f"/run/netns/{n}" for n in namespaces],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"{self.name} bench {op}: {p.stderr}")
        data = json.loads(p.stdout)
        return data["ms"], data["failures"] or []

    def named(self, cnitool, op, netns):
        """One container through libcni, named in CNI_ARGS as podman and kubelet name it."""
        env = self.env()
        env["CNI_ARGS"] = f"IgnoreUnknown=1;K8S_POD_NAME={netns}"
        env["CNI_CONTAINERID"] = netns
        p = subprocess.run([cnitool, op, self.net, f"/run/netns/{netns}"], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"{self.name} {op} {netns}: {p.stderr}")

    def peak_rss(self, netns):
        """Peak RSS (KiB) of each plugin process of one ADD."""
        cid = f"{RUN}rss{self.name}"
        prev = None
        rss = {}
        confs = []
        for plugin in self.conflist["plugins"]:
            conf = {k: v for k, v in plugin.items() if k != "capabilities"}
            conf.update({"name": self.net, "cniVersion": self.conflist["cniVersion"]})
            if prev is not None:
                conf["prevResult"] = prev
            env = self.env()
            env.update({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid,
                        "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0"})
            # GNU time forks a small process and reports the plugin's own peak RSS; measuring
            # from here would count this Python process, whose memory a spawned child starts in.
            rss_file = self.work / "rss"
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file),
                                str(self.bindir / conf["type"])], input=json.dumps(conf),
                               capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise RuntimeError(f"{self.name} {conf['type']} ADD: {p.stdout}")
            rss[conf["type"]] = int(rss_file.read_text().split()[-1])
            prev = json.loads(p.stdout)
            confs.append(conf)
        for conf in reversed(confs):
            conf["prevResult"] = prev
            env = self.env()
            env.update({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": cid,
                        "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0"})
            subprocess.run([str(self.bindir / conf["type"])], input=json.dumps(conf),
                           text=True, capture_output=True, env=env)
        return rss


def make_netns(names):
    for n in names:
        sh("ip", "netns", "add", n)


def del_netns(names):
    for n in names:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


def dnsperf(server, names, netns, seconds):
    """Queries/s and mean latency of dnsperf, run inside `netns` against `server`."""
    fd, qfile = tempfile.mkstemp(prefix=f"{RUN}-q")
    os.close(fd)
    Path(qfile).write_text("".join(f"{n} A\n" for n in names))
    try:
        out = sh("ip", "netns", "exec", netns, "dnsperf", "-s", server, "-d", qfile,
                 "-l", seconds, "-c", "4", "-q", "64", check=False)
    finally:
        os.unlink(qfile)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    return {"qps": float(qps.group(1)) if qps else 0.0,
            "latency_ms": float(lat.group(1)) * 1000 if lat else float("nan"),
            "lost": int(lost.group(1)) if lost else -1}


def startup_ms(binary, runs=200):
    """Median wall time of `binary` answering VERSION: the start-up every CNI call pays."""
    env = {"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(binary)], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1000)
    return median(times)


def remove_new_tables(tables_before):
    """The reference plugins program iptables (through iptables-nft) and leave their CNI-*
    chains behind: remove every table this run created, and only those."""
    for line in sh("nft", "list", "tables", check=False).splitlines():
        if line.startswith("table ") and line not in tables_before:
            fam, name = line.split()[1:3]
            subprocess.run(["nft", "delete", "table", fam, name], capture_output=True)


def stop_daemons(work):
    for pidfile in work.rglob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().split()[0]), 15)
        except (ValueError, ProcessLookupError, OSError):
            pass
    # dnsname starts one dnsmasq per network, with its config under /run/containers/cni/dnsname.
    for net in (f"{RUN}-reference",):
        pid = Path(f"/run/containers/cni/dnsname/{net}/pidfile")
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), 15)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(pid.parent, ignore_errors=True)


def report(results, counts, out_dir):
    t, r = results["tether"], results["reference"]
    rows = []

    def row(label, key, what):
        tv, rv = median(t[key][what]), median(r[key][what])
        tp, rp = p90(t[key][what]), p90(r[key][what])
        rows.append(f"| {label} | {rv:.2f} / {rp:.2f} | {tv:.2f} / {tp:.2f} | "
                    f"{rv / tv:.1f}× faster |")

    for n in counts["seq"]:
        row(f"chain ADD, {n} sequential (ms, median / p90)", f"seq{n}", "add")
        row(f"chain DEL, {n} sequential (ms, median / p90)", f"seq{n}", "del")
    row(f"chain ADD, {counts['par']} with 8 in parallel (ms)", "par8", "add")
    row(f"chain DEL, {counts['par']} with 8 in parallel (ms)", "par8", "del")
    big = f"seq{counts['seq'][-1]}"

    def growth(side):
        adds = side[big]["add"]
        return median(adds[-20:]) / median(adds[:20])

    lines = [
        "# Benchmarks: tether against the reference plugins",
        "",
        "Measured by `make bench` (bench/bench.py) in one run on this machine: 2 cores, the same",
        "kernel, the same libcni driver (tests/e2e/cnitool, timing Add/DelNetworkList itself).",
        "Chain: bridge + host-local + portmap (one published port per container) + DNS",
        "(tether: dns-sidecar; reference: Debian's containernetworking-plugins 1.1.1 in",
        "/usr/lib/cni with podman's dnsname and dnsmasq).",
        "",
        "| figure | reference | tether | ratio |",
        "|---|---|---|---|",
        *rows,
        f"| ADD growth, last 20 / first 20 of {counts['seq'][-1]} | {growth(r):.2f}× | "
        f"{growth(t):.2f}× | |",
        f"| failures (all runs) | {sum(v.get('failures', 0) for v in r.values() if isinstance(v, dict))} | "
        f"{sum(v.get('failures', 0) for v in t.values() if isinstance(v, dict))} | |",
    ]
    for plugin_t, plugin_r in (("bridge", "bridge"), ("host-local", "host-local"),
                               ("portmap", "portmap"), ("dns-sidecar", "dnsname")):
        rt, rr = t["rss_kb"].get(plugin_t), r["rss_kb"].get(plugin_r)
        if rt and rr:
            lines.append(f"| peak RSS of `{plugin_t}` vs `{plugin_r}` (KiB) | {rr} | {rt} | "
                         f"{rr / rt:.1f}× smaller |")
    for plugin_t, plugin_r in (("bridge", "bridge"), ("portmap", "portmap"),
                               ("dns-sidecar", "dnsname")):
        st, sr = t["startup_ms"][plugin_t], r["startup_ms"][plugin_r]
        lines.append(f"| start-up of `{plugin_t}` vs `{plugin_r}` (VERSION, ms) | {sr:.2f} | "
                     f"{st:.2f} | {sr / st:.1f}× faster |")
    dt, dr = t["dns"], r["dns"]
    lines.append(f"| DNS queries/s on local names (dnsperf, {counts['dns_seconds']} s) | "
                 f"{dr['qps']:.0f} (dnsmasq) | {dt['qps']:.0f} | "
                 f"{dt['qps'] / max(dr['qps'], 1):.2f}× |")
    lines.append(f"| DNS mean latency (ms) | {dr['latency_ms']:.3f} | {dt['latency_ms']:.3f} | |")
    lines += ["", "![ADD latency per container, 200 sequential](benchmarks.png)", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmarks.md").write_text("\n".join(lines) + "\n")
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, side in results.items():
        ax[0].plot(side[big]["add"], label=name)
        ax[1].plot(side[big]["del"], label=name)
    ax[0].set_title(f"chain ADD, {counts['seq'][-1]} sequential containers")
    ax[1].set_title(f"chain DEL, {counts['seq'][-1]} sequential containers")
    for a in ax:
        a.set_xlabel("container")
        a.set_ylabel("ms")
        a.set_yscale("log")
        a.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "benchmarks.png", dpi=90)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    a = ap.parse_args()
    build = Path(a.build).resolve()
    cnitool = str(build / "bin" / "tether-cnitool")
    counts = {"seq": [1, 50, 200], "par": 50, "dns_seconds": "10"}
    if a.quick:
        counts = {"seq": [1, 10, 40], "par": 16, "dns_seconds": "2"}

    work = Path(tempfile.mkdtemp(prefix=f"{RUN}-"))
    tables_before = set(sh("nft", "list", "tables", check=False).splitlines())
    sides = [Side("tether", build / "bin", "dns-sidecar", 201, work),
             Side("reference", REF, "dnsname", 202, work)]
    results = {s.name: {} for s in sides}
    made = []
    try:
        for n in counts["seq"]:
            for s in sides:
                names = [f"{RUN}{s.name[0]}{n}-{i}" for i in range(n)]
                make_netns(names)
                made += names
                add, f1 = s.bench(cnitool, "add", names, port_base=20000)
                dele, f2 = s.bench(cnitool, "del", names, port_base=20000)
                del_netns(names)
                results[s.name][f"seq{n}"] = {"add": add, "del": dele,
                                              "failures": len(f1) + len(f2)}
                print(f"{s.name:9} {n:4} sequential: ADD {median(add):7.2f} ms (p90 "
                      f"{p90(add):7.2f})  DEL {median(dele):7.2f} ms (p90 {p90(dele):7.2f})  "
                      f"failures {len(f1) + len(f2)} {(f1 + f2)[:1]}", flush=True)
        for s in sides:
            names = [f"{RUN}{s.name[0]}p-{i}" for i in range(counts["par"])]
            make_netns(names)
            made += names
            add, f1 = s.bench(cnitool, "add", names, parallel=8, port_base=21000)
            dele, f2 = s.bench(cnitool, "del", names, parallel=8, port_base=21000)
            del_netns(names)
            results[s.name]["par8"] = {"add": add, "del": dele, "failures": len(f1) + len(f2)}
            print(f"{s.name:9} {counts['par']} x8 parallel: ADD {median(add):7.2f} ms  DEL "
                  f"{median(dele):7.2f} ms  failures {len(f1) + len(f2)} {(f1 + f2)[:1]}",
                  flush=True)
        for s in sides:
            results[s.name]["startup_ms"] = {
                p["type"]: startup_ms(s.bindir / p["type"]) for p in s.conflist["plugins"]}
            print(f"{s.name:9} start-up (ms): {results[s.name]['startup_ms']}", flush=True)
        for s in sides:
            ns = f"{RUN}{s.name[0]}rss"
            make_netns([ns])
            made.append(ns)
            results[s.name]["rss_kb"] = s.peak_rss(ns)
            del_netns([ns])
            print(f"{s.name:9} peak RSS (KiB): {results[s.name]['rss_kb']}", flush=True)
        for s in sides:
            names = [f"{RUN}{s.name[0]}d{i}" for i in range(20)]
            make_netns(names)
            made += names
            for n in names:
                s.named(cnitool, "add", n)
            results[s.name]["dns"] = dnsperf(s.gateway, names, names[0], counts["dns_seconds"])
            for n in names:
                s.named(cnitool, "del", n)
            del_netns(names)
            print(f"{s.name:9} DNS: {results[s.name]['dns']}", flush=True)
    finally:
        del_netns(made)
        for s in sides:
            subprocess.run(["ip", "link", "del", s.bridge], capture_output=True)
        stop_daemons(work)
        remove_new_tables(tables_before)
        shutil.rmtree(work, ignore_errors=True)
    print(report(results, counts, Path(a.out)))


if __name__ == "__main__":
    sys.exit(main())
