"""make install / make uninstall into a DESTDIR, and the Debian package CPack builds."""
import subprocess
from pathlib import Path

from tether_it import BIN, ROOT

PLUGINS = ["bridge", "host-local", "portmap", "dns-sidecar"]


def install(*args, env=None):
    p = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), *map(str, args)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_install_and_uninstall(tmp_path):
    dest = tmp_path / "root"
    install(BIN.parent, dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr",
            env={"PATH": "/usr/bin:/bin", "DNSNAME_ALIAS": "1"})
    bindir = dest / "opt/cni/bin"
    assert sorted(p.name for p in bindir.iterdir()) == sorted(PLUGINS + ["dnsname"])
    for p in PLUGINS:
        assert (bindir / p).read_bytes() == (BIN / p).read_bytes()
        assert (bindir / p).stat().st_mode & 0o777 == 0o755
    assert (bindir / "dnsname").resolve() == (bindir / "dns-sidecar").resolve()
    docs = dest / "usr/share/doc/tether"
    assert (docs / "conf-examples" / "10-tether.conflist").exists()
    assert (docs / "bridge.md").exists() and (docs / "dns-sidecar.md").exists()
    unit = dest / "lib/systemd/system/tether-dns-sidecar.service"
    assert "/opt/cni/bin/dns-sidecar daemon" in unit.read_text()
    # Nothing is put into the live CNI config dir.
    assert not (dest / "etc/cni/net.d").exists()

    install("--uninstall", "", dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr")
    assert list(bindir.iterdir()) == []
    assert not docs.exists() and not unit.exists()


def test_debian_package(tmp_path):
    build = BIN.parent
    p = subprocess.run(["cpack", "-G", "DEB", "-B", str(tmp_path)], cwd=build,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    debs = list(tmp_path.glob("*.deb"))
    assert len(debs) == 1, p.stdout
    contents = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True,
                              text=True).stdout
    for plugin in PLUGINS:
        assert f"./opt/cni/bin/{plugin}\n" in contents
    assert "./lib/systemd/system/tether-dns-sidecar.service" in contents
    assert "conf-examples/10-tether.conflist" in contents
    info = subprocess.run(["dpkg-deb", "-I", str(debs[0])], capture_output=True, text=True).stdout
    assert "Package: tether-cni-plugins" in info
