"""Every conflist in conf-examples/, driven by libcni (tests/e2e/cnitool, the library podman and
containerd use): ADD for two containers, CHECK, traffic and names between them as the example
promises, DEL, and nothing of ours left. The examples are rewritten only where a test must be
private (bridge names, subnets, data and state dirs, nftables tables); the plugin keys and their
semantics stay as a user copies them."""
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tether_it import BIN, ROOT, RUN, Netns, sh

# A multi-host example needs etcd and tether-agent on every host (conf-examples/README.md): its
# bridge half is tests/integration/test_bridge_overlay.py's, across hosts tests/multihost's.
EXAMPLES = sorted(e for e in (ROOT / "conf-examples").glob("*.conflist")
                  if '"overlay"' not in e.read_text())
CNITOOL = BIN / "tether-cnitool"


def private_copy(example, index, work):
    """The example with every host-global name made private to this run."""
    conf = json.loads(example.read_text())
    conf["name"] = f"{RUN}-{conf['name']}"[:60]
    v4 = ipaddress.ip_network(f"10.{200 + index}.{int(RUN[1:3], 16)}.0/24")
    v6 = ipaddress.ip_network(f"fd7e:{RUN[1:]}:{index}::/64")
    for p in conf["plugins"]:
        if p["type"] == "bridge":
            p["bridge"] = f"{RUN}e{index}"
            p["nftTable"] = f"{RUN}-e2e-br"
            p["stateDir"] = str(work / "bridge")
            ipam = p["ipam"]
            ipam["dataDir"] = str(work / "ipam")
            for rs in ipam.get("ranges", []):
                for r in rs:
                    fam6 = ":" in r["subnet"]
                    r["subnet"] = str(v6 if fam6 else v4)
                    if "gateway" in r:
                        r["gateway"] = str(next((v6 if fam6 else v4).hosts()))
        elif p["type"] == "portmap":
            p["nftTable"] = f"{RUN}-e2e-pm"
            p["stateDir"] = str(work / "portmap")
        elif p["type"] in ("dns-sidecar", "dnsname"):
            p["stateDir"] = str(work / "dns")
    return conf, v4


def dns_plugin(conf):
    return next((p for p in conf["plugins"] if p["type"] in ("dns-sidecar", "dnsname")), None)


def bridge_plugin(conf):
    return next(p for p in conf["plugins"] if p["type"] == "bridge")


class Driver:
    def __init__(self, work, conf, bindir):
        self.netconf = work / "net.d"
        self.netconf.mkdir(parents=True, exist_ok=True)
        (self.netconf / "net.conflist").write_text(json.dumps(conf))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        self.env.update({"NETCONFPATH": str(self.netconf), "CNI_PATH": str(bindir),
                         "CNI_CACHE_DIR": str(work / "cache")})
        self.net = conf["name"]

    def run(self, cmd, ns, name, cap_args=None, check=True):
        env = dict(self.env)
        env["CNI_ARGS"] = f"IgnoreUnknown=1;K8S_POD_NAME={name}"
        env["CNI_CONTAINERID"] = f"{RUN}-{name}"
        if cap_args:
            env["CAP_ARGS"] = json.dumps(cap_args)
        p = subprocess.run([str(CNITOOL), cmd, self.net, ns.path], capture_output=True,
                           text=True, env=env)
        if check:
            assert p.returncode == 0, f"{cmd} {name}: {p.stderr}"
        return p


def stop_daemon(state_dir):
    for pidfile in Path(state_dir).glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().split()[0]), 15)
        except (ValueError, ProcessLookupError):
            pass


def reachable(src, ip):
    return subprocess.run(["ip", "netns", "exec", src.name, "ping", "-c1", "-W1", ip],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example_through_libcni(example, tmp_path_factory):
    index = EXAMPLES.index(example)
    work = Path(tmp_path_factory.mktemp(f"{RUN}-e2e"))
    # Our binaries (dns-sidecar starts tether-dns from its own directory), plus dns-sidecar under
    # podman's name for the podman example.
    bindir = work / "bin"
    bindir.mkdir()
    for b in ("bridge", "host-local", "portmap", "dns-sidecar", "tether-dns"):
        shutil.copy(BIN / b, bindir / b)
    os.symlink("dns-sidecar", bindir / "dnsname")
    conf, subnet = private_copy(example, index, work)
    driver = Driver(work, conf, bindir)
    br = bridge_plugin(conf)
    a, b = Netns(f"{RUN}-e{index}a"), Netns(f"{RUN}-e{index}b")
    try:
        caps = {"portMappings": [{"hostPort": 30000 + index, "containerPort": 8080,
                                  "protocol": "tcp"}],
                "aliases": {conf["name"]: ["shared"]}}
        res_a = json.loads(driver.run("add", a, "alpha", caps).stdout)
        res_b = json.loads(driver.run("add", b, "beta").stdout)
        ip_a = res_a["ips"][0]["address"].split("/")[0]
        ip_b = res_b["ips"][0]["address"].split("/")[0]
        assert ipaddress.ip_address(ip_a) in subnet and ip_a != ip_b
        driver.run("check", a, "alpha")
        driver.run("check", b, "beta")

        icc = br.get("icc", True)
        assert reachable(a, ip_b) == icc, f"icc={icc}"
        gateway = res_a["ips"][0]["gateway"]
        assert reachable(a, gateway)

        dns = dns_plugin(conf)
        if dns:
            assert gateway in res_a["dns"]["nameservers"]
            out = a.run("dig", "+short", "+time=2", "+tries=1", f"@{gateway}", "beta")
            assert out.split() == [ip_b]
            out = b.run("dig", "+short", "+time=2", "+tries=1", f"@{gateway}", "shared")
            assert out.split() == [ip_a]

        portmap = next((p for p in conf["plugins"] if p["type"] == "portmap"), None)
        if portmap and not br.get("internal"):
            # Localhost reaches a published port only through SNAT (route_localnet); without it
            # the host reaches it on one of its own addresses, here the gateway.
            host_addr = "127.0.0.1" if portmap.get("snat", True) else gateway
            server = subprocess.Popen(
                ["ip", "netns", "exec", a.name, "python3", "-c",
                 "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                 "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',8080));s.listen();"
                 "c,_=s.accept();c.sendall(b'hello from alpha');c.close()"])
            try:
                out = ""
                for _ in range(50):
                    p = subprocess.run(
                        ["python3", "-c",
                         f"import socket;s=socket.create_connection(('{host_addr}',{30000 + index}),"
                         "timeout=1);print(s.recv(100).decode())"],
                        capture_output=True, text=True)
                    out = p.stdout.strip()
                    if out:
                        break
                    subprocess.run(["sleep", "0.05"])
                assert out == "hello from alpha"
            finally:
                server.kill()
                server.wait()

        driver.run("del", a, "alpha")
        driver.run("del", b, "beta")
        driver.run("del", b, "beta")  # DEL is idempotent through libcni too
        leases = [p.name for p in (work / "ipam" / conf["name"]).iterdir()]
        assert sorted(l for l in leases if not l.startswith("last_reserved_ip")) == ["lock"]
        ports = sh("ip", "-o", "link", "show", "master", br["bridge"])
        assert ports.strip() == ""
    finally:
        a.delete()
        b.delete()
        stop_daemon(work / "dns")
        subprocess.run(["ip", "link", "del", br["bridge"]], capture_output=True)
        for table in (f"{RUN}-e2e-br", f"{RUN}-e2e-pm"):
            for fam in ("inet", "ip", "ip6"):
                subprocess.run(["nft", "delete", "table", fam, table], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
