"""Shared fixtures for the integration tests: the built binaries, run as real processes, in real
network namespaces that the tests create and remove.

Everything a test creates carries the per-run prefix RUN (netns names, bridge and veth names,
nftables tables, state dirs), so a test never touches the host's own interfaces or ruleset, and
the session ends by asserting that nothing with that prefix is left.
"""
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TETHER_BIN_DIR", ROOT / "build" / "bin")).resolve()
REF_BIN = Path("/usr/lib/cni")
# Short: interface names are limited to 15 bytes and carry the prefix.
RUN = "t" + secrets.token_hex(2)
OTHER_RUN = re.compile(r"\bt[0-9a-f]{4}-")


def sh(*cmd, check=True, input=None, ns=None):
    """Runs a command (optionally inside netns `ns`), returns stdout as text."""
    argv = [str(c) for c in cmd]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    p = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


class PluginResult:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.json = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            self.json = None

    @property
    def code(self):
        return self.json.get("code") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"PluginResult(rc={self.rc}, stdout={self.stdout!r}, stderr={self.stderr[-2000:]!r})"


def run_plugin(plugin, command, conf=None, *, containerid="ctr1", netns="", ifname="eth0",
               args=None, path=None, env=None, stdin=None, bindir=None, ns=None):
    """Runs plugin binary `plugin` with CNI_COMMAND=`command` and `conf` (dict or str) on stdin.
    `env` entries set to None are removed from the environment."""
    bindir = Path(bindir or BIN)
    e = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    e.update({"CNI_COMMAND": command, "CNI_CONTAINERID": containerid, "CNI_NETNS": netns,
              "CNI_IFNAME": ifname, "CNI_PATH": str(path or bindir)})
    if args is not None:
        e["CNI_ARGS"] = args
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    if stdin is None:
        stdin = conf if isinstance(conf, str) else json.dumps(conf or {})
    argv = [str(bindir / plugin)]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    return PluginResult(subprocess.run(argv, input=stdin, capture_output=True, text=True, env=e))


def ok(res):
    assert res.rc == 0, res
    return res.json


class Netns:
    def __init__(self, name):
        self.name = name
        self.path = f"/run/netns/{name}"
        sh("ip", "netns", "add", name)
        sh("ip", "link", "set", "lo", "up", ns=name)

    def run(self, *cmd, check=True, input=None):
        return sh(*cmd, check=check, input=input, ns=self.name)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    """Factory: netns('a') creates <RUN>-<testcounter>a, removed after the test."""
    made = []

    def make(suffix="c"):
        ns = Netns(f"{RUN}-{len(made)}{suffix}")
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.delete()


@pytest.fixture
def tmpdir_run():
    d = tempfile.mkdtemp(prefix=f"{RUN}-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def leftovers():
    """Everything on the host that carries this run's prefix."""
    left = []
    left += [l for l in sh("ip", "netns", "list").split() if l.startswith(RUN)]
    left += [l for l in sh("ip", "-o", "link", "show").split() if l.startswith(RUN)]
    tables = sh("nft", "list", "tables", check=False)
    left += [t for t in tables.splitlines() if RUN in t]
    left += [str(p) for p in Path(tempfile.gettempdir()).glob(f"{RUN}-*")]
    return left


def nft_tables():
    return set(sh("nft", "list", "tables", check=False).splitlines())


# Tables the reference plugins create through iptables-nft (bridge's ipMasq, portmap) and never
# remove. Differential tests run the reference, so a session removes those it saw appear.
REFERENCE_TABLES = {"table ip nat", "table ip6 nat", "table ip filter", "table ip6 filter"}


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    before = nft_tables()
    yield
    for t in (nft_tables() - before) & REFERENCE_TABLES:
        fam, name = t.split()[1:3]
        subprocess.run(["nft", "delete", "table", fam, name], capture_output=True)
    # A table of tether's default names appearing means a test ran a plugin without a
    # per-run table name, i.e. touched the host's real tether state. Tables named with another
    # run's prefix belong to a test session running beside this one on the same host.
    new = sorted(t for t in nft_tables() - before if RUN in t or not OTHER_RUN.search(t))
    assert leftovers() == [] and new == [], f"integration tests left state behind: {new}"


def resolve_plugin(plugin_type, search=None):
    """Directory holding `plugin_type`: tether's build first, then the reference plugins."""
    for d in search or [BIN, REF_BIN]:
        if (Path(d) / plugin_type).exists():
            return Path(d)
    raise AssertionError(f"plugin {plugin_type} not found in {search or [BIN, REF_BIN]}")


def run_chain(conflist, command, *, containerid="ctr1", netns="", ifname="eth0", args=None,
              capability_args=None, prev_result=None, search=None, env=None):
    """Runs a conflist the way libcni does: ADD through the plugins in order, feeding each the
    previous result; DEL (and CHECK) in reverse order (CHECK in order) with the final ADD result
    as prevResult; GC and STATUS to every plugin. runtimeConfig is the intersection of each
    plugin's capabilities with `capability_args`. Returns (final result json or None, list of
    PluginResult). Stops at the first failing plugin for ADD/CHECK, continues for DEL/GC."""
    plugins = conflist["plugins"]
    order = list(reversed(plugins)) if command == "DEL" else plugins
    search = search or [BIN, REF_BIN]
    path = ":".join(str(d) for d in search)
    prev = prev_result
    results = []
    for p in order:
        conf = dict(p)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist["cniVersion"]
        caps = conf.pop("capabilities", {}) or {}
        rc = {k: v for k, v in (capability_args or {}).items() if caps.get(k)}
        if rc and command in ("ADD", "DEL", "CHECK"):
            conf["runtimeConfig"] = rc
        if prev is not None and command in ("ADD", "DEL", "CHECK"):
            conf["prevResult"] = prev
        res = run_plugin(conf["type"], command, conf, containerid=containerid, netns=netns,
                         ifname=ifname, args=args, path=path, env=env,
                         bindir=resolve_plugin(conf["type"], search))
        results.append(res)
        if res.rc != 0 and command in ("ADD", "CHECK", "STATUS"):
            return None, results
        if command == "ADD":
            prev = res.json
    return (prev if command == "ADD" else None), results
