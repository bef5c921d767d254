"""podman 4.3 with its CNI backend, pointed only at tether's binaries (dns-sidecar also installed
as `dnsname`, the name podman's conflists use): containers get addresses, resolve and reach each
other by name, a published port answers on the host, and `podman rm -f` leaves nothing of ours.

Podman's whole configuration lives in a private directory: on these machines it needs runc
(crun fails on the cgroup layout), cgroupfs, file events and modest ulimits. The image is a
busybox rootfs imported from a tar (no registry)."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tether_it import BIN, RUN, sh

NET = f"{RUN}-pod"
BRIDGE = f"{RUN}pod0"
SUBNET = f"10.199.{int(RUN[1:3], 16)}"


@pytest.fixture
def podman(tmp_path):
    root = tmp_path
    bindir = root / "cni-bin"
    bindir.mkdir()
    for b in ("bridge", "host-local", "portmap", "dns-sidecar", "tether-dns"):
        shutil.copy(BIN / b, bindir / b)
    os.symlink("dns-sidecar", bindir / "dnsname")
    netconf = root / "net.d"
    netconf.mkdir()
    (netconf / f"{NET}.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "hairpinMode": True, "nftTable": f"{RUN}-pod-br",
             "stateDir": str(root / "bridge"),
             "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": f"{SUBNET}.0/24", "gateway": f"{SUBNET}.1"}]],
                      "dataDir": str(root / "ipam")},
             "capabilities": {"ips": True}},
            {"type": "portmap", "capabilities": {"portMappings": True},
             "nftTable": f"{RUN}-pod-pm", "stateDir": str(root / "portmap")},
            {"type": "dnsname", "domainName": "dns.podman", "stateDir": str(root / "dns"),
             "capabilities": {"aliases": True}},
        ]}))
    (root / "containers.conf").write_text(f"""
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=2048:2048"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
tmp_dir = "{root}/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bindir}"]
network_config_dir = "{netconf}"
""")
    (root / "storage.conf").write_text(f"""
[storage]
driver = "vfs"
graphroot = "{root}/storage"
runroot = "{root}/run"
""")
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("hello from tether\n")
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep", "httpd", "wget", "nslookup", "ip", "cat", "hostname"):
        os.symlink("busybox", rootfs / "bin" / applet)
    sh("tar", "-C", rootfs, "-cf", root / "busybox.tar", ".")

    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CONTAINERS_CONF": str(root / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
                "CNI_CACHE_DIR": str(root / "cni-cache")})

    def run(*args, check=True, timeout=120):
        p = subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                           timeout=timeout)
        if check:
            assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr}"
        return p.stdout.strip()

    run("import", str(root / "busybox.tar"), f"localhost/{RUN}-busybox:latest")
    yield run, root
    run("rm", "-af", "-t", "1", check=False)
    run("rmi", "-af", check=False)
    for pidfile in (root / "dns").glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().split()[0]), 15)
        except (ValueError, ProcessLookupError):
            pass
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    for table in (f"{RUN}-pod-br", f"{RUN}-pod-pm"):
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
    subprocess.run(["umount", "-R", str(root / "storage")], capture_output=True)


def test_podman_containers_on_tether(podman):
    run, root = podman
    image = f"localhost/{RUN}-busybox:latest"
    run("run", "-d", "--name", f"{RUN}-web", "--network", NET, "-p", "18080:80", image,
        "httpd", "-f", "-p", "80", "-h", "/www")
    run("run", "-d", "--name", f"{RUN}-client", "--network", NET, image, "sleep", "600")

    info = json.loads(run("inspect", f"{RUN}-web"))
    nets = info[0]["NetworkSettings"]["Networks"]
    web_ip = nets[NET]["IPAddress"]
    assert web_ip.startswith(f"{SUBNET}.")

    # Names: podman's conflist entry `dnsname` is tether's dns-sidecar.
    out = run("exec", f"{RUN}-client", "nslookup", f"{RUN}-web")
    assert web_ip in out
    resolv = run("exec", f"{RUN}-client", "cat", "/etc/resolv.conf")
    assert f"{SUBNET}.1" in resolv

    # Reach each other, by name.
    out = run("exec", f"{RUN}-client", "wget", "-q", "-O", "-", f"http://{RUN}-web/")
    assert out == "hello from tether"

    # The published port answers on the host.
    body = ""
    for _ in range(50):
        p = subprocess.run(["curl", "-s", "--max-time", "2", "http://127.0.0.1:18080/"],
                           capture_output=True, text=True)
        body = p.stdout.strip()
        if body:
            break
        time.sleep(0.1)
    assert body == "hello from tether"

    # podman rm -f runs DEL through the chain: nothing of the containers is left.
    run("rm", "-f", "-t", "1", f"{RUN}-web", f"{RUN}-client")
    leases = sorted(p.name for p in (root / "ipam" / NET).iterdir())
    assert [l for l in leases if not l.startswith("last_reserved_ip")] == ["lock"]
    assert sh("ip", "-o", "link", "show", "master", BRIDGE).strip() == ""
    assert list((root / "bridge").rglob("*.json")) == []
    assert list((root / "portmap").rglob("*.json")) == []
