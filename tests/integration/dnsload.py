#!/usr/bin/python3
"""DNS load for the attack tests and the soak: each mode runs as its own process, inside a
container namespace (`ip netns exec <ns> python3 dnsload.py <mode> ...`), and prints one JSON
object on its last line (tcpidle also prints progress lines before it).

  good      paced queries for known names, each timed from send to reply: the latencies, the
            lost and the wrong answers. The measuring client: one query at a time, its own
            random IDs, stray or late replies skipped, a lost one counted at the timeout.
  udpflood  UDP queries as fast as one process sends them, from every address of --sources
            (in scope) and --outside (outside every network), counting replies per kind.
  tcpidle   --count connections that never send a byte, held; reports how many the daemon
            has closed, every second.
  pipeline  one TCP connection that writes queries for --seconds and never reads.
  fwdflood  --count distinct queries that the daemon forwards, sent at once; the rcodes and
            how fast each came back.
  upstream  fake upstream servers, one behaviour per address (UDP and TCP): silent, garbage,
            wrongq (another question), oversize, truncate (TC over UDP, full over TCP), good.
"""
import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time


def query(name, qtype=1, qid=None, edns=None):
    qid = random.randrange(65536) if qid is None else qid
    m = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.rstrip(".").split("."):
        m += bytes([len(label)]) + label.encode()
    m += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        m += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return qid, m


