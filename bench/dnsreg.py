"""Registration cost of the DNS daemon as it fills: the time of one control-socket `add` (and
`del`) when the daemon already holds N records, measured on the daemon itself, without
containers or namespaces.

The daemon runs with a private state dir and a high port in a private network namespace, and
listens (IP_FREEBIND) on the gateway of a few networks; every record is one container of one of
them. Reported: the median and p99 of the add/del round trips in each window of fill levels.

  python3 bench/dnsreg.py --binary build/bin/tether-dns [--records 10000] [--json out.json]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

NETWORKS = 4


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


def record(i):
    net = i % NETWORKS
    host = i // NETWORKS + 2
    addr = f"10.{200 + net}.{host // 250}.{host % 250 + 2}"
    return {"network": f"bench{net}", "containerID": f"c{i:06d}", "ifname": "eth0",
            "name": f"name{i}", "aliases": [f"alias{i}"],
            "addresses": [f"{addr}/16"], "gateways": [f"10.{200 + net}.0.1"],
            "domain": "bench.internal", "serial": i + 1}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/bin/tether-dns")
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--windows", default="1,100,1000,5000,10000")
    ap.add_argument("--json")
    a = ap.parse_args()
    windows = [int(w) for w in a.windows.split(",") if int(w) <= a.records]
    netns = f"tdr{uuid.uuid4().hex[:8]}"
    state = Path(tempfile.mkdtemp(prefix="tether-dnsreg-"))
    subprocess.run(["ip", "netns", "add", netns], check=True)
    daemon = None
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        resolv = state / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        sock = str(state / "control.sock")
        daemon = subprocess.Popen(["ip", "netns", "exec", netns, a.binary, "daemon",
                                   "--state-dir", str(state), "--port", "15353",
                                   "--resolv-conf", str(resolv), "--log-level", "warn"])
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if time.time() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.01)
        call(sock, {"op": "ping"})
        adds = {}
        for i in range(a.records):
            t0 = time.perf_counter()
            call(sock, {"op": "add", "record": record(i)})
            dt = time.perf_counter() - t0
            for w in windows:
                # The window of fill level w: the adds made with w-1 .. w-1+50 records present.
                if w - 1 <= i < w - 1 + 50:
                    adds.setdefault(w, []).append(dt)
        dels = []
        for i in range(50):
            r = record(a.records - 1 - i)
            t0 = time.perf_counter()
            call(sock, {"op": "del", "network": r["network"], "containerID": r["containerID"],
                        "ifname": "eth0"})
            dels.append(time.perf_counter() - t0)
        out = {"records": a.records,
               "add_ms": {str(w): {"median": statistics.median(v) * 1e3, "p99": pct(v, 99) * 1e3}
                          for w, v in adds.items()},
               "del_ms_at_full": {"median": statistics.median(dels) * 1e3,
                                  "p99": pct(dels, 99) * 1e3}}
        for w, v in out["add_ms"].items():
            print(f"add with {int(w) - 1:>6} records present: median {v['median']:.3f} ms  "
                  f"p99 {v['p99']:.3f} ms")
        d = out["del_ms_at_full"]
        print(f"del with {a.records} records present: median {d['median']:.3f} ms  "
              f"p99 {d['p99']:.3f} ms")
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns])
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
