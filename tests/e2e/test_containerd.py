"""containerd 1.6 (Debian's) with its CRI plugin, driven as a kubelet drives it (tests/e2e/cri,
tether-cri), on CNI directories that hold tether only: /opt/cni/bin has tether's bridge,
host-local, portmap and loopback (containerd adds its loopback network to every pod), and
/etc/cni/net.d one tether conflist.

containerd runs in a private mount namespace (unshare -m) where those two paths are bind mounts
of per-run directories and /run, /var/lib and /opt are fresh tmpfs: the host's real CNI
directories, /run/containerd, /run/netns and /var/lib/cni are never touched, and every mount
goes away with the namespace. Its root, state, socket and config are per run; the image is a
busybox rootfs written as an OCI archive here and imported with ctr (no registry).

A pod: RunPodSandbox with a hostPort, a busybox httpd container in it; eth0 has the pod's
address, lo is up, the hostPort answers. Then StopPodSandbox and RemovePodSandbox, as a kubelet
does: containerd runs CNI DEL on both, the second time with an empty CNI_NETNS and no
prevResult, and must succeed. Nothing is left: links, leases, plugin state, nftables entries,
containerd's processes, cgroups, mounts.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from tether_it import BIN, RUN, sh

NET = f"{RUN}-k8s"
BRIDGE = f"{RUN}k8s0"
SUBNET = f"10.198.{int(RUN[1:3], 16)}"
HOST_PORT = 18000 + int(RUN[1:4], 16) % 1000
CGROUP_PARENT = f"/{RUN}-pods"
IMAGE = f"docker.io/library/{RUN}-busybox:latest"
CRI = BIN / "tether-cri"
PLUGINS = ["bridge", "host-local", "portmap", "loopback"]


def oci_archive(path, rootfs, cmd):
    """An OCI image layout tar of one uncompressed layer holding `rootfs`, named IMAGE."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        t.add(rootfs, arcname=".")
    layer = layer.getvalue()
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer_desc = blob(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}]}).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
                       "annotations": {"io.containerd.image.name": IMAGE,
                                       "org.opencontainers.image.ref.name": "latest"}}]}).encode()
    with tarfile.open(path, "w") as t:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":")[1], data)


def config_toml(root):
    return f"""version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The sandbox's oom_score_adj (-998) no lower than containerd's own: a test machine that
  # is itself a container may not lower it (runc's init then dies before it reports a PID).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"""


def our_processes(root):
    """PIDs of processes whose command line names this run's root (containerd, its shims)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            pids.append(int(d.name))
    return pids


def our_cgroups():
    return sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*{CGROUP_PARENT}"))


def remove_cgroups():
    # Leaves first: the sandbox's and containers' cgroups sit under CGROUP_PARENT.
    for top in our_cgroups():
        for d in sorted(Path(top).rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                try:
                    d.rmdir()
                except OSError:
                    pass
        try:
            Path(top).rmdir()
        except OSError:
            pass


def processes_in_mount_ns(inode):
    """PIDs of processes in the mount namespace with that inode."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.stat(d / "ns" / "mnt").st_ino == inode:
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