def skip_name(m, i):
    while True:
        n = m[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def parse(m):
    """(id, rcode, tc, [A addresses]) of a reply; None when it does not parse."""
    try:
        qid, flags, qd, an = struct.unpack(">HHHH", m[:8])
        i = 12
        for _ in range(qd):
            i = skip_name(m, i) + 4
        addrs = []
        for _ in range(an):
            i = skip_name(m, i)
            t, _c, _ttl, ln = struct.unpack(">HHIH", m[i:i + 10])
            i += 10
            if t == 1 and ln == 4:
                addrs.append(socket.inet_ntoa(m[i:i + 4]))
            i += ln
        return qid, flags & 0xF, bool(flags & 0x0200), sorted(addrs)
    except (struct.error, IndexError):
        return None


def recv_tcp(s, deadline):
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
        s.settimeout(max(deadline - time.perf_counter(), 0.001))
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    return buf[2:2 + struct.unpack(">H", buf[:2])[0]]


def good(a):
    names = [n.split("=", 1) for n in a.names.split(",")]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lat, lost, wrong, errors = [], 0, 0, []
    start = time.perf_counter()
    for k in range(a.count):
        # Paced: query k goes at start + k * interval, whatever the earlier ones took.
        time.sleep(max(start + k * a.interval / 1000 - time.perf_counter(), 0))
        name, want = names[k % len(names)]
        tcp = a.tcp_every and k % a.tcp_every == a.tcp_every - 1
        qid, m = query(name)
        t0 = time.perf_counter()
        deadline = t0 + a.timeout
        got = None
        try:
            if tcp:
                with socket.create_connection((a.server, a.port), timeout=a.timeout) as s:
                    s.sendall(struct.pack(">H", len(m)) + m)
                    r = recv_tcp(s, deadline)
                    got = parse(r) if r else None
            else:
                u.sendto(m, (a.server, a.port))
                while got is None:
                    left = deadline - time.perf_counter()
                    if left <= 0 or not select.select([u], [], [], left)[0]:
                        break
                    r = parse(u.recv(4096))
                    if r and r[0] == qid:  # a late reply to an earlier query is skipped
                        got = r
        except OSError as e:
            errors.append(f"{'tcp' if tcp else 'udp'} {name}: {e}")
        t1 = time.perf_counter()
        if got is None:
            lost += 1
            lat.append(a.timeout * 1000)
            continue
        lat.append((t1 - t0) * 1000)
        if got[3] != sorted(want.split("+")):
            wrong += 1
            errors.append(f"{name}: {got}")
    out = {"latencies": [round(x, 3) for x in lat]} if a.raw else {}
    lat.sort()
    p99 = lat[max(0, -(-99 * len(lat) // 100) - 1)]
    out.update({"n": a.count, "lost": lost, "wrong": wrong, "p50": lat[len(lat) // 2],
                "p99": p99, "max": lat[-1], "errors": errors[:10]})
    print(json.dumps(out))


def udpflood(a):
    socks = []
    for kind, addrs in (("in", a.sources), ("out", a.outside)):
        for addr in filter(None, addrs.split(",")):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((addr, 0))
            s.setblocking(False)
            socks.append((kind, s))
    names = a.names.split(",")
    sent = {"in": 0, "out": 0}
    recv = {"in": 0, "out": 0}
    poller = select.epoll()
    by_fd = {s.fileno(): (kind, s) for kind, s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)

    def drain(timeout):
        for fd, _ in poller.poll(timeout):
            kind, s = by_fd[fd]
            while True:
                try:
                    s.recv(4096)
                    recv[kind] += 1
                except BlockingIOError:
                    break

    t0 = time.monotonic()
    end = t0 + a.seconds
    k = 0
    while time.monotonic() < end:
        if a.rate:  # at most --rate queries a second in all
            time.sleep(max(k / a.rate - (time.monotonic() - t0), 0))
        for kind, s in socks:
            k += 1
            # Local names (cached), random missing names under the domain (each a new cache
            # entry), random names elsewhere (not forwardable: SERVFAIL, never cached).
            r = k % 3
            name = names[k % len(names)] if r == 0 else \
                f"x{random.randrange(1 << 30)}.{a.domain}" if r == 1 else f"y{random.randrange(1 << 30)}.example"
            try:
                s.sendto(query(name)[1], (a.server, a.port))
                sent[kind] += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        drain(0)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        drain(0.1)
    print(json.dumps({"sent": sent, "recv": recv, "qps": round(sum(sent.values()) / a.seconds)}))


def tcpidle(a):
    conns = []
    refused = 0
    t0 = time.monotonic()
    for _ in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((a.server, a.port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        conns.append(s)
    poller = select.epoll()
    for s in conns:
        poller.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    closed = set()

    def poll(timeout):
        for fd, _ in poller.poll(timeout):
            closed.add(fd)
            poller.unregister(fd)

    poll(0.5)
    print(json.dumps({"opened": len(conns), "refused": refused, "closed": len(closed),
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)
    end = time.monotonic() + a.hold
    while time.monotonic() < end and len(closed) < len(conns):
        poll(1)
        print(json.dumps({"t": round(time.monotonic() - t0, 1), "closed": len(closed)}),
              flush=True)
    print(json.dumps({"opened": len(conns), "closed": len(closed),
                      "t": round(time.monotonic() - t0, 1)}), flush=True)


def pipeline(a):
    s = socket.create_connection((a.server, a.port), timeout=5)
    s.setblocking(False)
    msgs = b""
    for k in range(1000):
        m = query(a.name)[1]
        msgs += struct.pack(">H", len(m)) + m
    written = 0
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        try:
            written += s.send(msgs)
        except BlockingIOError:
            select.select([], [s], [], 0.05)
        except OSError:
            break  # closed by the daemon
    print(json.dumps({"written": written}), flush=True)
    time.sleep(a.linger)


def fwdflood(a):
    """--count forwarded queries, from each address of --sources in turn (default: one socket
    on any address)."""
    socks = []
    for addr in (a.sources.split(",") if a.sources else [""]):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        u.bind((addr, 0))
        socks.append(u)
    sent = {}
    rcodes, fast = {}, {}

    def take(timeout):
        ready = select.select(socks, [], [], timeout)[0]
        for u in ready:
            r = parse(u.recv(4096))
            if r and r[0] in sent:
                rc = str(r[1])
                rcodes[rc] = rcodes.get(rc, 0) + 1
                if time.perf_counter() - sent.pop(r[0]) < 0.5:
                    fast[rc] = fast.get(rc, 0) + 1
        return bool(ready)

    # In bursts of 50, the replies so far read in between: neither side's socket overflows.
    for k in range(a.count):
        qid, m = query(f"f{k}-{random.randrange(1 << 30)}.{a.zone}", qid=k % 65536)
        socks[k % len(socks)].sendto(m, (a.server, a.port))
        sent[qid] = time.perf_counter()
        if k % 50 == 49:
            while take(0):
                pass
            time.sleep(0.002)
    deadline = time.perf_counter() + a.wait
    while sent and time.perf_counter() < deadline:
        take(max(deadline - time.perf_counter(), 0))
    print(json.dumps({"sent": a.count, "rcodes": rcodes, "within_500ms": fast,
                      "unanswered": len(sent)}))


def upstream(a):
    """Serves until killed. Behaviours by address, for UDP and TCP alike (except truncate)."""
    modes = dict(kv.split("=") for kv in a.addrs.split(","))
    udp, tcp = {}, {}
    for mode, addr in modes.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 53))
        udp[s.fileno()] = (mode, s)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, 53))
        t.listen(128)
        tcp[t.fileno()] = (mode, t)
    held = []

    def answer(mode, m, over_tcp):
        qid = m[:2]
        qend = skip_name(m, 12) + 4
        question = m[12:qend]
        if mode == "silent":
            return None
        if mode == "garbage":  # the right ID, then noise (a header's worth at least)
            return qid + os.urandom(random.randrange(10, 300))
        if mode == "wrongq":  # a well-formed reply to another question
            other = b"\x05other\x07example\x00" + struct.pack(">HH", 1, 1)
            return qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + other + \
                b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.66")
        count = 1
        flags = 0x8180
        if mode == "oversize" or (mode == "truncate" and over_tcp):
            count = 250  # 250 A records: 4,000+ bytes, whatever the client's buffer
        elif mode == "truncate":
            count, flags = 0, 0x8380
        rr = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) +
                      bytes([192, 0, 2, 1 + i % 250]) for i in range(count))
        return qid + struct.pack(">HHHHH", flags, 1, count, 0, 0) + question + rr

    poller = select.epoll()
    for fd in list(udp) + list(tcp):
        poller.register(fd, select.EPOLLIN)
    print("serving", flush=True)
    while True:
        for fd, _ in poller.poll(1):
            if fd in udp:
                mode, s = udp[fd]
                m, peer = s.recvfrom(4096)
                r = answer(mode, m, False)
                if r is not None:
                    s.sendto(r, peer)
            elif fd in tcp:
                mode, t = tcp[fd]
                c, _ = t.accept()
                c.settimeout(2)
                try:
                    m = recv_tcp(c, time.perf_counter() + 2)
                    r = answer(mode, m, True) if m else None
                    if r is None:
                        held.append(c)  # never answered, never closed
                        continue
                    c.sendall(struct.pack(">H", len(r)) + r)
                except OSError:
                    pass
                c.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    for mode in ("good", "udpflood", "tcpidle", "pipeline", "fwdflood"):
        s = sub.add_parser(mode)
        s.add_argument("--server", required=True)
        s.add_argument("--port", type=int, required=True)
        if mode == "good":
            s.add_argument("--names", required=True, help="name=ip[+ip],...")
            s.add_argument("--count", type=int, default=200)
            s.add_argument("--interval", type=float, default=10, help="ms between queries")
            s.add_argument("--timeout", type=float, default=1.0)
            s.add_argument("--tcp-every", type=int, default=0)
            s.add_argument("--raw", action="store_true", help="also every latency")
        elif mode == "udpflood":
            s.add_argument("--sources", default="")
            s.add_argument("--outside", default="")
            s.add_argument("--names", required=True)
            s.add_argument("--domain", required=True)
            s.add_argument("--seconds", type=float, default=5)
            s.add_argument("--rate", type=float, default=0, help="queries/s; 0: flat out")
        elif mode == "tcpidle":
            s.add_argument("--count", type=int, required=True)
            s.add_argument("--hold", type=float, default=15)
        elif mode == "pipeline":
            s.add_argument("--name", required=True)
            s.add_argument("--seconds", type=float, default=3)
            s.add_argument("--linger", type=float, default=0)
        elif mode == "fwdflood":
            s.add_argument("--count", type=int, required=True)
            s.add_argument("--zone", default="example")
            s.add_argument("--wait", type=float, default=7)
            s.add_argument("--sources", default="", help="addr,...: the sockets' addresses")
    s = sub.add_parser("upstream")
    s.add_argument("--addrs", required=True, help="mode=addr,...")
    a = p.parse_args()
    random.seed()
    globals()[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
