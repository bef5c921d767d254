"""The DNS daemon with cluster records (issue 12): queries/s of a daemon holding 1,000 and
10,000 records of other hosts against the same daemon local-only, and registration-to-visible
latency from one host's daemon to another's.

Everything runs in one private network namespace: etcd on 127.0.0.1 (private data dir), two
daemons (nodes b1 and b2, their own state dirs and cluster files, ports 15353/15354), the
client address 10.250.0.2 on lo inside the network's subnet. The remote records are written
into etcd directly (JSON gateway transactions), as another host's daemon would have. Queries
(dnsperf, -c 1, 10 s per run) ask for the local name and for random remote names.

  python3 bench/dnscluster.py --binary build/bin/tether-dns [--json out.json]
"""
import argparse
import base64
import ctypes
import json
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ETCD = "http://127.0.0.1:23790"
PREFIX = "/benchdns"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_txn(ns, ops):
    """One gateway transaction, from inside the namespace (curl) where etcd listens."""
    body = json.dumps({"success": [{"requestPut": {"key": b64(k), "value": b64(v)}}
                                   for k, v in ops]})
    subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "-X", "POST", "--data-binary", "@-",
                    f"{ETCD}/v3/kv/txn"], input=body, text=True, check=True, capture_output=True)


def call(sock_path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall((json.dumps(request) + "\n").encode())
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise RuntimeError(reply)
    return reply


def record(cid, name, addr, gw=None, cluster=True):
    r = {"network": "benchnet", "containerID": cid, "ifname": "eth0", "name": name,
         "addresses": [f"{addr}/16"], "domain": "bench.internal", "cluster": cluster}
    if gw:
        r["gateways"] = [gw]
    return r


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)


