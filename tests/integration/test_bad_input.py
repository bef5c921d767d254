"""Bad input at the process level: every plugin and verb, given wrong-typed, out-of-range, huge,
truncated, deeply nested and non-UTF-8 input and a hostile environment, answers with exactly one
CNI error JSON on stdout (a positive code and a msg, the right code for the class), prints nothing
else there, does not crash or hang, and leaves nothing behind (links, nftables tables, leases,
state files with this run's prefix).

A sample of each class, not a fuzzer (tests/fuzz is for that): about 500 calls, well under a
minute. Each call has its own time limit; a hang is a failure naming the call.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, RUN, sh

PLUGINS = ["bridge", "host-local", "portmap", "dns-sidecar", "loopback"]
ATTACHMENT_VERBS = ["ADD", "DEL", "CHECK"]
ALL_VERBS = ATTACHMENT_VERBS + ["GC", "STATUS"]
CALL_LIMIT_S = 10  # per call; a plugin answers bad input in milliseconds
SLOW_S = 3         # reported as slow (and failed) beyond this

PREV = {"cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/none"}],
        "ips": [{"address": "10.250.77.2/24", "interface": 0}]}


class Lab:
    def __init__(self, tmp):
        self.tmp = tmp
        self.table = f"{RUN}-bad"
        self.state = {p: tmp / f"state-{p}" for p in PLUGINS}
        self.ipam_dir = tmp / "ipam"
        self.netns = f"/run/netns/{RUN}-bad-none"
        self.calls = 0
        self.findings = []

    def base(self, plugin):
        """A config that is valid for `plugin` but is never sent unchanged."""
        c = {"cniVersion": "1.1.0", "name": f"{RUN}bad", "type": plugin}
        ipam = {"type": "host-local", "subnet": "10.250.77.0/24", "dataDir": str(self.ipam_dir)}
        if plugin == "bridge":
            c.update(bridge=f"{RUN}bad0", nftTable=self.table,
                     stateDir=str(self.state[plugin]), ipam=ipam)
        elif plugin == "host-local":
            c.update(ipam=ipam)
        elif plugin == "portmap":
            c.update(nftTable=self.table, stateDir=str(self.state[plugin]), prevResult=PREV,
                     runtimeConfig={"portMappings": [
                         {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]})
        elif plugin == "dns-sidecar":
            c.update(stateDir=str(self.state[plugin]), domainName="bad.internal", prevResult=PREV)
        return c

    def run(self, plugin, verb, stdin, env=None):
        """Runs the binary with bytes on stdin and a bytes environment; returns (rc, out, err, s)."""
        e = {k.encode(): v.encode() for k, v in os.environ.items() if not k.startswith("CNI_")}
        e.update({b"CNI_COMMAND": verb.encode(), b"CNI_CONTAINERID": b"ctr-bad",
                  b"CNI_NETNS": self.netns.encode(), b"CNI_IFNAME": b"eth0",
                  b"CNI_PATH": str(BIN).encode()})
        for k, v in (env or {}).items():
            k = k.encode() if isinstance(k, str) else k
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v.encode() if isinstance(v, str) else v
        if isinstance(stdin, (dict, list)):
            stdin = json.dumps(stdin).encode()
        elif isinstance(stdin, str):
            stdin = stdin.encode()
        self.calls += 1
        start = time.monotonic()
        try:
            p = subprocess.run([str(BIN / plugin)], input=stdin, capture_output=True, env=e,
                               timeout=CALL_LIMIT_S)
        except subprocess.TimeoutExpired:
            return None, b"", b"", CALL_LIMIT_S
        return p.returncode, p.stdout, p.stderr, time.monotonic() - start

    def expect_error(self, what, plugin, verb, stdin, code, env=None, del_ok=False):
        """One call that must fail with `code` (a set of codes, or None for any positive code).
        With del_ok, a DEL may instead succeed with nothing on stdout: the spec wants DEL to
        clean up what it can (bridge DEL with a path that is no longer a netns, dns-sidecar DEL
        with settings it does not need); leftovers() proves nothing was made."""
        rc, out, err, took = self.run(plugin, verb, stdin, env)
        where = f"{plugin} {verb} [{what}]"
        problem = None
        if del_ok and verb == "DEL" and rc == 0 and out == b"":
            rc = "ok"
        if rc == "ok":
            pass
        elif rc is None:
            problem = f"no answer in {CALL_LIMIT_S} s"
        elif rc < 0:
            problem = f"killed by signal {-rc}: {err[-500:]!r}"
        elif rc != 1:
            problem = f"exit {rc} (expected 1), stdout {out[:300]!r}"
        elif not out.endswith(b"\n") or out.count(b"\n") != 1:
            problem = f"stdout is not one line: {out[:300]!r}"
        else:
            try:
                j = json.loads(out.decode("utf-8"))  # strict: must be valid UTF-8 JSON
            except (UnicodeDecodeError, json.JSONDecodeError) as ex:
                j, problem = None, f"stdout is not JSON ({ex}): {out[:300]!r}"
            if j is not None:
                if set(j) - {"cniVersion", "code", "msg", "details"} or "cniVersion" not in j:
                    problem = f"not a CNI error object: {j}"
                elif not isinstance(j.get("code"), int) or j["code"] <= 0:
                    problem = f"code is not a positive integer: {j}"
                elif not isinstance(j.get("msg"), str) or not j["msg"]:
                    problem = f"no msg: {j}"
                elif code is not None and j["code"] not in (code if isinstance(code, set)
                                                            else {code}):
                    problem = f"code {j['code']}, expected {code}: {str(j)[:300]}"
                elif len(out) > 16384:
                    problem = f"{len(out)} bytes of error JSON"
        if problem is None and took > SLOW_S:
            problem = f"took {took:.1f} s"
        if problem:
            self.findings.append(f"{where}: {problem}")

    def leftovers(self):
        left = [l for l in sh("ip", "-o", "link", "show").split() if l.startswith(RUN)]
        left += [t for t in sh("nft", "list", "tables", check=False).splitlines() if RUN in t]
        # host-local keeps only its lock (and last_reserved_ip, and its owner index's seal)
        # when nothing is leased.
        if self.ipam_dir.exists():
            for f in self.ipam_dir.rglob("*"):
                if f.is_file() and f.name not in ("lock", "sealed") and \
                        not f.name.startswith("last_reserved_ip"):
                    left.append(str(f))
        for p, d in self.state.items():
            if d.exists():
                left += [str(f) for f in d.rglob("*.json")]
        return left


@pytest.fixture
def lab(tmpdir_run):
    lab = Lab(tmpdir_run)
    yield lab
    for d in list(lab.state.values()):
        pidfile = d / "daemon.pid"
        pid = pidfile.read_text().split() if pidfile.exists() else []
        if pid:  # a dns-sidecar daemon started by a call that should have failed
            subprocess.run(["kill", pid[0]], capture_output=True)
    subprocess.run(["nft", "delete", "table", "inet", lab.table], capture_output=True)
    subprocess.run(["ip", "link", "del", f"{RUN}bad0"], capture_output=True)


def deep(n):
    return "[" * n + "]" * n


# Per plugin: a key that must be of another type, and a value out of range (both error 7).
WRONG_TYPED = {
    "bridge": {"mtu": "1500"},
    "host-local": {"ipam": {"type": "host-local", "subnet": 5}},
    "portmap": {"runtimeConfig": {"portMappings": "8080:80"}},
    "dns-sidecar": {"domainName": 5},
    "loopback": {"cniVersion": 1.1},
}
OUT_OF_RANGE = {
    "bridge": {"mtu": 99999999999},
    "host-local": {"ipam": {"type": "host-local", "subnet": "10.250.77.0/99"}},
    "portmap": {"runtimeConfig": {"portMappings": [
        {"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]}},
    "dns-sidecar": {"port": 0},
    "loopback": {"cniVersion": "99.0.0"},
}
# Lists with no business being long, far beyond each cap (README of each plugin).
HUGE_LISTS = {
    "bridge": {"vlan": 0, "vlanTrunk": [{"id": 1 + i % 4000} for i in range(300000)]},
    "host-local": {"ipam": {"type": "host-local", "dataDir": "/nonexistent",
                            "ranges": [[{"subnet": "10.250.77.0/24"}]] * 100000}},
    "portmap": {"runtimeConfig": {"portMappings": [
        {"hostPort": 1 + i % 65535, "containerPort": 80, "protocol": "tcp"}
        for i in range(100000)]}},
    "dns-sidecar": {"runtimeConfig": {"aliases": {f"{RUN}bad": ["a"] * 100000}}},
    "loopback": None,
}


def test_bad_config_every_plugin_and_verb(lab):
    for plugin in PLUGINS:
        base = lab.base(plugin)
        text = json.dumps(base)
        cases = [
            ("truncated", text[: len(text) // 2], 6),
            ("empty stdin", "", 6),
            ("not an object", "[1,2]", 6),
            ("non-UTF-8 byte in a string", text.encode().replace(b'"1.1.0"', b'"1.1.\xff"', 1), 6),
            ("10k-deep nesting in args", text[:-1] + ', "args": ' + deep(10000) + "}", 7),
            ("65-deep nesting", text[:-1] + ', "x": ' + deep(65) + "}", 7),
            ("1 MB network name", dict(base, name="a" * (1 << 20)), 7),
            ("1 MB string value", dict(base, cniVersion="1" * (1 << 20)), 1),
            ("wrong-typed name", dict(base, name=["x"]), 7),
            ("wrong-typed", {**base, **WRONG_TYPED[plugin]}, 7),
            ("out of range", {**base, **OUT_OF_RANGE[plugin]}, 7 if plugin != "loopback" else 1),
        ]
        if HUGE_LISTS[plugin]:
            cases.append(("huge list", {**base, **HUGE_LISTS[plugin]}, 7))
        for what, stdin, code in cases:
            plugin_level = what in ("wrong-typed", "out of range", "huge list")
            for verb in ALL_VERBS:
                if plugin_level and verb == "STATUS" and plugin in ("portmap", "dns-sidecar"):
                    continue  # STATUS reads no runtimeConfig/per-container settings
                lab.expect_error(what, plugin, verb, stdin, code, del_ok=plugin_level)
    # GC's list of valid attachments is capped for every plugin that reads it.
    for plugin in ["bridge", "portmap", "dns-sidecar"]:
        conf = dict(lab.base(plugin), **{"cni.dev/valid-attachments": [
            {"containerID": f"c{i}", "ifname": "eth0"} for i in range(100000)]})
        lab.expect_error("100k valid-attachments", plugin, "GC", conf, 7)
    assert lab.findings == [], "\n".join(lab.findings)
    assert lab.leftovers() == []
    print(f"bad config: {lab.calls} calls")


def test_hostile_environment_every_plugin(lab, tmpdir_run):
    fifo = tmpdir_run / "fifo"
    os.mkfifo(fifo)
    regular = tmpdir_run / "regular"
    regular.write_text("")
    netns_cases = [
        ("CNI_NETNS a FIFO", str(fifo)),
        ("CNI_NETNS a regular file", str(regular)),
        ("CNI_NETNS a directory", str(tmpdir_run)),
        ("CNI_NETNS another namespace type", "/proc/self/ns/uts"),
        ("CNI_NETNS missing", f"/run/netns/{RUN}-missing"),
    ]
    env_cases = [
        ("CNI_CONTAINERID not UTF-8", {"CNI_CONTAINERID": b"\xff\xfe"}, 4),
        ("CNI_COMMAND not UTF-8", {"CNI_COMMAND": b"CHE\xffCK"}, 4),
        ("CNI_IFNAME too long", {"CNI_IFNAME": "eth0123456789abc"}, 4),
        ("CNI_IFNAME with /", {"CNI_IFNAME": "eth/0"}, 4),
        ("CNI_IFNAME not UTF-8", {"CNI_IFNAME": b"eth\xff"}, 4),
        ("CNI_NETNS not UTF-8", {"CNI_NETNS": b"/run/netns/\xff"}, 4),
        ("CNI_ARGS malformed", {"CNI_ARGS": "a;b"}, 4),
        ("CNI_ARGS not UTF-8", {"CNI_ARGS": b"\xff=1"}, 4),
        ("CNI_ARGS 100 kB", {"CNI_ARGS": "X=" + "a" * 100000}, 4),
        ("CNI_PATH missing", {"CNI_PATH": None}, 4),
    ]
    for plugin in PLUGINS:
        base = lab.base(plugin)
        for what, env, code in env_cases:
            conf = base
            if what in ("CNI_ARGS not UTF-8", "CNI_ARGS 100 kB") and \
                    plugin in ("portmap", "dns-sidecar", "loopback"):
                # These ignore unknown CNI_ARGS (meant for other plugins in the chain): the
                # bytes must still pass the skel, which then meets a config error of theirs.
                conf, code = {**base, **WRONG_TYPED[plugin]}, 7
            for verb in ATTACHMENT_VERBS:
                if what == "CNI_COMMAND not UTF-8" and verb != "ADD":
                    continue
                lab.expect_error(what, plugin, verb, conf, code, env, del_ok=(code == 7))
        # Plugins that enter the netns refuse each of these with 8. The others never open it,
        # only the skel's check that it is not the plugin's own (which blocked on a FIFO): they
        # get a config error of their own after it, proving the check returned.
        enters = plugin in ("bridge", "loopback")
        conf = base if enters else {**base, **WRONG_TYPED[plugin]}
        if plugin == "bridge":
            conf = dict(base, prevResult=PREV)  # CHECK needs one before it looks at the netns
        for what, path in netns_cases:
            for verb in ATTACHMENT_VERBS:
                if enters and what == "CNI_NETNS missing" and verb == "DEL":
                    continue  # DEL of a gone netns succeeds (the spec); test_bridge covers it
                code = 8 if enters else 7
                if plugin == "bridge" and verb == "CHECK":
                    code = {8, 101}  # IPAM's CHECK runs first, as in the reference: no lease
                lab.expect_error(what, plugin, verb, conf, code, {"CNI_NETNS": path},
                                 del_ok=plugin != "loopback")
    assert lab.findings == [], "\n".join(lab.findings)
    assert lab.leftovers() == []
    assert lab.calls > 150
    print(f"hostile environment: {lab.calls} calls")
