"""docs/benchmarks.md, .json and .png from one make bench run (bench/bench.py's results).

Every table is generated from the run's figures; bench/findings.md, the analysis of the
profile written by hand, is appended verbatim.
"""
import json
import math
import statistics
import time
from pathlib import Path

FINDINGS = Path(__file__).resolve().parent / "findings.md"
# Installed binary sizes against the reference's, measured with make install (not by a run).
SIZES = Path(__file__).resolve().parent / "sizes.md"
# Hand-measured multi-host figures (bench/overlay.py, cluster.py, dnsreg.py, dnscluster.py).
MULTIHOST = Path(__file__).resolve().parent / "multihost.md"
SIDES = ("reference", "netavark", "tether")
# Each tether plugin beside the reference chain's process that does its job.
PLUGIN_PAIRS = [("bridge", "bridge"), ("host-local", "host-local"), ("portmap", "portmap"),
                ("dns-sidecar", "dnsname")]


def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    xs = sorted(x for x in xs if not math.isnan(x))
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))] if xs else float("nan")


def ms(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def ratio(a, b):
    if not a or not b or math.isnan(a) or math.isnan(b):
        return "–"
    return f"{a / b:.1f}×"


def chain_rows(r):
    """(label, {side: (median, p90)}) for 50/200 sequential and 8-parallel, ADD and DEL."""
    g, rows = r["phases"]["growth"], []
    for n in r["counts"]["windows"]:
        for op in ("add", "del"):
            vals = {}
            for side, v in g.items():
                xs = v.get(op, [])
                if len(xs) >= n:
                    vals[side] = (med(xs[:n]), p90(xs[:n]))
                if side == "floor":
                    vals["floor_exec"] = (med(v[op + "_exec"][:n]), p90(v[op + "_exec"][:n]))
                    if v.get(op + "_unregistered"):
                        vals["floor_unreg"] = (med(v[op + "_unregistered"][:n]),)
            rows.append((f"{op.upper()}, {n} sequential", vals))
    par = r["phases"]["par8"]
    for op in ("add", "del"):
        vals = {side: (med(v.get(op, [])), p90(v.get(op, []))) for side, v in par.items()}
        vals["floor_exec"] = (med(par["floor"][op + "_exec"]), p90(par["floor"][op + "_exec"]))
        if par["floor"].get(op + "_unregistered"):
            vals["floor_unreg"] = (med(par["floor"][op + "_unregistered"]),)
        rows.append((f"{op.upper()}, {r['counts']['par']} with 8 in parallel", vals))
    return rows


def conntrack_note(r):
    """The flush of the DNS runs' conntrack entries before the DELs (bench.py
    settle_conntrack), when the run did it."""
    c = r.get("conntrack_settle")
    if not c:
        return ""
    most = max(c["before"].values())
    return (f" Between the ADDs and the DELs the run flushes the conntrack entries the DNS runs "
            f"left in each side's namespaces ({most:,} in the busiest): the kernel's conntrack "
            f"hash is one for every namespace, each veth delete of any side has the kernel walk "
            f"all of it, and for the 120 s these entries live the DELs of every side were up to "
            f"3× slower.")


def chain_table(r):
    out = ["| chain call (ms, median / p90) | reference | netavark | **tether** | kernel floor: "
           "one netlink call (in one process, exec'd; DEL: the pair unregistered after) | "
           "tether vs reference | tether vs netavark | tether / floor |",
           "|---|---|---|---|---|---|---|---|"]
    for label, v in chain_rows(r):
        def cell(k):
            return f"{ms(v[k][0])} / {ms(v[k][1])}" if k in v else "–"
        t = v.get("tether", (float("nan"),))[0]
        out.append(
            f"| {label} | {cell('reference')} | {cell('netavark')} | **{cell('tether')}** | "
            f"{ms(v['floor'][0])} ({ms(v['floor_exec'][0])}"
            f"{'; ' + ms(v['floor_unreg'][0]) if 'floor_unreg' in v else ''}) | "
            f"{ratio(v.get('reference', (0,))[0], t)} faster | "
            f"{ratio(v.get('netavark', (0,))[0], t)} faster | {ratio(t, v['floor'][0])} |")
    fails = {s: sum(ph.get(s, {}).get("failures", 0) for ph in r["phases"].values())
             for s in SIDES + ("floor",)}
    out.append(f"| failures (every call of the run) | {fails['reference']} | {fails['netavark']} "
               f"| {fails['tether']} | {fails['floor']} | | | |")
    errors = [f"{s}: {e}" for ph in r["phases"].values() for s, v in ph.items()
              for e in v.get("errors", [])]
    if errors:
        out += ["", "Failures seen (first of each phase and side):", ""]
        out += [f"- `{e[:300]}`" for e in errors]
    return out


def growth_table(r):
    g, w = r["phases"]["growth"], r["counts"]["growth_window"]
    out = [f"| side | containers on the bridge | ADD, first {w} | ADD, last {w} | ADD growth | "
           f"DEL, first {w} | DEL, last {w} | DEL growth |", "|---|---|---|---|---|---|---|---|"]
    for side in SIDES + ("floor",):
        v = g[side]
        n = len(v["add"])
        a0, a1 = med(v["add"][:w]), med(v["add"][-w:])
        d0, d1 = med(v["del"][:w]), med(v["del"][-w:])
        name = "kernel floor" if side == "floor" else side
        out.append(f"| {name} | 1 → {n} | {ms(a0)} | {ms(a1)} | **{a1 / a0:.2f}×** | {ms(d0)} | "
                   f"{ms(d1)} | **{d1 / d0:.2f}×** |")
    return out


def plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = r["phases"]["growth"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = {"tether": "tab:green", "reference": "tab:red", "netavark": "tab:blue",
              "floor": "tab:gray"}
    for i, op in enumerate(("add", "del")):
        for side in ("reference", "netavark", "tether", "floor"):
            ys = g[side][op]
            xs = range(1, len(ys) + 1)
            ax[i].plot(xs, ys, ".", ms=2.5, alpha=0.5, color=colors[side])
            k = 25  # a running median shows the trend through the load's noise
            trend = [med(ys[max(0, j - k):j + k]) for j in range(len(ys))]
            ax[i].plot(xs, trend, "-", lw=1.5, color=colors[side],
                       label="kernel floor (one netlink call)" if side == "floor" else side)
        ax[i].set_title(f"chain {op.upper()} of the i-th container (i on the bridge)")
        ax[i].set_xlabel("containers on the bridge")
        ax[i].set_yscale("log")
        ax[i].grid(True, which="both", alpha=0.3)
    ax[0].set_ylabel("ms (dots: each call; line: running median of 51)")
    ax[1].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def rss_table(r):
    rss = r["rss"]
    pairs = PLUGIN_PAIRS
    out = ["| process, verb | reference: peak (KiB) | **tether: peak (KiB)** | tether: RSS at exit, "
           "file-backed + anonymous (KiB) | reference / tether |", "|---|---|---|---|---|"]
    for verb in ("ADD", "DEL"):
        for t, ref in pairs:
            tv, rv = rss["tether"].get(f"{t} {verb}"), rss["reference"].get(f"{ref} {verb}")
            if not tv or not rv:
                continue
            anon = tv["anon_at_exit_kb"]
            out.append(f"| `{t}` vs `{ref}`, {verb} | {rv['hwm_kb']} | **{tv['hwm_kb']}** | "
                       f"{tv['rss_at_exit_kb'] - anon} + {anon} | "
                       f"{rv['hwm_kb'] / tv['hwm_kb']:.2f}× |")
    for verb, key in (("ADD", "netavark-setup ADD"), ("DEL", "netavark-teardown DEL")):
        v = rss["netavark"].get(key)
        if v:
            out.append(f"| `netavark {'setup' if verb == 'ADD' else 'teardown'}` | "
                       f"{v['hwm_kb']} (netavark) | | | |")
    files = [(side, k, v) for side in ("tether", "reference")
             for k, v in rss.get(side + " by file", {}).items() if k.endswith(" ADD")]
    if files:
        out += ["", "What is resident at exit, per mapped file (KiB; ADD; every file-backed page "
                "the process touched, and the kernel maps up to 16 pages around each fault):",
                "", "| side | process | resident at exit, largest first |", "|---|---|---|"]
        for side, key, by in files:
            top = sorted(by.items(), key=lambda kv: -kv[1])
            text = ", ".join(f"`{Path(f).name}` {kb}" for f, kb in top[:6] if kb > 0)
            out.append(f"| {side} | `{key.split()[0]}` | {text} |")
    return out


def startup_table(r):
    s = r["startup"]
    pairs = PLUGIN_PAIRS
    out = ["| binary | reference: VERSION (ms) | **tether: VERSION (ms)** | tether vs reference | "
           "reference: stripped (KiB) | tether: stripped (KiB) |", "|---|---|---|---|---|---|"]
    for t, ref in pairs:
        tv, rv = s["tether"][t], s["reference"][ref]
        out.append(f"| `{t}` vs `{ref}` | {ms(rv['ms'])} | **{ms(tv['ms'])}** | "
                   f"{rv['ms'] / tv['ms']:.1f}× faster | {rv['stripped_bytes'] // 1024} | "
                   f"{tv['stripped_bytes'] // 1024} |")
    for name, v in s["netavark"].items():
        out.append(f"| `{name}` (netavark's side; `--version`) | {ms(v['ms'])} | | | "
                   f"{v['stripped_bytes'] // 1024} | |")
    for name, v in s["floor"].items():
        out.append(f"| `{name}`: the cost of any exec here | {ms(v['ms'])} | | | "
                   f"{v['stripped_bytes'] // 1024} | |")
    return out


def dns_table(r):
    d = r["dns"]
    rate = r["counts"]["dns_rate"]
    label = {"tether": "tether (tether-dns, dns-sidecar's daemon)", "reference": "dnsmasq (dnsname)",
             "netavark": "aardvark-dns"}
    out = [f"| names | queries | server | queries/s | **server CPU per query (µs)** | server "
           f"core busy | p99 latency at {rate} q/s (ms) | answers |",
           "|---|---|---|---|---|---|---|---|"]
    for row in d["rows"]:
        codes = ", ".join(f"{k} {v}" for k, v in row["codes"].items())
        out.append(f"| {row['names']} | {row['kind']} | {label[row['server']]} | "
                   f"{row['qps']:.0f} | **{row['cpu_us_per_query']:.2f}** | "
                   f"{100 * row['server_cpu_share']:.0f}% | {ms(row['p99_ms'])} | {codes} |")
    out += ["", "| names | queries | tether's CPU per query vs dnsmasq's | vs aardvark-dns's | "
            "p99 vs dnsmasq's |", "|---|---|---|---|---|"]
    by = {(x["names"], x["kind"], x["server"]): x for x in d["rows"]}
    for (names, kind, server), x in by.items():
        if server != "tether":
            continue
        m, a = by.get((names, kind, "reference")), by.get((names, kind, "netavark"))
        out.append(f"| {names} | {kind} | {x['cpu_us_per_query'] / m['cpu_us_per_query']:.2f} | "
                   f"{x['cpu_us_per_query'] / a['cpu_us_per_query']:.2f} | "
                   f"{x['p99_ms'] / m['p99_ms']:.2f} |")
    if d.get("profiles"):
        out += ["", f"Where each server's CPU goes ({d['profile_at']} names; perf cpu-clock "
                f"samples of the server process during a third run, % of its samples; "
                f"Debian's dnsmasq and aardvark-dns are stripped, so their own code shows as "
                f"`?`):", "", "| server, queries | in the kernel | hottest symbols |",
                "|---|---|---|"]
        for key, syms in d["profiles"].items():
            server, kind = key.split()
            kernel = dict(syms).get("(all kernel symbols)")
            top = [(k, v) for k, v in syms if not k.startswith("(")][:8]
            share = f"{kernel:.0f}%" if kernel is not None else "–"
            out.append(f"| {label[server]}, {kind} | {share} | " +
                       "; ".join(f"`{k}` {v}%" for k, v in top) + " |")
    up = d["upstream"]
    seconds = r["counts"].get("dns_seconds", 4)
    fwd = [x for x in d["rows"] if x["kind"] == "forward"]
    busiest = max((x.get("upstream_cpu_share", x["upstream_cpu_us_per_query"] * x["completed"]
                         / 1e6 / seconds) for x in fwd), default=0.0)
    fastest = max((x["qps"] for x in fwd), default=0.0)
    out += ["", f"The fake upstream (bench/tools/upstream.cc) alone, on the server core, under the "
            f"same dnsperf: {up['qps']:.0f} queries/s at {up['cpu_us_per_query']:.2f} µs of CPU "
            f"per query. During the forwarded runs it was at most {100 * busiest:.0f}% busy and "
            f"the fastest server forwarded {fastest:.0f} queries/s: the upstream is not what "
            f"limits any server."]
    return out


def summarize_group(procs):
    """Processes grouped by executable: count, summed wall, on-CPU, off-CPU categories."""
    groups = {}
    for p in procs:
        g = groups.setdefault((p["exe"], p["parent"]), {"n": 0, "wall": 0.0, "cpu": 0.0,
                                                          "startup": [], "off": {}})
        g["n"] += 1
        g["wall"] += p["wall_ms"]
        g["cpu"] += p["oncpu_ms"]
        if "startup_ms" in p:
            g["startup"].append(p["startup_ms"])
        for k, v in p["offcpu_ms"].items():
            g["off"][k] = g["off"].get(k, 0.0) + v
    return groups


def profiled(prof, op, sides, tool):
    """(side, containers on the bridge, analysis) of every profiled `op` by `tool`."""
    for point in ("first", "last"):
        for side in sides:
            res = prof.get(point, {}).get(side)
            if res:
                yield side, res["containers"], res[op][tool]


def profile_section(r):
    prof = r.get("profile", {})
    out = []
    for op in ("add", "del"):
        out += ["", f"### {op.upper()}: per process (perf, scheduler tracepoints)", "",
                "| side, containers | process (parent) | ×n | wall (ms) | on-CPU (ms) | start-up to "
                "reading stdin (ms) | where the off-CPU time went (ms) |",
                "|---|---|---|---|---|---|---|"]
        for side, n, perf in profiled(prof, op, ("tether", "reference", "netavark"), "perf"):
            if "error" in perf:
                out.append(f"| {side}, {n} | {perf['error']} | | | | | |")
                continue
            procs = [p for p in perf["processes"] if p["exe"] != "tether-cnitool"]
            for (exe, parent), g in summarize_group(procs).items():
                off = sorted(g["off"].items(), key=lambda kv: -kv[1])
                off_txt = "; ".join(f"{k} {v:.1f}" for k, v in off if v >= 0.3) or "–"
                su = f"{med(g['startup']):.2f}" if g["startup"] else "–"
                out.append(f"| {side}, {n} | `{exe}` ({parent or 'runtime'}) | {g['n']} | "
                           f"{g['wall']:.1f} | {g['cpu']:.1f} | {su} | {off_txt} |")
        out += ["", f"### {op.upper()}: tether's syscalls (strace -f), with 1 and with N "
                f"containers on the bridge", "",
                "| containers | process | syscalls | files opened (of them in /proc/sys) | bytes "
                "read from netlink (nftables / route) | most time (count, ms under strace) |",
                "|---|---|---|---|---|---|"]
        for _, n, st in profiled(prof, op, ("tether",), "strace"):
            if "error" in st:
                out.append(f"| {n} | {st['error']} | | | | |")
                continue
            for p in st["processes"]:
                if p["exe"] == "tether-cnitool":
                    continue
                nb = p["netlink_bytes_in"]
                top = "; ".join(f"{k} ({c}, {t:.1f})" for k, c, t in p["top"][:3])
                procsys = f" ({p['procsys_opens']})" if "procsys_opens" in p else ""
                out.append(f"| {n} | `{p['exe']}` | {p['syscalls']} | "
                           f"{p['opens']}{procsys} | {nb.get('netlink nftables', 0)} / "
                           f"{nb.get('netlink route', 0)} | {top} |")
    return out


def write(results, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    r = results
    m = r["machine"]
    loads = "; ".join(f"{k} {v['before'][0]} → {v['after'][0]} ({v['seconds']:.0f} s)"
                      for k, v in r["load"].items())
    g = r["counts"]["growth"]
    lines = [
        "# Benchmarks: tether, the reference plugins and netavark, side by side",
        "",
        f"Generated by `make bench` (bench/bench.py, mode {m['mode']}) on "
        f"{time.strftime('%Y-%m-%d')}: {m['cpus']} cores, kernel {m['kernel']}, "
        f"{m['minutes']:.1f} minutes. The machine was shared with other engineers' builds and "
        f"tests: load average (1 min) {m['load_at_start'][0]} at the start, "
        f"{m['load_at_end'][0]} at the end; per phase {loads}. The sides run interleaved, "
        f"call by call, so all of them see the same load.",
        "",
        "Sides: **tether** (bridge + host-local + portmap + dns-sidecar) and the **reference** "
        "(Debian's containernetworking-plugins 1.1.1 + podman's dnsname/dnsmasq) through libcni "
        "(tests/e2e/cnitool's serve mode times `AddNetworkList`/`DelNetworkList` itself); "
        "**netavark** 1.4 + aardvark-dns as podman 4.3 runs it (`netavark setup|teardown` with "
        "the network options on stdin, under podman's network lock; podman's own IPAM is not in "
        "its figures); every container publishes one port and registers one DNS name. The "
        "**kernel floor** is a veth pair (host end on a bridge, peer in the container's netns) "
        "created or deleted by one netlink call in one process (bench/tools/veth_floor.cc); in "
        "brackets, the same tool's whole exec, and for DEL when the kernel announced the pair "
        "unregistered (its RTM_DELLINK notification: gone from every listing, names free), "
        "before the call's deferred work (netdev_run_todo's rcu_barrier) and its answer. "
        "tether's bridge DEL returns at that point and leaves the rest of the kernel's call to a "
        "detached process (common/detached.h), so its DEL is under the whole call's floor. "
        "Each side has a private host namespace of its own.",
        "",
        "## Chain ADD and DEL",
        "",
        f"The 50- and 200-sequential figures are the first 50/200 points of the growth run below "
        f"(containers added one at a time, then deleted one at a time, so the n-th point ran "
        f"with n containers on the bridge).",
        "",
        *chain_table(r),
        "",
        "## Growth: the cost of the i-th container",
        "",
        f"ADD of containers 1…N on one bridge, then DEL from N down to 1. tether and the floor go "
        f"to {g['tether']}; the reference and netavark to {g['reference']} (`--long`: 1,000): "
        f"their iptables calls re-read the whole ruleset, so each container present adds about "
        f"3 ms to every ADD and a run to 1,000 would take most of an hour. Growth = median of "
        f"the last {r['counts']['growth_window']} / median of the first "
        f"{r['counts']['growth_window']}.{conntrack_note(r)}",
        "",
        *growth_table(r),
        "",
        "![ADD and DEL latency per container index, three sides and the kernel floor]"
        "(benchmarks.png)",
        "",
        "## Peak RSS of each plugin process, alone",
        "",
        "VmHWM at the process's exit, read under ptrace by bench/tools/hwm.cc, which runs every "
        "plugin of the real chain (CNI_PATH is a directory of its links): bridge's figure does "
        "not include the host-local it reaps (wait4's ru_maxrss, GNU time's %M, would). The "
        "kernel's RSS counters are per-CPU approximations, so VmHWM can be off by a few hundred "
        "KiB; the exact RSS at exit (smaps_rollup) is beside it, split into what is mapped from "
        "the binary and libraries (file-backed) and what is the process's own (anonymous).",
        "",
        *rss_table(r),
        "",
        "## Start-up and binary size",
        "",
        f"Median of {r['counts']['startup_runs']} `CNI_COMMAND=VERSION` runs each, fork to exit "
        f"as the driver sees it, interleaved; sizes after `strip --strip-all`.",
        "",
        *startup_table(r),
        "",
        "## DNS per CPU-second",
        "",
        "The server pinned to core 1, dnsperf (`-c 4 -q 64`, from a container of the network) "
        "and the fake upstream pinned to core 0. CPU per query = the server's utime+stime "
        "(/proc/<pid>/stat, all threads) over the run / queries answered: independent of how "
        "fast dnsperf is, which on this loaded machine limits queries/s (see how busy the "
        f"server's core was). p99 from runs at a fixed {r['counts']['dns_rate']} q/s, server "
        f"and dnsperf at nice -5: {r['counts'].get('dns_rounds', 1)} one-second slices per "
        f"server and kind, the servers in turn (the order rotated each round), the samples "
        f"pooled, so that a stall of the machine falls in one server's slice, not in all of one "
        f"server's samples. On a machine this loaded it still measures mostly how long a woken "
        f"server waits for its core, so compare it between servers of one row only. "
        f"{r['counts']['dns_live']} names: the growth run's containers; more: the growth run's "
        "plus synthetic ones registered through each server's own reload path (record files, "
        "addn-hosts, aardvark's config; SIGHUP). Local: `<name>.<domain>` A queries over every "
        "registered name; forwarded: 10,000 distinct names under a domain the servers do not "
        "own, answered by the fake upstream with TTL 0 so that no server can cache them.",
        "",
        *dns_table(r),
        "",
        "## Where the time goes",
        "",
        "One extra container's ADD and DEL, profiled at 1 and at N containers on the bridge: "
        "`perf record -a` with the scheduler tracepoints (each switch-out's kernel stack names "
        "what the process waited for) and `strace -f -T`; the stacks behind every category are "
        "in benchmarks.json (`profile`). Times under strace are inflated and only the counts and "
        "bytes are to be compared; perf's are not.",
        *profile_section(r),
        "",
    ]
    if FINDINGS.exists():
        lines += [FINDINGS.read_text()]
    if SIZES.exists():
        lines += [SIZES.read_text()]
    if MULTIHOST.exists():
        lines += [MULTIHOST.read_text()]
    (out_dir / "benchmarks.md").write_text("\n".join(lines) + "\n")
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=1))
    plot(r, out_dir / "benchmarks.png")
    return "\n".join(lines[:60])
