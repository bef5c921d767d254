"""make install / make uninstall into a DESTDIR, and the Debian packages CPack builds: the
plugins installed stripped, their debug info detached by build ID, the package lintian-clean of
errors."""
import re
import subprocess
import tempfile
import zlib
from pathlib import Path

from tether_it import BIN, ROOT

PLUGINS = ["bridge", "host-local", "portmap", "dns-sidecar", "loopback"]
# Installed beside the plugins, which start it from their own directory; not a CNI plugin.
AGENT = "tether-agent"
DNS_DAEMON = "tether-dns"
PROGRAMS = PLUGINS + [AGENT, DNS_DAEMON]


def install(*args, env=None):
    p = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), *map(str, args)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    return p.stdout


def sections(path):
    out = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return set(re.findall(r"\]\s+(\.\S+)", out))


def build_id(path):
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


def debuglink(path):
    """(file name, CRC-32) from the .gnu_debuglink section."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "link"
        subprocess.run(["objcopy", f"--dump-section=.gnu_debuglink={out}", str(path),
                        str(Path(d) / "copy")], capture_output=True, check=True)
        data = out.read_bytes()
    name = data.split(b"\0", 1)[0].decode()
    return name, int.from_bytes(data[-4:], "little")


def assert_stripped(path):
    s = sections(path)
    assert not {x for x in s if x.startswith(".debug")}, f"{path} has debug sections: {s}"
    assert ".symtab" not in s, f"{path} keeps its symbol table"
    assert "not stripped" not in subprocess.run(["file", str(path)], capture_output=True,
                                                text=True).stdout


def assert_debug_file_for(binary, debug_root):
    """The detached debug info of `binary` sits at debug_root/.build-id/xx/rest.debug, has the
    DWARF, the same build ID, and is what the binary's debuglink names (name and CRC)."""
    bid = build_id(binary)
    dbg = debug_root / ".build-id" / bid[:2] / f"{bid[2:]}.debug"
    assert dbg.is_file(), f"no {dbg}"
    assert ".debug_info" in sections(dbg)
    assert build_id(dbg) == bid
    assert debuglink(binary) == (dbg.name, zlib.crc32(dbg.read_bytes()))
    return dbg


def test_plugins_are_static_pies():
    """The plugins load nothing at start (TETHER_STATIC_LIBC, the default where libc.a exists):
    no interpreter, no shared library, and still position-independent (ASLR). The daemons link
    glibc shared."""
    for p in PLUGINS:
        headers = subprocess.run(["readelf", "-h", "-l", "-d", str(BIN / p)], check=True,
                                 capture_output=True, text=True).stdout
        assert "DYN (" in headers, p
        assert "INTERP" not in headers and "(NEEDED)" not in headers, (p, headers)
        v = subprocess.run([str(BIN / p)], env={"CNI_COMMAND": "VERSION"}, input="{}",
                           capture_output=True, text=True)
        assert v.returncode == 0 and "supportedVersions" in v.stdout, (p, v)
    for d in (AGENT, DNS_DAEMON):
        dynamic = subprocess.run(["readelf", "-d", str(BIN / d)], check=True,
                                 capture_output=True, text=True).stdout
        assert "libc.so.6" in dynamic, d