class Bench:
    def __init__(self, binary):
        self.binary = binary
        self.ns = f"tdc{uuid.uuid4().hex[:8]}"
        self.dir = Path(tempfile.mkdtemp(prefix="tether-dnscluster-"))
        self.procs = []

    def ip(self, *args):
        subprocess.run(["ip", "netns", "exec", self.ns, *args], check=True, capture_output=True)

    def setup(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.ip("ip", "link", "set", "lo", "up")
        self.ip("ip", "addr", "add", "10.250.0.2/16", "dev", "lo")
        (self.dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        log = open(self.dir / "etcd.log", "w")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "etcd", "--name=b", f"--data-dir={self.dir}/etcd",
             f"--listen-client-urls={ETCD}", f"--advertise-client-urls={ETCD}",
             "--listen-peer-urls=http://127.0.0.1:23791",
             "--initial-advertise-peer-urls=http://127.0.0.1:23791",
             "--initial-cluster=b=http://127.0.0.1:23791", "--log-level=error"],
            stdout=log, stderr=log))
        deadline = time.time() + 15
        while True:
            p = subprocess.run(["ip", "netns", "exec", self.ns, "etcdctl", f"--endpoints={ETCD}",
                                "endpoint", "health"], capture_output=True)
            if p.returncode == 0:
                break
            if time.time() > deadline:
                raise RuntimeError("etcd did not start")
            time.sleep(0.1)

    def daemon(self, node, port, cluster=True):
        state = self.dir / node
        args = [self.binary, "daemon", "--state-dir", str(state), "--port", str(port),
                "--resolv-conf", str(self.dir / "resolv.conf"), "--log-level", "warn"]
        if cluster:
            cf = self.dir / f"{node}.json"
            cf.write_text(json.dumps({"etcd": [ETCD], "node": node, "address": "127.0.0.1",
                                      "prefix": PREFIX}))
            args += ["--cluster", str(cf)]
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *args])
        self.procs.append(p)
        sock = state / "control.sock"
        deadline = time.time() + 10
        while not sock.exists():
            if time.time() > deadline:
                raise RuntimeError(f"daemon {node} did not start")
            time.sleep(0.01)
        return p, str(sock)

    def stop(self, p):
        p.terminate()
        p.wait(timeout=10)
        self.procs.remove(p)

    def dnsperf(self, port, names, seconds):
        qfile = self.dir / "queries.txt"
        qfile.write_text("".join(f"{n} A\n" for n in names))
        out = subprocess.run(["ip", "netns", "exec", self.ns, "dnsperf", "-s", "10.250.0.1",
                              "-p", str(port), "-a", "10.250.0.2", "-d", str(qfile), "-c", "1",
                              "-l", str(seconds)], capture_output=True, text=True).stdout
        m = re.search(r"Queries per second:\s+([\d.]+)", out)
        lost = re.search(r"Queries lost:\s+(\d+)", out)
        return float(m.group(1)) if m else 0.0, int(lost.group(1)) if lost else -1

    def fill(self, start, count):
        ops = []
        for i in range(start, start + count):
            rec = record(f"r{i}", f"remote{i}", f"10.250.{1 + i // 250}.{2 + i % 250}")
            rec["node"] = "far"
            ops.append((f"{PREFIX}/dns/benchnet/far/r{i}/eth0", json.dumps(rec)))
            if len(ops) == 100:
                etcd_txn(self.ns, ops)
                ops = []
        if ops:
            etcd_txn(self.ns, ops)

    def wait_records(self, sock, n, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            nets = call(sock, {"op": "list"})["networks"]
            have = sum(len(x["containers"]) for x in nets)
            if have >= n:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the daemon never held {n} records")

    def cleanup(self):
        for p in list(self.procs):
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", self.ns])
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/bin/tether-dns")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--latency-samples", type=int, default=100)
    ap.add_argument("--json")
    a = ap.parse_args()
    b = Bench(str(Path(a.binary).resolve()))
    out = {"qps": {}}
    try:
        b.setup()
        # Local-only: no cluster, one local name.
        p, sock = b.daemon("b1", 15353, cluster=False)
        call(sock, {"op": "add", "record": record("l1", "local1", "10.250.0.10", "10.250.0.1",
                                                  cluster=False)})
        out["qps"]["local-only"] = b.dnsperf(15353, ["local1"], a.seconds)
        b.stop(p)
        p, sock = b.daemon("b1", 15353)
        call(sock, {"op": "add", "record": record("l1", "local1", "10.250.0.10", "10.250.0.1")})
        have = 0
        rnd = random.Random(1)
        for n in (1000, 10000):
            b.fill(have, n - have)
            have = n
            b.wait_records(sock, n + 1)
            out["qps"][f"{n} cluster, local name"] = b.dnsperf(15353, ["local1"], a.seconds)
            names = [f"remote{rnd.randrange(n)}" for _ in range(1000)]
            out["qps"][f"{n} cluster, remote names"] = b.dnsperf(15353, names, a.seconds)
        # Registration on b2 to visible on b1 (a UDP query loop from the client address).
        p2, sock2 = b.daemon("b2", 15354)
        # This process joins the namespace for the query loop (setns: Python 3.11 has no os.setns).
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/var/run/netns/{b.ns}") as f:
            if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("10.250.0.2", 0))
        s.settimeout(0.5)
        lat = []
        for i in range(a.latency_samples):
            name = f"late{i}"
            t0 = time.perf_counter()
            call(sock2, {"op": "add", "record": record(f"v{i}", name, f"10.250.200.{i % 250 + 2}",
                                                       "10.250.0.1")})
            while True:
                s.sendto(query(name, i), ("10.250.0.1", 15353))
                try:
                    reply = s.recv(512)
                except socket.timeout:
                    continue
                if struct.unpack(">H", reply[6:8])[0] > 0:
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"{name} never became visible")
            lat.append(time.perf_counter() - t0)
        out["register_to_visible_ms"] = {"median": statistics.median(lat) * 1e3,
                                         "p99": pct(lat, 99) * 1e3, "samples": len(lat)}
        for k, (qps, lost) in out["qps"].items():
            print(f"{k:32} {qps:10.0f} queries/s  (lost {lost})")
        v = out["register_to_visible_ms"]
        print(f"registration on b2 -> visible on b1: median {v['median']:.1f} ms, "
              f"p99 {v['p99']:.1f} ms ({v['samples']} samples)")
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
