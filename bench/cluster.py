#!/usr/bin/env python3
"""ADD/DEL latency with the cluster on vs off (issue 11; docs/benchmarks.md, "Cluster on vs off").

One simulated host of the multi-host harness (tests/multihost/conftest.py: a host namespace
whose eth0 is on an underlay bridge, etcd on the underlay, tether-agent started on demand by
host-local), the same bridge chain with three IPAMs, interleaved run by run:
  off       plain host-local (a local subnet)
  on        cluster-mode host-local, the host's /24 block already held
  overlay   as "on", plus the bridge's "overlay": {"vni": 4242} (spec file, VXLAN device kept)
each ADD into its own container netns and DEL'd again. Then host-local alone, without and with
the cluster, and "claim": cluster-mode host-local with "blockSize": 30 (one container per block),
so that every ADD claims a new block. etcd's own request counters (grpc_server_handled_total of
the KV and lease methods, from its /metrics) are read around the held-block ADDs and around the
claims: the round trips each costs. Medians and p90 of N runs, in ms, process start included.

  bench/cluster.py BUILD [--runs 30] [--json out.json]
Everything is named with the harness's per-run prefix and removed at the end, on failure too."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summary(xs):
    return {"median_ms": round(statistics.median(xs) * 1e3, 2),
            "p90_ms": round(pct(xs, 0.9) * 1e3, 2), "n": len(xs)}


def etcd_requests(mh, cluster):
    """{method: count} of etcd's unary KV and lease requests so far."""
    out = mh.sh("curl", "-sf", f"{cluster.etcd.url}/metrics", ns=cluster.ul)
    counts = {}
    for line in out.splitlines():
        if not line.startswith("grpc_server_handled_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        method = labels.split('grpc_method="')[1].split('"')[0]
        if method in ("Range", "Txn", "Put", "DeleteRange", "LeaseGrant", "LeaseRevoke"):
            counts[method] = counts.get(method, 0) + int(float(value))
    return counts


def delta(after, before):
    return {m: after.get(m, 0) - before.get(m, 0) for m in after if after.get(m, 0) != before.get(m, 0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ["TETHER_BIN_DIR"] = str(Path(a.build).resolve() / "bin")
    sys.path.insert(0, str(ROOT / "tests" / "multihost"))
    import conftest as mh  # the harness: RUN prefix, Cluster, Host

    cluster = mh.Cluster()
    netns = []
    try:
        h = cluster.add_host()
        cfg = json.loads(h.cluster_file.read_text())
        cfg["overlayDir"] = str(h.dir / "ov")
        h.cluster_file.write_text(json.dumps(cfg))
        cl = str(h.cluster_file)

        def bridge(name, br, ipam, **extra):
            c = {"cniVersion": "1.1.0", "name": name, "type": "bridge", "bridge": br,
                 "isGateway": True, "ipMasq": True, "nftTable": mh.RUN,
                 "stateDir": str(h.dir / "bridge"), "ipam": ipam}
            c.update(extra)
            return c

        local = {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]],
                 "dataDir": str(h.data_dir)}

        def clustered(subnet, block=24):
            return {"type": "host-local", "cluster": cl, "subnet": subnet, "blockSize": block,
                    "dataDir": str(h.data_dir)}

        chains = {"off": bridge("cboff", "tcb0", local),
                  "on": bridge("cbon", "tcb1", clustered("10.32.0.0/16")),
                  "overlay": bridge("cbov", "tcb2", clustered("10.36.0.0/16"),
                                    overlay={"vni": 4242}, cluster=cl)}
        ipams = {"off": dict(chains["off"], name="ipoff"),
                 "on": dict(chains["on"], name="ipon", ipam=clustered("10.34.0.0/16"))}
        claim = bridge("ipclaim", "tcb3", clustered("10.33.0.0/16", block=30))

        for v in chains:
            ns = f"{mh.RUN}-b{v}"
            mh.sh("ip", "netns", "add", ns)
            netns.append(ns)
        # Warm-up: the agent runs, every cluster network holds its block, the devices exist.
        for v, conf in chains.items():
            r = h.plugin("bridge", "ADD", conf, containerid="warm", netns=f"/run/netns/{mh.RUN}-b{v}")
            assert r.rc == 0, r
            assert h.plugin("bridge", "DEL", conf, containerid="warm",
                            netns=f"/run/netns/{mh.RUN}-b{v}").rc == 0
        for v, conf in ipams.items():
            assert h.plugin("host-local", "ADD", conf, containerid="warm").rc == 0
        time.sleep(1)  # the node record's republish after the warm-up claims

        t = {f"chain {v} {verb}": [] for v in chains for verb in ("ADD", "DEL")}
        t.update({f"host-local {v} {verb}": [] for v in ipams for verb in ("ADD", "DEL")})
        before = etcd_requests(mh, cluster)
        for i in range(a.runs):
            for v, conf in chains.items():
                nsp = f"/run/netns/{mh.RUN}-b{v}"
                r = h.plugin("bridge", "ADD", conf, containerid=f"c{i}", netns=nsp)
                assert r.rc == 0, r
                t[f"chain {v} ADD"].append(r.elapsed)
                r = h.plugin("bridge", "DEL", conf, containerid=f"c{i}", netns=nsp)
                assert r.rc == 0, r
                t[f"chain {v} DEL"].append(r.elapsed)
            for v, conf in ipams.items():
                r = h.plugin("host-local", "ADD", conf, containerid=f"c{i}")
                assert r.rc == 0, r
                t[f"host-local {v} ADD"].append(r.elapsed)
                r = h.plugin("host-local", "DEL", conf, containerid=f"c{i}")
                assert r.rc == 0, r
                t[f"host-local {v} DEL"].append(r.elapsed)
        held = delta(etcd_requests(mh, cluster), before)

        # Claims: every ADD needs a new /30 block (the last one's only address is taken).
        t["host-local claim ADD"] = []
        before = etcd_requests(mh, cluster)
        for i in range(a.runs):
            r = h.plugin("host-local", "ADD", claim, containerid=f"k{i}")
            assert r.rc == 0, r
            t["host-local claim ADD"].append(r.elapsed)
        claimed = delta(etcd_requests(mh, cluster), before)
        time.sleep(1)
        claimed_later = delta(etcd_requests(mh, cluster), before)
        for i in range(a.runs):
            assert h.plugin("host-local", "DEL", claim, containerid=f"k{i}").rc == 0
        blocks = len(cluster.etcd.keys(f"{cluster.prefix}/blocks/"))
        load = os.getloadavg()

        res = {k: summary(v) for k, v in t.items()}
        print(f"{a.runs} runs each; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print(f"{'':28} {'median ms':>10} {'p90 ms':>8}")
        for k, s in res.items():
            print(f"{k:28} {s['median_ms']:10.2f} {s['p90_ms']:8.2f}")
        for what in ("ADD", "DEL"):
            off = res[f"chain off {what}"]["median_ms"]
            print(f"chain {what} on/off {res[f'chain on {what}']['median_ms'] / off:.2f}, "
                  f"overlay/off {res[f'chain overlay {what}']['median_ms'] / off:.2f}")
        print(f"etcd requests during {a.runs * (len(chains) + len(ipams))} ADD+DEL pairs in held "
              f"blocks (agent's keepalives excluded): {held or 'none'}")
        print(f"etcd requests during {a.runs} claim ADDs: {claimed}; 1 s later {claimed_later} "
              f"({blocks} blocks held)")
        if a.json:
            Path(a.json).write_text(json.dumps(
                {"runs": a.runs, "load": load, "latency": res, "etcd_held": held,
                 "etcd_claims": claimed, "etcd_claims_1s_later": claimed_later}, indent=1))
    finally:
        for ns in netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        cluster.remove()
        left = mh.leftovers()
        if left:
            print("left over:", left, file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
