"""Where the time of one chain ADD/DEL goes, per process, from perf and from strace.

The profiler adds (and deletes) one extra container on a side's bridge while the growth run has
1 and N containers on it, twice: under `perf record -a` with the scheduler tracepoints (every
switch out with its kernel stack, so each millisecond a plugin spends off the CPU is attributed
to what it waited for: an RCU grace period in a veth delete or an nftables commit, a child, a
daemon, the run queue) and cpu-clock samples; and under `strace -f -T -yy` for the syscalls
(count and time per kind, bytes read from netlink: a dump that grows with the containers shows
there). The one-shot `tether-cnitool add|del` (or netavark itself) is the root; its own Go
start-up is outside every plugin's figures.
"""
import collections
import json
import re
import subprocess
from pathlib import Path

PERF_EVENTS = ["-e", "sched:sched_switch", "-e", "sched:sched_process_fork", "-e",
               "sched:sched_process_exec", "-e", "sched:sched_process_exit", "-e",
               "syscalls:sys_enter_read", "--filter", "fd == 0", "-e", "cpu-clock"]

# Off-CPU categories: the first rule whose every pattern is in the switch-out stack wins.
OFFCPU_RULES = [
    ("nft socket close: waits for the commit's deferred destroy (RCU grace period)",
     ("nft_rcv_nl_event",)),
    ("nft commit: RCU grace period", ("nf_tables", "synchronize_rcu")),
    ("nft commit: RCU grace period", ("nfnetlink", "synchronize_rcu")),
    ("nft commit: waiting for the commit mutex", ("nfnetlink", "mutex_lock")),
    ("veth create: RCU grace period (expedited)", ("veth_newlink", "synchronize_rcu")),
    ("veth delete: rcu_barrier (the kernel's floor)", ("netdev_run_todo", "rcu_barrier")),
    ("veth delete: RCU grace period", ("unregister_netdevice", "synchronize_rcu")),
    ("veth delete: RCU grace period", ("rtnl_dellink", "synchronize_rcu")),
    ("veth delete: other", ("rtnl_dellink",)),
    ("link/address/route change: RCU", ("rtnetlink", "synchronize_rcu")),
    ("rtnl_lock wait", ("rtnl_lock",)),
    ("rtnl_lock wait", ("rtnl_net_lock",)),
    ("other RCU grace period", ("synchronize_rcu",)),
    ("other RCU grace period", ("rcu_barrier",)),
    ("waiting for a child process (wait4)", ("do_wait",)),
    ("reading a pipe (its stdin, or a child's output)", ("pipe_read",)),
    ("vfork: waiting for a child's exec", ("kernel_clone",)),
    ("ext4 online discard on unlink", ("blkdev_issue_discard",)),
    ("fsync", ("fsync",)),
    ("fsync", ("jbd2",)),
    ("daemon reply (unix socket)", ("unix_stream",)),
    ("daemon reply (unix socket)", ("unix_dgram",)),
    ("file lock (flock)", ("flock",)),
    ("disk read", ("filemap_fault",)),
    ("disk read", ("folio_wait",)),
    ("netlink reply", ("netlink_recvmsg",)),
    ("sleep/timer", ("hrtimer_nanosleep",)),
    ("sleep/timer", ("clock_nanosleep",)),
    ("poll (tether: a child's or the daemon's answer)", ("do_sys_poll",)),
    ("epoll (Go/Rust runtime: a child's output or a timer)", ("ep_poll",)),
    ("epoll (Go/Rust runtime: a child's output or a timer)", ("do_epoll_wait",)),
    ("futex (threads)", ("futex",)),
    ("exit", ("do_exit",)),
]

GENERIC = re.compile(r"^(__schedule|schedule|schedule_\w+|preempt_schedule\w*|io_schedule\w*|"
                     r"wait_for_completion\w*|__wait_for_common|__flush_work|__wait_rcu_gp|"
                     r"\w*_slowpath|finish_task_switch\S*|__switch_to\S*)$")


def categorize(state, stack):
    if state.startswith("R"):
        return "runnable, not running (CPU taken by others)"
    text = " ".join(stack)
    for name, pats in OFFCPU_RULES:
        if all(p in text for p in pats):
            return name
    frames = [f.split()[0] for f in stack]
    return "other: " + " < ".join([f for f in frames if not GENERIC.match(f)][:3] or ["?"])


HEADER = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(?:\d+\s+)?([\w:-]+):"
                    r"\s?(.*)$")


def parse_perf(text):
    """perf script output -> list of (comm, pid, tid, time, event, trace, stack[syms])."""
    events, cur = [], None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            if cur:
                events.append(cur)
            comm, pid, tid, _, t, ev, trace = m.groups()
            cur = (comm, int(pid), int(tid), float(t), ev, trace, [])
        elif cur and line.strip():
            parts = line.strip().split(None, 2)
            if len(parts) >= 2:
                cur[6].append(parts[1] + (" " + parts[2] if len(parts) > 2 else ""))
    if cur:
        events.append(cur)
    return events