class Containerd:
    def __init__(self, root):
        self.root = root
        self.socket = root / "containerd.sock"
        self.log = root / "containerd.log"
        self.cni_log = root / "cni.log"
        self.proc = None
        self.mnt_ns = None

    def cri(self, *args, input=None, check=True):
        p = subprocess.run([str(CRI), "-socket", str(self.socket), *args], input=input,
                           capture_output=True, text=True, timeout=180)
        if check:
            assert p.returncode == 0, f"tether-cri {' '.join(args)}: {p.stderr}\n{self.tail()}"
        return p.stdout.strip()

    def ctr(self, *args):
        return sh("ctr", "--address", self.socket, "--namespace", "k8s.io", *args)

    def tail(self):
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def calls(self):
        """The CNI calls tether's plugins logged (skel's info line): (plugin, verb, fields)."""
        out = []
        if not self.cni_log.exists():
            return out
        for line in self.cni_log.read_text().splitlines():
            if " info: " not in line:
                continue
            words = line.split(" info: ", 1)[1].split()
            fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            out.append((fields["plugin"], words[0], fields))
        return out

    def stop(self):
        """SIGTERM, as systemd stops it; then whatever of ours outlived it (shims do, by
        design: they keep running containers alive across a containerd restart)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        left = our_processes(self.root) + processes_in_mount_ns(self.mnt_ns)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # SIGKILL is asynchronous: on a busy machine a killed process can take a moment to
        # leave /proc. Wait for each (bounded), so the checks after stop() see the final state.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and set(left) & set(
                our_processes(self.root) + processes_in_mount_ns(self.mnt_ns)):
            time.sleep(0.05)


@pytest.fixture
def containerd(tmp_path):
    root = tmp_path
    bindir = root / "cni-bin"
    bindir.mkdir()
    for b in PLUGINS:
        shutil.copy(BIN / b, bindir / b)
    netconf = root / "net.d"
    netconf.mkdir()
    (netconf / f"10-{RUN}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "hairpinMode": True, "nftTable": f"{RUN}-k8s-br", "stateDir": str(root / "bridge"),
             "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": f"{SUBNET}.0/24", "gateway": f"{SUBNET}.1"}]],
                      "dataDir": str(root / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True},
             "nftTable": f"{RUN}-k8s-pm", "stateDir": str(root / "portmap")},
        ]}))
    config = root / "config.toml"
    config.write_text(config_toml(root))

    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("hello from tether\n")
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep", "httpd", "ip", "cat"):
        os.symlink("busybox", rootfs / "bin" / applet)
    oci_archive(root / "busybox.tar", rootfs, ["/bin/sleep", "2147483647"])

    # The private mount namespace: tmpfs over /run, /var/lib and /opt, then tether's CNI
    # directories where containerd looks by default.
    script = f"""set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /opt
