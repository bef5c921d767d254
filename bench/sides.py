"""The sides of make bench, and the one driver process that runs all of them.

Every side turns "ADD/DEL container i" into a job for tether-cnitool's serve mode
(tests/e2e/cnitool): tether and the reference through libcni with their conflists, netavark as
podman runs it (`netavark setup|teardown NETNS`, the network options JSON on stdin), and the
kernel's floor (bench/tools/veth_floor.cc) as one netlink call in one process. Each side
has a private "host" network namespace of its own, where its driver runs: bridges, veths,
iptables and nftables state, the DNS server and a fake upstream live there and vanish with it,
and no side's firewall state slows another's (iptables-nft re-reads the whole ruleset of its
namespace on every call).
"""
import hashlib
import json
import os
import subprocess
from pathlib import Path

REF = Path("/usr/lib/cni")
NETAVARK = Path("/usr/lib/podman/netavark")
AARDVARK = Path("/usr/lib/podman/aardvark-dns")


class Driver:
    """One `tether-cnitool serve` in the host namespace: jobs in, per-job milliseconds out."""

    def __init__(self, cnitool, hostns, env):
        self.proc = subprocess.Popen(["ip", "netns", "exec", hostns, str(cnitool), "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)

    def run(self, jobs, parallel=1):
        """(ms, errors, outs) for `jobs`, run `parallel` at a time."""
        self.proc.stdin.write(json.dumps({"parallel": parallel, "jobs": jobs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("tether-cnitool serve died")
        r = json.loads(line)
        return r["ms"], r["errors"], r["out"]

    def one(self, job):
        ms, errors, outs = self.run([job])
        return ms[0], errors[0], outs[0]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Side:
    """What every side has: a name, a /16 (10.<octet>.0.0), a bridge and a work dir."""
    floor = False

    def __init__(self, name, octet, run, work):
        self.name = name
        self.hostns = f"{run}{name[0]}h"
        self.driver = None        # set by bench.py once the namespace exists
        self.upstream_pid = None  # the fake upstream resolver in self.hostns
        self.octet = octet
        self.gateway = f"10.{octet}.0.1"
        self.bridge = f"{run}{name[:3]}"
        self.net = f"{run}-{name}"
        self.work = work / name
        self.work.mkdir(parents=True)

    def ip(self, i):
        """The address host-local (or podman's IPAM) gives container i on an empty network."""
        n = i + 2
        return f"10.{self.octet}.{n // 256}.{n % 256}"


class CniSide(Side):
    """A CNI chain run through libcni: bridge + host-local + portmap + a DNS plugin."""

    def __init__(self, name, bindir, dns_plugin, octet, run, work, private_tables):
        super().__init__(name, octet, run, work)
        self.bindir = Path(bindir)
        self.netconf = self.work / "net.d"
        self.netconf.mkdir()
        self.domain = "bench.internal"
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                  "hairpinMode": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{octet}.0.0/16"}]],
                           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.work / "ipam")}}
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
        dns = {"type": dns_plugin, "domainName": self.domain, "capabilities": {"aliases": True}}
        if private_tables:
            # tether's own keys: private tables and state dirs (the reference has no such keys;
            # the host namespace is private anyway).
            bridge.update({"nftTable": f"{run}-br", "stateDir": str(self.work / "bridge")})
            portmap.update({"nftTable": f"{run}-pm", "stateDir": str(self.work / "portmap")})
            dns["stateDir"] = str(self.work / "dns")
        self.conflist = {"cniVersion": "1.0.0", "name": self.net,
                         "plugins": [bridge, portmap, dns]}
        (self.netconf / f"{self.net}.conflist").write_text(json.dumps(self.conflist))
        self.plugins = ["bridge", "host-local", "portmap", dns_plugin]

    def job(self, op, netns, i, port, name, cnipath=None):
        return {"kind": "cni", "op": op, "net": self.net, "netns": f"/run/netns/{netns}",
                "confdir": str(self.netconf), "cnipath": str(cnipath or self.bindir),
                "cachedir": str(self.work / "cache"), "port": port, "name": name}

    def cli_env(self, netns, port, name):
        """The environment of a one-shot `tether-cnitool add|del` of the same container (the
        profiler runs those under perf and strace)."""
        caps = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}
        return {"NETCONFPATH": str(self.netconf), "CNI_PATH": str(self.bindir),
                "CNI_CACHE_DIR": str(self.work / "cache"), "CAP_ARGS": json.dumps(caps),
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={name}"}


class TetherSide(CniSide):
    def __init__(self, bindir, octet, run, work):
        super().__init__("tether", bindir, "dns-sidecar", octet, run, work, private_tables=True)

    def dns_pid(self):
        return read_pid(self.work / "dns" / "daemon.pid")


class ReferenceSide(CniSide):
    def __init__(self, octet, run, work):
        super().__init__("reference", REF, "dnsname", octet, run, work, private_tables=False)

    def dnsname_dir(self):
        return Path("/run/containers/cni/dnsname") / self.net

    def dns_pid(self):
        return read_pid(self.dnsname_dir() / "pidfile")


class NetavarkSide(Side):
    """podman's netavark 1.4 + aardvark-dns, called as podman 4.3 calls it (containers/common
    libnetwork/netavark): --config, --rootless, --aardvark-binary, the options JSON on stdin,
    under podman's network lock. podman does IPAM itself (static_ips, in its own database), so
    netavark's figures carry no lease work."""

    def __init__(self, octet, run, work):
        super().__init__("netavark", octet, run, work)
        self.config = self.work / "config"  # netavark's --config: aardvark's files and pid
        self.config.mkdir()
        self.domain = "dns.podman"
        self.network = {"dns_enabled": True, "driver": "bridge",
                        "id": hashlib.sha256(self.net.encode()).hexdigest(), "internal": False,
                        "ipv6_enabled": False, "name": self.net, "network_interface": self.bridge,
                        "subnets": [{"gateway": self.gateway, "subnet": f"10.{octet}.0.0/16"}]}
        self.plugins = ["netavark"]

    def options(self, netns, i, port, name):
        cid = hashlib.sha256(netns.encode()).hexdigest()
        return {"container_id": cid, "container_name": name,
                "networks": {self.net: {"interface_name": "eth0", "static_ips": [self.ip(i)],
                                        "aliases": [name]}},
                "network_info": {self.net: self.network},
                "port_mappings": [{"host_ip": "", "container_port": 80, "host_port": port,
                                   "range": 1, "protocol": "tcp"}]}

    def argv(self, op, netns, binary=None):
        return [str(binary or NETAVARK), "--config", str(self.config), "--rootless", "false",
                "--aardvark-binary", str(AARDVARK), "setup" if op == "add" else "teardown",
                f"/run/netns/{netns}"]

    def job(self, op, netns, i, port, name, wrapper=None):
        argv = self.argv(op, netns)
        if wrapper:
            argv = wrapper + argv
        # podman (containers/common libnetwork/netavark) holds a lock on its network config
        # around every setup and teardown: parallel containers queue there.
        return {"kind": "exec", "argv": argv, "lock": str(self.work / "podman-network.lock"),
                "stdin": json.dumps(self.options(netns, i, port, name))}

    def dns_pid(self):
        return read_pid(self.config / "aardvark-dns" / "aardvark.pid")


class FloorSide(Side):
    """The kernel's floor: the veth pair of container i created, and deleted, by one netlink
    call in one process (bench/tools/veth_floor.cc). Its "ms" is the call alone; "exec_ms" the
    whole process, as the driver sees it."""
    floor = True

    def __init__(self, tool, octet, run, work):
        super().__init__("floor", octet, run, work)
        self.tool = str(tool)
        self.run = run
        self.plugins = []

    def veth(self, i):
        return f"{self.run}f{i}"

    def job(self, op, netns, i, port, name):
        if op == "add":
            return {"kind": "exec", "argv": [self.tool, "add", self.bridge, self.veth(i),
                                             f"/run/netns/{netns}"]}
        return {"kind": "exec", "argv": [self.tool, "del", self.veth(i)]}


def read_pid(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