def analyze_perf(text, root_exe):
    events = parse_perf(text)
    tgid = {}
    for comm, pid, tid, *_ in events:
        tgid[tid] = pid
    root = None
    for comm, pid, tid, t, ev, trace, _ in events:
        if ev == "sched:sched_process_exec" and f"filename={root_exe} " in trace + " ":
            root = pid
            break
    if root is None:
        return {"error": f"no exec of {root_exe} in the trace"}
    ours = {root}
    parent = {root: None}
    procs = {}
    for comm, pid, tid, t, ev, trace, _ in events:
        if ev == "sched:sched_process_fork":
            m = re.search(r"child_pid=(\d+)", trace)
            child = int(m.group(1))
            if tgid.get(tid, pid) in ours or pid in ours:
                owner = tgid.get(child, child)
                if owner == child and owner not in ours:  # a new process, not a thread
                    ours.add(child)
                    parent[child] = pid
                    procs.setdefault(child, {"start": t})
    for p in ours:
        procs.setdefault(p, {})
    for comm, pid, tid, t, ev, trace, stack in events:
        if pid not in ours:
            continue
        pr = procs[pid]
        if ev == "sched:sched_process_exec":
            pr["exe"] = trace.split("filename=")[1].split()[0]
            pr.setdefault("start", t)
            pr["exec"] = t
        elif ev == "sched:sched_process_exit" and tid == pid:
            pr["end"] = t
        elif ev == "syscalls:sys_enter_read" and "first_stdin_read" not in pr and "exec" in pr:
            pr["first_stdin_read"] = t
        pr.setdefault("start", t)
        pr["last"] = t
    # Run intervals and off-CPU intervals of every thread of our processes.
    running = {}   # tid -> since
    off = {}       # tid -> (since, state, stack)
    oncpu = collections.Counter()
    offcpu = collections.defaultdict(collections.Counter)
    stacks = collections.defaultdict(dict)  # pid -> category -> {stack: ms}
    samples = collections.defaultdict(collections.Counter)
    for comm, pid, tid, t, ev, trace, stack in events:
        if ev == "sched:sched_switch":
            m = re.search(r"prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=.* next_pid=(\d+)",
                          trace)
            prev, state, nxt = int(m.group(1)), m.group(2), int(m.group(3))
            if tgid.get(prev) in ours:
                p = tgid[prev]
                if prev in running:
                    oncpu[p] += t - running.pop(prev)
                if prev == p:
                    off[prev] = (t, state, stack)
            if tgid.get(nxt, nxt) in ours:
                running[nxt] = t
                if nxt in off:
                    since, state, st = off.pop(nxt)
                    cat = categorize(state, st)
                    owner = tgid.get(nxt, nxt)
                    offcpu[owner][cat] += t - since
                    if not state.startswith("R"):
                        key = " < ".join(f.split()[0] for f in st[:16])
                        per = stacks[owner].setdefault(cat, {})
                        per[key] = per.get(key, 0.0) + (t - since) * 1000
        elif ev == "cpu-clock" and pid in ours:
            top = stack[0] if stack else "?"
            samples[pid][top.split()[0] if top else "?"] += 1
    out = []
    for p in sorted(ours, key=lambda x: procs[x].get("start", 0)):
        pr = procs[p]
        exe = pr.get("exe", "?")
        start, end = pr.get("exec", pr.get("start")), pr.get("end", pr.get("last"))
        if start is None or end is None:
            continue
        entry = {"pid": p, "exe": Path(exe).name, "parent": parent.get(p),
                 "start_ms": 0.0, "wall_ms": (end - start) * 1000,
                 "oncpu_ms": oncpu[p] * 1000,
                 "offcpu_ms": {k: v * 1000 for k, v in offcpu[p].most_common()},
                 # the kernel stack that took most of each category's time: the evidence
                 "offcpu_stacks": {c: max(v, key=v.get) for c, v in stacks[p].items()},
                 "top_samples": samples[p].most_common(6)}
        if "first_stdin_read" in pr and "exec" in pr:
            entry["startup_ms"] = (pr["first_stdin_read"] - pr["exec"]) * 1000
        entry["t0"] = start
        out.append(entry)
    if not out:
        return {"error": "no process"}
    t0 = min(e["t0"] for e in out)
    for e in out:
        e["start_ms"] = (e.pop("t0") - t0) * 1000
    names = {e["pid"]: e["exe"] for e in out}
    for e in out:
        e["parent"] = names.get(e["parent"], "")
    return {"processes": out}


