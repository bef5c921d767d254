"""plugin_main and delegation as real processes, through tether-test-plugin (built only for the
tests). The table of in-process cases is in tests/unit/skel_test.cc; here we prove the process
boundary: stdout carries exactly one JSON document, stderr the logs, the exit code, and a
delegate's error comes back unchanged."""
import json
import os
import subprocess

import pytest

from conftest import BIN, REF_BIN, run_plugin, ok

PLUGIN = "tether-test-plugin"


def conf(**extra):
    c = {"cniVersion": "1.1.0", "name": "skelnet", "type": PLUGIN}
    c.update(extra)
    return c


def test_about_without_command():
    p = subprocess.run([str(BIN / PLUGIN)], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"]})
    assert p.returncode == 0
    assert p.stdout == ""
    assert "tether-test-plugin" in p.stderr
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in p.stderr


def test_version_ignores_stdin():
    res = run_plugin(PLUGIN, "VERSION", stdin="garbage")
    assert ok(res) == {"cniVersion": "1.1.0",
                       "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("command,env,stdin,code,text", [
    ("ADD", {"CNI_NETNS": None}, None, 4, "[CNI_NETNS]"),
    ("ADD", {"CNI_CONTAINERID": ""}, None, 3, "missing containerID"),
    ("ADD", {"CNI_CONTAINERID": "bad/id"}, None, 4, "containerID"),
    ("ADD", {"CNI_IFNAME": "a" * 16}, None, 4, "too long"),
    ("ADD", {"CNI_ARGS": "IP"}, None, 4, "invalid pair"),
    ("ADD", {}, "{", 6, "not valid JSON"),
    ("ADD", {}, json.dumps({"cniVersion": "1.1.0", "type": PLUGIN}), 7, "name"),
    ("ADD", {}, json.dumps({"cniVersion": "0.2.0", "name": "n", "type": PLUGIN}), 1,
     "plugin supports"),
    ("CHECK", {}, json.dumps({"cniVersion": "0.3.1", "name": "n", "type": PLUGIN}), 1,
     "does not allow CHECK"),
    ("GC", {}, json.dumps({"cniVersion": "1.0.0", "name": "n", "type": PLUGIN}), 1,
     "does not allow GC"),
    ("STATUS", {}, json.dumps({"cniVersion": "1.0.0", "name": "n", "type": PLUGIN}), 1,
     "does not allow STATUS"),
    ("BOGUS", {}, None, 4, "unknown CNI_COMMAND"),
])
def test_errors_are_json_on_stdout(command, env, stdin, code, text):
    res = run_plugin(PLUGIN, command, conf(), netns="/run/netns/none", env=env, stdin=stdin)
    assert res.rc == 1, res
    assert res.code == code, res
    assert text in res.json["msg"] + " " + res.json.get("details", "")
    # Exactly one JSON document and nothing else on stdout.
    assert res.stdout.count("\n") == 1


def test_add_del_check_status_gc_dispatch(tmpdir_run):
    record = tmpdir_run / "calls"
    for cmd in ["ADD", "CHECK", "DEL", "STATUS", "GC"]:
        res = run_plugin(PLUGIN, cmd, conf(recordFile=str(record)), containerid="c1",
                         netns="/run/netns/none", env={"CNI_NETNS": None} if cmd == "DEL" else {})
        assert res.rc == 0, res
        if cmd != "ADD":
            assert res.stdout == ""
    assert record.read_text().split("\n")[:-1] == [
        "ADD c1 eth0", "CHECK c1 eth0", "DEL c1 eth0", "STATUS  ", "GC  "]


def test_prev_result_passes_through():
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "10.9.0.2/24", "interface": 0}], "dns": {}}
    out = ok(run_plugin(PLUGIN, "ADD", conf(cniVersion="1.0.0", prevResult=prev),
                        netns="/run/netns/none"))
    assert out == prev


def test_delegation_returns_delegate_result_and_error_unchanged(tmpdir_run):
    # The reference host-local as the delegate: a real IPAM result comes back.
    ipam = {"type": "host-local", "subnet": "10.213.0.0/24", "dataDir": str(tmpdir_run)}
    c = conf(cniVersion="0.4.0", ipam=ipam)
    out = ok(run_plugin(PLUGIN, "ADD", c, netns="/run/netns/none", path=f"{BIN}:{REF_BIN}"))
    assert out["ips"] == [{"version": "4", "address": "10.213.0.2/24", "gateway": "10.213.0.1",
                           "interface": 0}]
    assert ok(run_plugin(PLUGIN, "DEL", c, path=f"{BIN}:{REF_BIN}")) is None
    assert sorted(p.name for p in (tmpdir_run / "skelnet").iterdir()) == [
        "last_reserved_ip.0", "lock"]

    # A delegate's error keeps its code, msg and details.
    failing = conf(ipam={"type": PLUGIN, "failWith": {"code": 123, "msg": "m", "details": "d"}})
    res = run_plugin(PLUGIN, "ADD", failing, netns="/run/netns/none")
    assert res.rc == 1
    assert res.json == {"cniVersion": "1.1.0", "code": 123, "msg": "m", "details": "d"}


def test_delegate_not_in_path():
    res = run_plugin(PLUGIN, "ADD", conf(ipam={"type": "no-such-plugin"}), netns="/run/netns/none")
    assert res.rc == 1
    assert "failed to find plugin \"no-such-plugin\"" in res.json["msg"]
