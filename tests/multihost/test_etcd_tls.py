"""The cluster file's optional client TLS (issue 11): etcd serving https and requiring a client
certificate signed by its CA. With `tls` {cert, key, ca} in the cluster file, cluster-mode
host-local (through tether-agent) claims its block over TLS; without a client certificate the
same ADD is refused by etcd and fails with code 11, leaving no lease."""
import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ETCD_ADDR, ETCD_PORT, sh
from test_cluster_ipam import CLUSTER_RANGE, add_ok, ipam_conf

TLS_PORT = ETCD_PORT + 10


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    """A CA, etcd's server certificate for ETCD_ADDR and one client certificate, in d. etcd 3.4's
    HTTP gateway dials its own gRPC port with the server certificate, so with client-cert-auth
    that certificate must be good for clientAuth too."""
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=tether-test-ca", cwd=d)
    for name, usage, san in (("server", "serverAuth,clientAuth", f"IP:{ETCD_ADDR}"),
                             ("client", "clientAuth", "DNS:tether-client")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                f"{name}.ext", cwd=d)


class TlsEtcd:
    """A second etcd in the underlay namespace: https only, client certificates required."""

    def __init__(self, cluster, certs):
        self.ns = cluster.ul
        self.certs = certs
        self.url = f"https://{ETCD_ADDR}:{TLS_PORT}"
        data = Path(cluster.dir) / "etcd-tls"
        peer = f"http://{ETCD_ADDR}:{TLS_PORT + 1}"
        with open(f"{data}.log", "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "etcd", "--name=tls", f"--data-dir={data}",
                 f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
                 f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                 f"--initial-cluster=tls={peer}", "--log-level=error",
                 f"--cert-file={certs}/server.pem", f"--key-file={certs}/server.key",
                 f"--trusted-ca-file={certs}/ca.pem", "--client-cert-auth"],
                stdout=log, stderr=log)
        deadline = time.time() + 15
        while True:
            p = subprocess.run(["ip", "netns", "exec", self.ns, *self.ctl_args(),
                                "--dial-timeout=300ms", "endpoint", "health"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                return
            if time.time() > deadline:
                self.kill()
                raise AssertionError(f"TLS etcd did not start; see {data}.log")
            time.sleep(0.1)

    def ctl_args(self):
        c = self.certs
        return ["etcdctl", f"--endpoints={self.url}", f"--cacert={c}/ca.pem",
                f"--cert={c}/client.pem", f"--key={c}/client.key"]

    def keys(self, prefix):
        out = sh(*self.ctl_args(), "get", "--prefix", "--keys-only", prefix, ns=self.ns)
        return [k for k in out.splitlines() if k]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tls_etcd(cluster):
    certs = Path(cluster.dir) / "tls"
    make_certs(certs)
    e = TlsEtcd(cluster, certs)
    try:
        yield e
    finally:
        e.kill()


def point_at(host, etcd, tls):
    cfg = json.loads(host.cluster_file.read_text())
    cfg["etcd"] = [etcd.url]
    if tls is None:
        cfg.pop("tls", None)
    else:
        cfg["tls"] = tls
    host.cluster_file.write_text(json.dumps(cfg))


def test_block_claimed_over_tls_and_refused_without_a_client_certificate(cluster, tls_etcd):
    c = tls_etcd.certs
    ok, bare = cluster.add_host(), cluster.add_host()
    point_at(ok, tls_etcd, {"cert": str(c / "client.pem"), "key": str(c / "client.key"),
                            "ca": str(c / "ca.pem")})
    point_at(bare, tls_etcd, {"ca": str(c / "ca.pem")})

    a, gw = add_ok(ok, ipam_conf(ok, block_size=24), "tls1")
    assert gw == a.network.network_address + 1
    blocks = tls_etcd.keys(f"{cluster.prefix}/blocks/")
    block = f"{CLUSTER_RANGE}/{a.network}".replace("/", "-").replace("-10.", "/10.")
    assert blocks == [f"{cluster.prefix}/blocks/{block}"], blocks
    # The plain etcd of the harness saw nothing: the claim went over TLS.
    assert cluster.etcd.keys(f"{cluster.prefix}/blocks/") == []

    # The server is verified and the client is not: etcd refuses the handshake.
    r = bare.plugin("host-local", "ADD", ipam_conf(bare, block_size=24), containerid="tls2")
    assert r.rc != 0 and r.json["code"] == 11, r
    leases = [p.name for p in (bare.data_dir / "mh").glob("*")
              if p.name != "lock" and not p.name.startswith("last_reserved_ip")]
    assert leases == [], leases
    assert len(tls_etcd.keys(f"{cluster.prefix}/blocks/")) == 1

    assert ok.plugin("host-local", "DEL", ipam_conf(ok, block_size=24), containerid="tls1").rc == 0