def test_install_and_uninstall(tmp_path):
    dest = tmp_path / "root"
    install(BIN.parent, dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr",
            env={"PATH": "/usr/bin:/bin", "DNSNAME_ALIAS": "1"})
    bindir = dest / "opt/cni/bin"
    assert sorted(p.name for p in bindir.iterdir()) == sorted(PROGRAMS + ["dnsname"])
    for p in PROGRAMS:
        installed = bindir / p
        assert installed.stat().st_mode & 0o777 == 0o755
        assert_stripped(installed)
        # The build keeps its debug info; the installed copy is the same program.
        assert ".debug_info" in sections(BIN / p)
        assert installed.stat().st_size < (BIN / p).stat().st_size
        assert build_id(installed) == build_id(BIN / p)
        if p in (AGENT, DNS_DAEMON):
            v = subprocess.run([str(installed), "--help"], capture_output=True, text=True)
            assert v.returncode == 0 and ("run" if p == AGENT else "daemon") in v.stdout, v
            continue
        v = subprocess.run([str(installed)], env={"CNI_COMMAND": "VERSION"}, input="{}",
                           capture_output=True, text=True)
        assert v.returncode == 0 and "supportedVersions" in v.stdout, v
    assert (bindir / "dnsname").resolve() == (bindir / "dns-sidecar").resolve()
    # Without DEBUG_DIR no debug file is installed anywhere.
    assert list(dest.rglob("*.debug")) == []
    docs = dest / "usr/share/doc/tether"
    assert (docs / "conf-examples" / "10-tether.conflist").exists()
    assert (docs / "bridge.md").exists() and (docs / "dns-sidecar.md").exists()
    assert (docs / "loopback.md").exists()
    unit = dest / "lib/systemd/system/tether-dns-sidecar.service"
    assert "/opt/cni/bin/tether-dns daemon" in unit.read_text()
    agent_unit = dest / "lib/systemd/system/tether-agent.service"
    assert "/opt/cni/bin/tether-agent" in agent_unit.read_text()
    # Nothing is put into the live CNI config dir.
    assert not (dest / "etc/cni/net.d").exists()

    install("--uninstall", "", dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr")
    assert list(bindir.iterdir()) == []
    assert not docs.exists() and not unit.exists() and not agent_unit.exists()


def test_install_with_debug_dir(tmp_path):
    dest = tmp_path / "root"
    env = {"PATH": "/usr/bin:/bin", "DEBUG_DIR": "/usr/lib/debug"}
    out = install(BIN.parent, dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr", env=env)
    assert "debug info in" in out
    debug_root = dest / "usr/lib/debug"
    dbgs = []
    for p in PROGRAMS:
        installed = dest / "opt/cni/bin" / p
        assert_stripped(installed)
        dbgs.append(assert_debug_file_for(installed, debug_root))
        assert dbgs[-1].stat().st_mode & 0o777 == 0o644
    assert sorted(debug_root.rglob("*.debug")) == sorted(dbgs)

    install("--uninstall", "", dest, "/opt/cni/bin", "/etc/cni/net.d", "/usr", env=env)
    assert list(debug_root.rglob("*.debug")) == []
    assert list((dest / "opt/cni/bin").iterdir()) == []


def dpkg_deb(*args):
    return subprocess.run(["dpkg-deb", *map(str, args)], capture_output=True, text=True,
                          check=True).stdout


def test_debian_packages(tmp_path):
    build = BIN.parent
    p = subprocess.run(["cpack", "-G", "DEB", "-B", str(tmp_path)], cwd=build,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    debs = list(tmp_path.glob("*.deb"))
    ddebs = list(tmp_path.glob("*.ddeb"))
    assert len(debs) == 1 and len(ddebs) == 1, p.stdout
    deb, ddeb = debs[0], ddebs[0]
    assert deb.name.startswith("tether-cni-plugins_")
    assert ddeb.name.startswith("tether-cni-plugins-dbgsym_")

    contents = dpkg_deb("-c", deb)
    for plugin in PROGRAMS:
        assert f"./opt/cni/bin/{plugin}\n" in contents
    assert "./lib/systemd/system/tether-dns-sidecar.service" in contents
    assert "./lib/systemd/system/tether-agent.service" in contents
    assert "./usr/share/lintian/overrides/tether-cni-plugins\n" in contents
    assert "conf-examples/10-tether.conflist" in contents
    for f in ("copyright", "changelog.gz"):
        assert f"./usr/share/doc/tether-cni-plugins/{f}\n" in contents
    info = dpkg_deb("-I", deb)
    assert "Package: tether-cni-plugins" in info

    # The .deb's binaries are stripped; the -dbgsym package has their debug info by build ID.
    unpacked = tmp_path / "deb"
    dpkg_deb("-x", deb, unpacked)
    dbg_unpacked = tmp_path / "ddeb"
    dpkg_deb("-x", ddeb, dbg_unpacked)
    for plugin in PROGRAMS:
        binary = unpacked / "opt/cni/bin" / plugin
        assert_stripped(binary)
        bid = build_id(binary)
        dbg = dbg_unpacked / "usr/lib/debug/.build-id" / bid[:2] / f"{bid[2:]}.debug"
        assert dbg.is_file() and ".debug_info" in sections(dbg), plugin
        assert debuglink(binary)[0] == dbg.name
    dbg_info = dpkg_deb("-I", ddeb)
    assert "Package: tether-cni-plugins-dbgsym" in dbg_info
    assert re.search(r"Depends: tether-cni-plugins \(= [^)]+\)", dbg_info), dbg_info

    # Debian policy as lintian checks it. The one error left is the plugins' place, /opt/cni/bin,
    # where containerd and kubelet look by default (packaging/README.md); no other error and no
    # warning.
    lint = subprocess.run(["lintian", "--tag-display-limit", "0", str(deb)], capture_output=True,
                          text=True)
    tags = {tuple(line.split()[:3]) for line in lint.stdout.splitlines()
            if re.match(r"[EW]: ", line)}
    assert tags == {("E:", "tether-cni-plugins:", "dir-or-file-in-opt")}, lint.stdout