STRACE_LINE = re.compile(r"^(\d+)\s+([\d.]+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")


def fd_kind(args):
    m = re.match(r"\s*-?\d+<([^>]*)>", args)
    if not m:
        return ""
    a = m.group(1)
    if a.startswith("NETLINK:[NETFILTER") or "NETLINK_NETFILTER" in a:
        return "netlink nftables"
    if a.startswith("NETLINK:[ROUTE") or "NETLINK_ROUTE" in a:
        return "netlink route"
    if a.startswith("NETLINK"):
        return "netlink other"
    if a.startswith("UNIX"):
        return "unix socket"
    if a.startswith("UDP") or a.startswith("TCP"):
        return "inet socket"
    if a.startswith("pipe"):
        return "pipe"
    if a.startswith("/"):
        return "file"
    return a.split(":")[0]


FILE_CALLS = {"openat", "open", "newfstatat", "statx", "stat", "lstat", "fstat", "getdents64",
              "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
              "mkdir", "mkdirat", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
              "flock", "fcntl", "lseek", "ftruncate", "fchmod", "fchown", "chmod"}
IO_CALLS = {"read", "write", "pread64", "pwrite64", "readv", "writev", "sendmsg", "recvmsg",
            "sendto", "recvfrom", "sendmmsg", "recvmmsg"}


NETLINK_KIND = {"NETLINK_NETFILTER": "netlink nftables", "NETLINK_ROUTE": "netlink route"}


def analyze_strace(text):
    """Per process: syscalls by kind (count, ms), netlink bytes received, files opened.

    A netlink socket's protocol is taken from its socket() call (strace cannot name the
    protocol of a socket in another namespace): sockets by (pid, fd), and by fd alone for the
    threads of a Go or Rust process, which share the descriptor table."""
    procs = {}
    execs = {}
    sock_by_pid, sock_by_fd = {}, {}
    for line in text.splitlines():
        if "+++ exited" in line or "--- SIG" in line or "+++ killed" in line:
            m = re.match(r"^(\d+)\s+([\d.]+)", line)
            if m and "+++" in line:
                procs.setdefault(int(m.group(1)), {}).setdefault("end", float(m.group(2)))
                procs[int(m.group(1))]["end"] = float(m.group(2))
            continue
        m = STRACE_LINE.match(line)
        if not m:
            continue
        pid, t = int(m.group(1)), float(m.group(2))
        name = m.group(3) or m.group(4)
        rest = m.group(5)
        if "<unfinished ...>" in rest:
            p = procs.setdefault(pid, {})
            p.setdefault("start", t)
            p["pending_args"] = rest
            continue
        args = procs.get(pid, {}).pop("pending_args", "") if m.group(3) else rest
        dm = re.search(r"= (-?\d+|0x[0-9a-f]+|\?)(?: [A-Z]+ \([^)]*\))?.*<([\d.]+)>$", rest)
        dur = float(dm.group(2)) if dm else 0.0
        ret = dm.group(1) if dm else "?"
        p = procs.setdefault(pid, {})
        p.setdefault("start", t)
        p["last"] = t + dur
        if name == "execve" and ret == "0":
            em = re.match(r'"([^"]+)"', args)
            if em:
                execs[pid] = Path(em.group(1)).name
                p["exec"] = t
        kind = name
        if name == "socket" and ret.isdigit() and "AF_NETLINK" in args:
            proto = args.rsplit(",", 1)[-1].split(")")[0].strip()
            k = NETLINK_KIND.get(proto, "netlink other")
            sock_by_pid[(pid, int(ret))] = k
            sock_by_fd[int(ret)] = k
        if name in IO_CALLS or name == "close":
            fdm = re.match(r"\s*(\d+)", args)
            fk = fd_kind(args)
            if fk.startswith("netlink") and fdm:
                fd = int(fdm.group(1))
                fk = sock_by_pid.get((pid, fd), sock_by_fd.get(fd, fk))
            kind = f"{name} ({fk})" if fk else name
            if fk.startswith("netlink") and name in ("recvmsg", "recvfrom") and ret.isdigit():
                p.setdefault("netlink_bytes_in", collections.Counter())[fk] += int(ret)
        elif name in ("fsync", "fdatasync", "sync_file_range", "syncfs"):
            kind = "fsync"
        elif name in FILE_CALLS:
            kind = f"{name} (files)"
        c = p.setdefault("calls", collections.Counter())
        c[kind] += 1
        d = p.setdefault("ms", collections.Counter())
        d[kind] += dur * 1000
        if name == "openat" and ret.isdigit():
            p["opens"] = p.get("opens", 0) + 1
            if '"/proc/sys/' in args or "</proc/sys/" in rest:
                p["procsys_opens"] = p.get("procsys_opens", 0) + 1
    out = []
    for pid, p in procs.items():
        if pid not in execs:
            continue  # threads, and the processes that never exec'd a plugin
        start, end = p.get("exec", p.get("start")), p.get("end", p.get("last"))
        out.append({
            "pid": pid, "exe": execs[pid], "wall_ms": (end - start) * 1000 if start and end
            else None, "syscalls": sum(p.get("calls", {}).values()),
            "syscall_ms": sum(p.get("ms", {}).values()), "opens": p.get("opens", 0),
            "procsys_opens": p.get("procsys_opens", 0),
            "netlink_bytes_in": dict(p.get("netlink_bytes_in", {})),
            "top": [(k, p["calls"][k], round(v, 3)) for k, v in p.get("ms", {}).most_common(8)],
            "counts": dict(p.get("calls", {}))})
    return {"processes": sorted(out, key=lambda e: e["pid"])}


