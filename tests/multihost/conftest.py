"""The multi-host harness: N simulated hosts on one machine (issue 11).

Layout, all named with the per-run prefix RUN and removed at the end:
  - "<RUN>-ul": the underlay, a namespace holding bridge "ul0" (192.168.50.1/24) -- the switch
    between the hosts. etcd runs in it, listening on 192.168.50.1 only, with a private data dir.
  - "<RUN>-h<i>": host i, a namespace whose "eth0" (192.168.50.<10+i>/24) is a veth into ul0.
    Each host has its own dir with cluster.json (node "h<i>", address = its eth0 address, etcd
    prefix "/<RUN>"), tether-agent's socket and state, and host-local's data dir.
Plugins run inside a host's namespace (Host.plugin); the agent they start on demand lives there
too. At the end every agent and etcd are killed (by their pids), the namespaces deleted, the
dirs removed, and the session asserts that nothing of RUN is left.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TETHER_BIN_DIR", ROOT / "build" / "bin")).resolve()
RUN = "m" + secrets.token_hex(2)
SUBNET = "192.168.50"
ETCD_ADDR = f"{SUBNET}.1"
ETCD_PORT = 2379


def sh(*cmd, check=True, ns=None, input=None):
    argv = [str(c) for c in cmd]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    p = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


class PluginResult:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        try:
            self.json = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            self.json = None

    @property
    def code(self):
        return self.json.get("code") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"PluginResult(rc={self.rc}, stdout={self.stdout!r}, stderr={self.stderr[-1500:]!r})"


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Etcd:
    """etcd in the underlay namespace; kill() and start() keep the data dir."""

    def __init__(self, ns, data_dir):
        self.ns = ns
        self.data_dir = data_dir
        self.proc = None
        self.url = f"http://{ETCD_ADDR}:{ETCD_PORT}"

    def start(self):
        peer = f"http://{ETCD_ADDR}:{ETCD_PORT + 1}"
        log = open(f"{self.data_dir}.log", "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "etcd", "--name=ul", f"--data-dir={self.data_dir}",
             f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
             f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
             f"--initial-cluster=ul={peer}", "--log-level=error"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.time() + 15
        while time.time() < deadline:
            p = subprocess.run(["ip", "netns", "exec", self.ns, "etcdctl", f"--endpoints={self.url}",
                                "--dial-timeout=300ms", "endpoint", "health"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"etcd did not start; see {self.data_dir}.log")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def ctl(self, *args):
        """etcdctl inside the underlay namespace; returns stdout."""
        return sh("etcdctl", f"--endpoints={self.url}", *args, ns=self.ns)

    def keys(self, prefix):
        out = self.ctl("get", "--prefix", "--keys-only", prefix)
        return [k for k in out.splitlines() if k]

    def get(self, key):
        out = self.ctl("get", "--print-value-only", key)
        return out.rstrip("\n") if out else None


class Host:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"h{index}"
        self.ns = f"{RUN}-{self.name}"
        self.address = f"{SUBNET}.{10 + index}"
        self.dir = Path(cluster.dir) / self.name
        self.dir.mkdir(mode=0o700)
        self.data_dir = self.dir / "networks"
        self.state_dir = self.dir / "agent"
        self.socket = self.dir / "agent.sock"
        self.cluster_file = self.dir / "cluster.json"
        self.cluster_file.write_text(json.dumps({
            "etcd": [cluster.etcd.url], "node": self.name, "address": self.address,
            "prefix": cluster.prefix, "agentSocket": str(self.socket),
            "stateDir": str(self.state_dir), "leaseTTL": 4, "timeoutMs": 1000}))
        veth = f"{RUN}{self.name}"  # the underlay side, in <RUN>-ul
        sh("ip", "netns", "add", self.ns)
        # A spare namespace to name as CNI_NETNS where a test needs no container of its own
        # (plugins refuse their own namespace there).
        self.cns = f"{RUN}-{self.name}c"
        sh("ip", "netns", "add", self.cns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", veth, "netns", cluster.ul, "type", "veth", "peer", "name", "eth0",
           "netns", self.ns)
        sh("ip", "-n", cluster.ul, "link", "set", veth, "master", "ul0", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        sh("ip", "-n", self.ns, "link", "set", "eth0", "up")

    def plugin(self, plugin, command, conf, containerid="ctr1", ifname="eth0", netns=None,
               env=None):
        """Runs a plugin inside this host's namespace (CNI_PATH = the build's bin dir)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        netns = f"/run/netns/{self.cns}" if netns is None else netns
        e.update({"CNI_COMMAND": command, "CNI_CONTAINERID": containerid, "CNI_NETNS": netns,
                  "CNI_IFNAME": ifname, "CNI_PATH": str(BIN)})
        e.update(env or {})
        t0 = time.monotonic()
        p = subprocess.run(["ip", "netns", "exec", self.ns, str(BIN / plugin)],
                           input=json.dumps(conf), capture_output=True, text=True, env=e)
        return PluginResult(p, time.monotonic() - t0)

    def agent_pid(self):
        try:
            text = (self.state_dir / "agent.pid").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text and pid_alive(int(text)) else None

    def agent(self, *args):
        """tether-agent <args> --cluster <this host's file>, in this host's namespace."""
        return sh(BIN / "tether-agent", *args, "--cluster", self.cluster_file, ns=self.ns)

    def stop_agent(self, sig=signal.SIGTERM):
        pid = self.agent_pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.time() + 10
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), f"tether-agent {pid} of {self.name} did not stop"

    def remove(self):
        self.stop_agent(signal.SIGKILL)
        for ns in (self.cns, self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=f"{RUN}-")
        self.prefix = f"/{RUN}"
        self.ul = f"{RUN}-ul"
        self.hosts = []
        sh("ip", "netns", "add", self.ul)
        sh("ip", "-n", self.ul, "link", "set", "lo", "up")
        sh("ip", "-n", self.ul, "link", "add", "ul0", "type", "bridge")
        sh("ip", "-n", self.ul, "addr", "add", f"{ETCD_ADDR}/24", "dev", "ul0")
        sh("ip", "-n", self.ul, "link", "set", "ul0", "up")
        self.etcd = Etcd(self.ul, os.path.join(self.dir, "etcd"))
        self.etcd.start()

    def add_host(self):
        h = Host(self, len(self.hosts) + 1)
        self.hosts.append(h)
        return h

    def remove(self):
        for h in self.hosts:
            h.remove()
        self.etcd.kill()
        subprocess.run(["ip", "netns", "del", self.ul], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def leftovers():
    """Everything of this run that still exists."""
    left = [n.split()[0] for n in sh("ip", "netns", "list").splitlines()
            if n.split() and n.split()[0].startswith(RUN)]
    left += [l for l in sh("ip", "-o", "link").split("\n") if f" {RUN}" in l]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"/{RUN}-" in cmd and pid_alive(int(pid)):
            left.append(f"process {pid}: {cmd}")
    left += [str(p) for p in Path(tempfile.gettempdir()).glob(f"{RUN}-*")]
    return left


@pytest.fixture
def cluster():
    """A fresh underlay with etcd and no hosts; add them with cluster.add_host()."""
    c = Cluster()
    try:
        yield c
    finally:
        c.remove()
        assert leftovers() == []


@pytest.fixture
def three_hosts(cluster):
    for _ in range(3):
        cluster.add_host()
    return cluster


@pytest.fixture(scope="session", autouse=True)
def nothing_left():
    yield
    assert leftovers() == []
