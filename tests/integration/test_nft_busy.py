"""A busy node never fails a call (issue #15): bridge (+ host-local) and portmap ADD/DEL, 8 at a
time, while another program rewrites a table of its own 100 times a second and a CPU hog keeps
every core busy. No call may fail, and everything must be gone afterwards.

Everything runs in a namespace H that plays the host, so the other writer's commits churn only
this test's ruleset (a sibling test run on this machine never sees them) and H's deletion takes
whatever a failure would have left with it; the assertions check that nothing was left before.
"""
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import RUN, Netns, run_plugin, sh

CYCLES = 100
PARALLEL = 8
WRITES_PER_SECOND = 100
NET = 64 + int(RUN[1:3], 16) % 128  # 10.<NET>.0.0/16 (host-local takes /24s from it below)
SUBNET = f"10.{NET}.{int(RUN[3:5], 16)}.0/24"


class ForeignWriter:
    """`nft -i` in netns `ns`: one transaction every 1/rate s, each flushing table ip <table> and
    writing it anew with a rule that names the transaction's number."""

    def __init__(self, ns, table, rate):
        self.ns, self.table, self.rate = ns, table, rate
        self.count = 0
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "nft", "-i"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"add table ip {table}\n")
        self.done = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    @staticmethod
    def addr(n):
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def _write(self):
        t = self.table
        due = time.monotonic()
        while not self.done.is_set():
            self.count += 1
            self.proc.stdin.write(f"flush table ip {t}; add chain ip {t} c; "
                                  f"add rule ip {t} c ip saddr {self.addr(self.count)} counter\n")
            self.proc.stdin.flush()
            due += 1.0 / self.rate
            time.sleep(max(0.0, due - time.monotonic()))

    def stop(self):
        """Stops writing; returns (transactions, seconds) once nft has applied every one."""
        self.done.set()
        self.thread.join()
        seconds = time.monotonic() - self.started
        self.proc.stdin.close()
        errors = self.proc.stderr.read()
        assert self.proc.wait(timeout=30) == 0 and errors == "", errors
        last = self.ns.run("nft", "list", "table", "ip", self.table)
        assert f"ip saddr {self.addr(self.count)} counter" in last, last
        return self.count, seconds


def configs(tmp):
    bridge = {"cniVersion": "1.0.0", "name": f"{RUN}-busy", "type": "bridge",
              "bridge": f"{RUN}b", "isGateway": True, "ipMasq": True, "macspoofchk": True,
              "nftTable": f"{RUN}-br", "stateDir": str(tmp / "bridge"),
              "ipam": {"type": "host-local", "dataDir": str(tmp / "ipam"),
                       "ranges": [[{"subnet": SUBNET}]]}}
    portmap = {"cniVersion": "1.0.0", "name": f"{RUN}-busy", "type": "portmap",
               "nftTable": f"{RUN}-pm", "stateDir": str(tmp / "portmap")}
    return bridge, portmap


def cycle(h, tmp, i):
    """One container's ADD then DEL through both plugins, as a runtime runs them; returns the
    failed steps."""
    bridge, portmap = configs(tmp)
    c = Netns(f"{RUN}-b{i}")
    cid = f"{RUN}-busy{i}"
    failed = []
    try:
        def call(plugin, command, conf):
            res = run_plugin(plugin, command, conf, containerid=cid, netns=c.path, ns=h.name)
            if res.rc != 0:
                failed.append((plugin, command, res))
            return res

        added = call("bridge", "ADD", bridge)
        pm = dict(portmap, prevResult=added.json, runtimeConfig={"portMappings": [
            {"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 20000 + i, "containerPort": 53, "protocol": "udp"}]})
        result = call("portmap", "ADD", pm).json if added.rc == 0 else added.json
        call("portmap", "DEL", dict(pm, prevResult=result))
        call("bridge", "DEL", dict(bridge, prevResult=added.json))
    finally:
        c.delete()
    return failed


def set_elements(h, family, table):
    """{set or map name: its elements} of a table in netns h."""
    objects = json.loads(h.run("nft", "-j", "list", "table", family, table))["nftables"]
    return {o[kind]["name"]: o[kind].get("elem", [])
            for o in objects for kind in ("set", "map") if kind in o}


def test_parallel_add_del_with_foreign_commits_and_cpu_hog(netns, tmpdir_run):
    h = netns("h")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    writer = ForeignWriter(h, f"{RUN}-other", WRITES_PER_SECOND)
    try:
        start = time.monotonic()
        with ThreadPoolExecutor(PARALLEL) as pool:
            failures = [f for fs in pool.map(lambda i: cycle(h, tmpdir_run, i), range(CYCLES))
                        for f in fs]
        seconds = time.monotonic() - start
    finally:
        for p in hogs:
            p.kill()
            p.wait()
        writes, writing = writer.stop()
    print(f"{CYCLES} ADD/DEL cycles, {PARALLEL} at a time, in {seconds:.1f} s; "
          f"the other writer committed {writes} times in {writing:.1f} s")
    assert failures == []
    assert writes / writing >= WRITES_PER_SECOND / 2  # the load was there

    # Nothing left: no elements, state files, leases or links.
    for family, table in (("inet", f"{RUN}-br"), ("bridge", f"{RUN}-br"), ("inet", f"{RUN}-pm")):
        left = {k: v for k, v in set_elements(h, family, table).items() if v}
        # Bridge-level elements stay with the bridge (README); attachments' elements must not.
        left.pop("bridges", None)
        left.pop("same_bridge", None)
        assert left == {}, (family, table, left)
    assert list(tmpdir_run.rglob("*.json")) == []  # bridge's and portmap's state files
    leases = [p.name for p in (tmpdir_run / "ipam" / f"{RUN}-busy").iterdir()
              if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")]
    assert leases == []
    links = [l.split()[0] for l in h.run("ip", "-br", "link").splitlines()]
    assert sorted(links) == sorted(["lo", f"{RUN}b"]), links
    assert not [n for n in sh("ip", "netns", "list").split() if n.startswith(f"{RUN}-b")]