mkdir -p /opt/cni/bin
mount --bind {bindir} /opt/cni/bin
mount --bind {netconf} /etc/cni/net.d
exec containerd --config {config}
"""
    d = Containerd(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TETHER_LOG_LEVEL": "info", "TETHER_LOG_FILE": str(d.cni_log)})
    with open(d.log, "w") as log:
        d.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                   "sh", "-c", script], stdout=log, stderr=log, env=env,
                                  start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            p = subprocess.run([str(CRI), "-socket", str(d.socket), "version"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                break
            assert d.proc.poll() is None, f"containerd exited:\n{d.tail()}"
            assert time.time() < deadline, f"containerd did not come up:\n{d.tail()}"
            time.sleep(0.5)
        # containerd is the process unshare became (unshare and sh exec); its mount namespace
        # is the private one.
        d.mnt_ns = os.stat(f"/proc/{d.proc.pid}/ns/mnt").st_ino
        assert d.mnt_ns != os.stat("/proc/self/ns/mnt").st_ino
        d.ctr("images", "import", "--snapshotter", "native", root / "busybox.tar")
        yield d
    finally:
        d.stop()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        for table in (f"{RUN}-k8s-br", f"{RUN}-k8s-pm"):
            subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        remove_cgroups()


def pod_spec(root):
    return {"name": f"{RUN}-web", "uid": f"{RUN}-uid-1", "namespace": "default",
            "hostname": "web", "logDirectory": str(root / "pod-logs"),
            "cgroupParent": CGROUP_PARENT,
            "portMappings": [{"protocol": "TCP", "containerPort": 80, "hostPort": HOST_PORT,
                              "hostIp": ""}]}


def in_pod(pid, *cmd):
    return sh("nsenter", "-t", pid, "-n", *cmd)


def test_containerd_pod_on_tether(containerd):
    d = containerd
    root = d.root
    (root / "pod-logs").mkdir()
    pod = pod_spec(root)
    pod_id = d.cri("run-pod", input=json.dumps(pod))
    status = json.loads(d.cri("pod-status", pod_id))
    assert status["state"] == "SANDBOX_READY"
    ip = status["ip"]
    assert ip.startswith(f"{SUBNET}."), status
    pid = json.loads(status["info"]["info"])["pid"]

    # The pod's network as the container sees it: eth0 with the address, lo up with both
    # loopback addresses (tether's loopback plugin, which containerd ran beside the bridge).
    eth0 = json.loads(in_pod(pid, "ip", "-j", "addr", "show", "dev", "eth0"))[0]
    assert f"{ip}/24" in [f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"]]
    lo = json.loads(in_pod(pid, "ip", "-j", "addr", "show", "dev", "lo"))[0]
    assert "UP" in lo["flags"]
    assert {(a["local"], a["prefixlen"]) for a in lo["addr_info"]} == {("127.0.0.1", 8),
                                                                       ("::1", 128)}
    assert in_pod(pid, "ping", "-c", "1", "-W", "2", "127.0.0.1")

    # A container in the pod serves on port 80; the hostPort answers on the host.
    ctr_id = d.cri("create-container", pod_id, input=json.dumps({
        "name": "httpd", "image": IMAGE, "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "logPath": "httpd.log", "pod": pod}))
    d.cri("start-container", ctr_id)
    body = ""
    for _ in range(100):
        p = subprocess.run(["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{HOST_PORT}/"],
                           capture_output=True, text=True)
        body = p.stdout.strip()
        if body:
            break
        time.sleep(0.1)
    assert body == "hello from tether"
    out = subprocess.run(["curl", "-s", "--max-time", "2", f"http://{ip}/"],
                         capture_output=True, text=True).stdout.strip()
    assert out == "hello from tether"

    # Each plugin's line is written when it exits (a plugin's log is flushed then), so the
    # order says nothing: a delegating bridge exits after host-local.
    adds = sorted((p, f["network"], f["ifname"]) for p, verb, f in d.calls() if verb == "ADD")
    assert adds == [("bridge", NET, "eth0"), ("host-local", NET, "eth0"),
                    ("loopback", "cni-loopback", "lo"), ("portmap", NET, "eth0")]

    # Kubelet's teardown: StopPodSandbox, then RemovePodSandbox.
    before = len(d.calls())
    d.cri("stop-pod", pod_id)
    stop_calls = d.calls()[before:]
    d.cri("remove-pod", pod_id)
    remove_calls = d.calls()[before + len(stop_calls):]

    stop_dels = [(p, f["netns"], f["prevResult"]) for p, verb, f in stop_calls if verb == "DEL"]
    assert sorted(p for p, _, _ in stop_dels) == sorted(PLUGINS)
    for p, netns, prev in stop_dels:
        assert netns != '""', (p, netns)
        if p != "loopback":
            assert prev == "yes", p  # libcni's cached result
    # The second teardown: the netns is gone, and so is libcni's cached result.
    remove_dels = [(p, f["netns"], f["prevResult"]) for p, verb, f in remove_calls
                   if verb == "DEL"]
    assert sorted(p for p, _, _ in remove_dels) == sorted(PLUGINS), remove_calls
    for p, netns, prev in remove_dels:
        assert (netns, prev) == ('""', "no"), p
    assert "error" not in d.cni_log.read_text().lower()

    # Nothing of the pod is left.
    assert sh("ip", "-o", "link", "show", "master", BRIDGE).strip() == ""
    leases = [p.name for p in (root / "ipam" / NET).iterdir()]
    assert [l for l in leases if not l.startswith("last_reserved_ip")] == ["lock"]
    assert list((root / "bridge").rglob("*.json")) == []
    assert list((root / "portmap").rglob("*.json")) == []
    pm = sh("nft", "-j", "list", "table", "inet", f"{RUN}-k8s-pm")
    assert str(HOST_PORT) not in pm and ip not in pm
    assert subprocess.run(["curl", "-s", "--max-time", "1", f"http://127.0.0.1:{HOST_PORT}/"],
                          capture_output=True).returncode != 0
    assert d.cri("pod-status", pod_id, check=False) == ""  # NotFound: the sandbox is gone

    # And once containerd is stopped, nothing of it: no process of this run (containerd,
    # shims, the pod's), so no mount of its namespace; no cgroup left under the pods' parent.
    d.stop()
    assert our_processes(root) == []
    assert processes_in_mount_ns(d.mnt_ns) == []
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
    # The parent is the test's (a kubelet's, on a node); the pod's cgroups below it are gone.
    assert [str(c) for top in our_cgroups() for c in Path(top).iterdir() if c.is_dir()] == []
