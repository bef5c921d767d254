"""The real chain (bridge -> host-local -> portmap -> dns-sidecar) in a namespace H that plays
the host, as the fault tests drive it (test_kill9, test_disk_faults): a wrapper per plugin (a
shell script that notes its pid when it is the victim, then execs the real binary, so the pid is
the plugin's), libcni's order, and a snapshot of everything an attachment can leave behind:
links, addresses and routes in H, H's whole nftables ruleset with its set and map elements,
every file under the lab's state dirs (content for leases and state files), and the records the
DNS daemon serves.
"""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, RUN, Netns, run_plugin, sh

PLUGINS = ["bridge", "host-local", "portmap", "dns-sidecar"]
NET = 64 + int(RUN[1:3], 16) % 128
SUBNET = f"10.{NET}.{int(RUN[3:5], 16)}.0/24"
DNS_PORT = 20000 + int(RUN[1:], 16) % 20000
SURVIVORS = 2

WRAPPER = """#!/bin/sh
if [ "$KILL9_TARGET" = "{name}" ]; then (set -C; echo $$ > "$KILL9_PIDFILE") 2>/dev/null; fi
exec {real} "$@"
"""


def conflist(tmp):
    return {"cniVersion": "1.1.0", "name": f"{RUN}-k9", "plugins": [
        {"type": "bridge", "bridge": f"{RUN}k", "isGateway": True, "ipMasq": True,
         "macspoofchk": True, "nftTable": f"{RUN}-k9br", "stateDir": str(tmp / "bridge"),
         "ipam": {"type": "host-local", "dataDir": str(tmp / "ipam"),
                  "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "nftTable": f"{RUN}-k9pm", "stateDir": str(tmp / "portmap"),
         "capabilities": {"portMappings": True}},
        {"type": "dns-sidecar", "stateDir": str(tmp / "dns"), "port": DNS_PORT,
         "domainName": "k9.internal", "resolvConf": str(tmp / "resolv.conf"),
         "capabilities": {"aliases": True}}]}


class Lab:
    def __init__(self, h, tmp, suffix="", carried=False):
        """`suffix` "-crashtest": the plugins with their crash points armed. `carried`: bin/
        host-local is this build's binary itself (a link, no wrapper), so that bridge runs it in
        its own process (common/invoke.h) and a kill of bridge lands in host-local's code too."""
        self.h, self.tmp = h, tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for p in PLUGINS:
            w = self.bin / p
            if carried and p == "host-local":
                w.symlink_to(BIN / p)
                continue
            assert (BIN / f"{p}{suffix}").exists(), f"build the {p} target: it builds {p}{suffix}"
            w.write_text(WRAPPER.format(name=p, real=BIN / f"{p}{suffix}"))
            w.chmod(0o755)
        (tmp / "resolv.conf").write_text("# no upstreams\n")
        # The bridge's link-local address, and its routes, exist once the bridge is up instead
        # of a DAD period later: a snapshot taken in between would differ from the next.
        for scope in ("all", "default"):
            h.run("sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        self.cl = conflist(tmp)
        self.pidfile = tmp / "victim.pid"

    def conf(self, p, command, prev, cid, valid=None):
        c = {k: v for k, v in p.items() if k != "capabilities"}
        c.update(name=self.cl["name"], cniVersion=self.cl["cniVersion"])
        if command in ("ADD", "DEL") and p.get("capabilities", {}).get("portMappings"):
            kind, n = cid.rsplit("-", 2)[1:]
            port = 30000 + 1000 * "vscfr".index(kind) + int(n) % 1000
            c["runtimeConfig"] = {"portMappings": [
                {"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": port, "containerPort": 53, "protocol": "udp"}]}
        if command in ("ADD", "DEL") and p.get("capabilities", {}).get("aliases"):
            c["runtimeConfig"] = {"aliases": ["a" + "".join(cid.rsplit("-", 2)[1:])]}
        if prev is not None and command in ("ADD", "DEL"):
            c["prevResult"] = prev
        if valid is not None:
            c["cni.dev/valid-attachments"] = [{"containerID": v, "ifname": "eth0"} for v in valid]
        return c

    def call(self, p, command, cid, netns, prev=None, env=None, valid=None):
        """One plugin `p` of the conflist, in H."""
        return run_plugin(self.bin / p["type"], command, self.conf(p, command, prev, cid, valid),
                          containerid=cid, netns=netns, path=self.bin, env=env, ns=self.h.name,
                          bindir=self.bin)

    def chain(self, command, cid, netns, prev=None, env=None, valid=None):
        """The conflist as libcni runs it: ADD in order, each fed the previous result; DEL in
        reverse with the cached result; both stop at the first failure; GC to every plugin.
        Returns (ADD's result or None, the failed calls)."""
        order = list(reversed(self.cl["plugins"])) if command == "DEL" else self.cl["plugins"]
        failed = []
        for p in order:
            res = self.call(p, command, cid, netns, prev, env, valid)
            if res.rc != 0:
                failed.append((p["type"], command, res))
                if command != "GC":
                    return None, failed
            elif command == "ADD":
                prev = res.json
        return (prev if command == "ADD" else None), failed

    def snapshot(self):
        """Everything an attachment can leave in H and in the state dirs."""
        h = self.h
        snap = {}
        snap["links"] = sorted(l.split()[1].rstrip(":").split("@")[0]
                               for l in h.run("ip", "-o", "link", "show").splitlines())
        snap["addrs"] = sorted(" ".join(l.split()[1:4])
                               for l in h.run("ip", "-o", "addr", "show").splitlines())
        snap["routes"] = sorted(h.run("ip", "route", "show", "table", "all").splitlines() +
                                h.run("ip", "-6", "route", "show", "table", "all").splitlines())
        objs = json.loads(h.run("nft", "-j", "-s", "list", "ruleset"))["nftables"]
        ruleset = []
        for o in objs:
            if "metainfo" in o:
                continue
            (kind, body), = o.items()
            body = {k: v for k, v in body.items() if k != "handle"}
            if "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
            ruleset.append({kind: body})
        snap["nft"] = ruleset
        files = {}
        for f in sorted(self.tmp.rglob("*")):
            rel = str(f.relative_to(self.tmp))
            if rel.startswith("bin") or f.is_dir() or f.name in ("victim.pid", "trace", ".fill"):
                continue
            # Content for what names an attachment; names only for bookkeeping files (the
            # round-robin hints, the lock, the owner index's seal: host-local's README).
            if f.suffix == ".json" or (rel.startswith("ipam/") and
                                       not f.name.startswith("last_reserved") and
                                       f.name not in ("lock", "sealed")):
                files[rel] = f.read_text()
            else:
                files[rel] = None
        snap["files"] = files
        out = sh(BIN / "dns-sidecar", "list", "--state-dir", self.tmp / "dns", "--json",
                 check=False)
        try:
            records = json.loads(out)
        except json.JSONDecodeError:
            records = {"no daemon": out}
        snap["dns"] = json.dumps(records, sort_keys=True)
        return snap


def alive(pid, name):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ")[-1].split()[0] != "Z" and \
            Path(f"/proc/{pid}/comm").read_text().strip() == name
    except (FileNotFoundError, ProcessLookupError):
        return False


class Killer:
    """Waits for the target's pid, then kills it `delay` s later (or, with delay None, measures
    how long it lives)."""

    def __init__(self, pidfile, target, delay):
        self.pidfile, self.target, self.delay = pidfile, target, delay
        self.stop = threading.Event()
        self.killed = False
        self.lifetime = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                text = self.pidfile.read_text()
                if text.endswith("\n"):
                    pid = int(text)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.0003)
        else:
            return
        start = time.monotonic()
        if self.delay is None:
            while alive(pid, self.target):
                time.sleep(0.0005)
            self.lifetime = time.monotonic() - start
            return
        time.sleep(self.delay)
        if alive(pid, self.target):
            try:
                os.kill(pid, signal.SIGKILL)
                self.killed = True
            except ProcessLookupError:
                pass  # it exited between the check and the kill: not killed

    def join(self):
        self.stop.set()
        self.thread.join()


def run_armed(lab, target, delay, fn):
    lab.pidfile.unlink(missing_ok=True)
    k = Killer(lab.pidfile, target, delay)
    try:
        out = fn({"KILL9_TARGET": target, "KILL9_PIDFILE": str(lab.pidfile)})
    finally:
        k.join()
    return k, out


def diff(a, b):
    """What snapshot `a` has that `b` has not ("extra"), and the reverse ("missing")."""
    out = {}
    for k in a:
        if a[k] == b[k]:
            continue
        if isinstance(a[k], list):
            out[k] = {"extra": [x for x in a[k] if x not in b[k]],
                      "missing": [x for x in b[k] if x not in a[k]]}
        elif isinstance(a[k], dict):
            out[k] = {"extra": {f: v for f, v in a[k].items() if b[k].get(f, v) != v or f not in b[k]},
                      "missing": {f: v for f, v in b[k].items() if f not in a[k]}}
        else:
            out[k] = (a[k], b[k])
    return out


class Network:
    """The lab's network: made once with one clean ADD/DEL (bridge, tables, daemon), then
    `SURVIVORS` live attachments that every trial must leave alone. `zero` is the node with
    no attachment, `baseline` with the survivors."""

    def __init__(self, lab, netns):
        self.lab = lab
        c = Netns(f"{RUN}-cal")
        try:
            result, failed = lab.chain("ADD", f"{RUN}-c-0", c.path)
            assert failed == [], failed
            _, failed = lab.chain("DEL", f"{RUN}-c-0", c.path, prev=result)
            assert failed == [], failed
        finally:
            c.delete()
        self.zero = lab.snapshot()
        self.survivors = []
        for i in range(SURVIVORS):
            c = netns(f"s{i}")
            cid = f"{RUN}-s-{i}"
            result, failed = lab.chain("ADD", cid, c.path)
            assert failed == [], failed
            self.survivors.append((cid, c, result))
        self.baseline = lab.snapshot()
        self.del_retries = 0

    def recover(self, how, cid, c, cached):
        """The runtime's DEL (up to 3 times, then the netns goes) or, the netns gone, GC with the
        survivors valid. Returns the calls that still failed."""
        failed = []
        if how == "DEL":
            for _ in range(3):
                _, failed = self.lab.chain("DEL", cid, c.path, prev=cached)
                if not failed:
                    break
                self.del_retries += 1
            c.delete()
        else:
            c.delete()
            _, failed = self.lab.chain("GC", cid, "", valid=[s[0] for s in self.survivors])
        return failed

    def settled(self, reference):
        """diff(snapshot, reference), once the kernel is done: a deleted netns is destroyed
        asynchronously (cleanup_net), and with it the host end of a veth that GC's recovery
        left to it. Only a difference in links, addresses or routes is waited for (10 s at
        most); anything else is a leak at once."""
        deadline = time.monotonic() + 10
        while True:
            now = self.lab.snapshot()
            d = diff(now, reference)
            if not d or set(d) - {"links", "addrs", "routes"} or time.monotonic() > deadline:
                return now, d
            time.sleep(0.05)

    def residue(self):
        """What differs from the baseline (which then moves on, so each leak is told once)."""
        now, d = self.settled(self.baseline)
        self.baseline = now
        return d

    def close(self):
        """The survivors' DEL; then the node must be as with no attachment."""
        for cid, c, result in self.survivors:
            _, failed = self.lab.chain("DEL", cid, c.path, prev=result)
            assert failed == [], failed
            c.delete()
        assert self.settled(self.zero)[1] == {}



@pytest.fixture
def network(netns, tmpdir_run):
    """Factory: network(suffix, name, prepare, carried) makes a Lab under tmpdir_run/name, runs
    prepare(lab) (before anything is added: a test mounts its state dirs there), and returns
    its Network; the DNS daemons go at the end."""
    made = []

    def make(suffix="", name="", prepare=None, carried=False):
        root = tmpdir_run / name if name else tmpdir_run
        root.mkdir(exist_ok=True)
        lab = Lab(netns(f"h{name}"), root, suffix, carried)
        made.append(lab)
        if prepare:
            prepare(lab)
        return Network(lab, netns)

    yield make
    for lab in made:
        pid = lab.tmp / "dns" / "daemon.pid"
        try:
            os.kill(int(pid.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