def chain_wall(perf):
    """The plugins' summed wall time in one profiled call (the driver left out)."""
    return sum(p["wall_ms"] for p in perf.get("processes", []) if p["parent"] in
               ("", "tether-cnitool") and p["exe"] != "tether-cnitool")


def median_repeat(repeats):
    ok = [r for r in repeats if "processes" in r]
    if not ok:
        return repeats[0]
    return sorted(ok, key=chain_wall)[len(ok) // 2]


class Profiler:
    """Profiles one extra container per side: the growth run's netns count[side] ("first", with
    one container on the bridge) or count[side] + 1 ("last", with count[side])."""

    def __init__(self, bench, netns, count, repeats=3):
        self.bench = bench
        self.netns = netns
        self.count = count
        self.repeats = repeats

    def run(self, label, sides):
        """perf: `repeats` ADD/DEL pairs (tether's calls are short and the machine is loaded:
        the report shows the repeat with the median wall time); strace: one pair."""
        out = {}
        for side in sides:
            if side.floor:
                continue
            idx = self.count[side.name] + (0 if label == "first" else 1)
            netns = self.netns[side.name][idx]
            res = {"containers": 1 if label == "first" else self.count[side.name],
                   "add": {"perf_repeats": []}, "del": {"perf_repeats": []}}
            for _ in range(self.repeats if side.name == "tether" else 1):
                for op in ("add", "del"):
                    res[op]["perf_repeats"].append(self.perf(side, op, netns, idx))
            for op in ("add", "del"):
                reps = res[op].pop("perf_repeats")
                res[op]["perf"] = median_repeat(reps)
                res[op]["perf_repeat_walls_ms"] = [round(chain_wall(r), 2) for r in reps]
                res[op]["strace"] = self.strace(side, op, netns, idx)
            out[side.name] = res
            print(f"profile {label} ({res['containers']} containers): {side.name} done",
                  flush=True)
        return out

    def command(self, side, op, netns, idx):
        """argv, stdin and environment of one one-shot call of `side` for container idx."""
        b = self.bench
        port = 40000 + idx
        name = f"gc{idx}"
        env = dict(b.driver_env)
        if hasattr(side, "conflist"):
            env.update(side.cli_env(netns, port, name))
            return [str(b.bin / "tether-cnitool"), op, side.net, f"/run/netns/{netns}"], None, env
        return side.argv(op, netns), json.dumps(side.options(netns, idx, port, name)), env

    def perf(self, side, op, netns, idx):
        cmd, stdin, env = self.command(side, op, netns, idx)
        data = self.bench.work / f"perf-{side.name}-{op}.data"
        p = subprocess.run(["ip", "netns", "exec", side.hostns, "perf", "record", "-q", "-a",
                            "-g", "-o", str(data), *PERF_EVENTS, "--", *cmd],
                           input=stdin, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            return {"error": f"perf record: {p.stderr.strip()[-300:]} {p.stdout.strip()[-300:]}"}
        script = subprocess.run(["perf", "script", "-i", str(data), "-F",
                                 "comm,pid,tid,cpu,time,event,trace,ip,sym"],
                                capture_output=True, text=True).stdout
        data.unlink()
        return analyze_perf(script, cmd[0])

    def strace(self, side, op, netns, idx):
        cmd, stdin, env = self.command(side, op, netns, idx)
        log = self.bench.work / f"strace-{side.name}-{op}.log"
        p = subprocess.run(["ip", "netns", "exec", side.hostns, "strace", "-f", "-T", "-yy",
                            "-ttt", "-qq", "-s", "0", "-e", "verbose=none", "-o", str(log),
                            *cmd],
                           input=stdin, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            return {"error": f"strace: {p.stderr.strip()[-300:]} {p.stdout.strip()[-300:]}"}
        text = log.read_text()
        log.unlink()
        return analyze_strace(text)
