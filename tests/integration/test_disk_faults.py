"""Full and read-only disks (issue #15): each plugin of the real chain in turn gets a 64 KiB tmpfs
as its stateDir (host-local: dataDir), mounted under the run's own directory and unmounted at the
end. On a full disk ADD fails with error 5 and a message that names the file and the cause, and
leaves nothing (no lease, no link, no nftables element, no state file, no DNS name); once space is
back ADD works; DEL on a full disk removes everything and succeeds. On a read-only disk ADD fails
the same way; DEL removes every kernel effect and reports error 5 for the files it cannot remove,
so the runtime retries (dns-sidecar's DEL, which never fails the chain, unregisters the names and
logs it); the retry once the disk is writable leaves nothing.
"""
import errno
import os
import subprocess

import pytest

from chainlab import PLUGINS, RUN, Netns, diff, network  # noqa: F401 (network: a fixture)
from conftest import sh

DIRS = {"bridge": "bridge", "host-local": "ipam", "portmap": "portmap", "dns-sidecar": "dns"}
SIZE = "64k"


class Tmpfs:
    def __init__(self, path):
        self.path = path
        path.mkdir(exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", f"{RUN}-disk", path)
        self.layers = 1

    def fill(self):
        """Writes zeros until the filesystem refuses: ENOSPC."""
        fd = os.open(self.path / ".fill", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        finally:
            os.close(fd)

    def free(self):
        (self.path / ".fill").unlink(missing_ok=True)

    def read_only(self, on):
        """A read-only bind mount over the directory, or none: a running DNS daemon has its log
        open for writing there, which a remount of the tmpfs itself would wait for. Plugins see
        the mounts as they are when they start (ip netns exec copies the mount namespace)."""
        if on:
            sh("mount", "--bind", self.path, self.path)
            self.layers += 1
            sh("mount", "-o", "remount,bind,ro", self.path)
        else:
            sh("umount", self.path)
            self.layers -= 1

    def unmount(self):
        for _ in range(self.layers):
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        self.layers = 0


@pytest.fixture
def tmpfs(tmpdir_run):
    """Requested before `network`, so that it is unmounted after the DNS daemon, whose pid file
    is on it, has been killed."""
    made = []

    def make(path):
        made.append(Tmpfs(path))
        return made[-1]

    yield make
    for t in made:
        t.unmount()


def failing_plugin(victim):
    """The plugin whose call reports the failure: bridge runs host-local."""
    return "bridge" if victim == "host-local" else victim


def assert_clear_error(failed, victim, cause):
    assert len(failed) == 1, failed
    plugin, _, res = failed[0]
    assert plugin == failing_plugin(victim), failed
    assert res.rc == 1 and res.code == 5, res
    text = res.json["msg"] + " " + res.json.get("details", "")
    assert cause in text and DIRS[victim] in text, res
    print(f"\n{victim}: {plugin} {failed[0][1]} -> code {res.code}: {text}")


def add_fails_and_leaves_nothing(net, victim, cid, cause):
    """The chain's ADD until the victim, which must fail clearly and leave nothing of its own;
    then the runtime's DEL of the failed ADD."""
    lab = net.lab
    c = Netns(f"{RUN}-d")
    try:
        before = lab.snapshot()
        # The plugins before the victim succeed: what they made is the runtime's to DEL.
        upto = [p["type"] for p in lab.cl["plugins"]].index(failing_plugin(victim))
        prev = None
        for p in lab.cl["plugins"][:upto]:
            res = lab.call(p, "ADD", cid, c.path, prev)
            assert res.rc == 0, res
            prev = res.json
        partial = lab.snapshot()
        res = lab.call(lab.cl["plugins"][upto], "ADD", cid, c.path, prev)
        assert_clear_error([(failing_plugin(victim), "ADD", res)] if res.rc else [], victim,
                           cause)
        assert diff(lab.snapshot(), partial) == {}
        _, failed = lab.chain("DEL", cid, c.path)
        assert failed == [], failed
    finally:
        c.delete()
    assert diff(lab.snapshot(), before) == {}


@pytest.mark.parametrize("victim", PLUGINS)
def test_full_disk(tmpfs, network, victim):
    disk = []
    net = network(name=DIRS[victim], prepare=lambda lab: disk.append(
        tmpfs(lab.tmp / DIRS[victim])))
    disk = disk[0]
    lab = net.lab
    disk.fill()
    add_fails_and_leaves_nothing(net, victim, f"{RUN}-f-1", "No space left on device")

    # Space is back: ADD works. The disk fills up again: DEL removes everything, and succeeds.
    disk.free()
    c = Netns(f"{RUN}-d")
    try:
        result, failed = lab.chain("ADD", f"{RUN}-f-2", c.path)
        assert failed == [], failed
        disk.fill()
        _, failed = lab.chain("DEL", f"{RUN}-f-2", c.path, prev=result)
        assert failed == [], failed
    finally:
        c.delete()
    assert net.residue() == {}
    disk.free()
    net.close()


@pytest.mark.parametrize("victim", PLUGINS)
def test_read_only_disk(tmpfs, network, victim):
    disk = []
    net = network(name=DIRS[victim], prepare=lambda lab: disk.append(
        tmpfs(lab.tmp / DIRS[victim])))
    disk = disk[0]
    lab = net.lab
    disk.read_only(True)
    add_fails_and_leaves_nothing(net, victim, f"{RUN}-r-1", "Read-only file system")

    disk.read_only(False)
    c = Netns(f"{RUN}-d")
    try:
        result, failed = lab.chain("ADD", f"{RUN}-r-2", c.path)
        assert failed == [], failed
        disk.read_only(True)
        _, failed = lab.chain("DEL", f"{RUN}-r-2", c.path, prev=result)
        if victim == "dns-sidecar":
            # DEL never fails the chain (README): the daemon no longer serves the name; the
            # record stays until a DEL or GC can remove it.
            assert failed == [], failed
        else:
            # The plugin says what it could not remove, and the runtime will retry. libcni
            # stops at that failure; the plugins after it are on writable disks and would
            # succeed, so they run here: then nothing but the victim's files may be left.
            assert_clear_error(failed, victim, "Read-only file system")
            order = list(reversed(lab.cl["plugins"]))
            rest = order[[p["type"] for p in order].index(failed[0][0]) + 1:]
            for p in rest:
                res = lab.call(p, "DEL", f"{RUN}-r-2", c.path, result)
                assert res.rc == 0, res
        left = diff(lab.snapshot(), net.baseline)
        assert set(left) <= {"files"}, left
        files = left.get("files", {"extra": {}, "missing": {}})
        assert files["missing"] == {}, left
        assert all(f.startswith(DIRS[victim] + "/") for f in files["extra"]), left
        disk.read_only(False)
        _, failed = lab.chain("DEL", f"{RUN}-r-2", c.path, prev=result)
        assert failed == [], failed
    finally:
        c.delete()
    assert net.residue() == {}
    net.close()
