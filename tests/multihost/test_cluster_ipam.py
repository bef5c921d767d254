"""host-local in cluster mode across simulated hosts (conftest.py): block claims through
tether-agent and etcd, parallel ADDs, agent restarts, an etcd outage, GC releasing blocks."""
import ipaddress
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOT

CLUSTER_RANGE = "10.32.0.0/16"


def ipam_conf(host, block_size=28, subnet=CLUSTER_RANGE, **extra):
    ipam = {"type": "host-local", "cluster": str(host.cluster_file), "subnet": subnet,
            "blockSize": block_size, "dataDir": str(host.data_dir)}
    ipam.update(extra)
    return {"cniVersion": "1.1.0", "name": "mh", "type": "bridge", "ipam": ipam}


def add_ok(host, conf, cid):
    r = host.plugin("host-local", "ADD", conf, containerid=cid)
    assert r.rc == 0, r
    ip = r.json["ips"][0]
    return ipaddress.ip_interface(ip["address"]), ipaddress.ip_address(ip["gateway"])


def etcd_blocks(cluster):
    """{block: node} as etcd holds them."""
    out = {}
    for key in cluster.etcd.keys(f"{cluster.prefix}/blocks/"):
        block = key.rsplit("/", 1)[1].replace("-", "/")
        out[ipaddress.ip_network(block)] = cluster.etcd.get(key)
    return out


def test_parallel_adds_on_three_hosts_never_share_an_address(three_hosts):
    c = three_hosts
    jobs = [(h, f"c{h.index}-{i}") for h in c.hosts for i in range(20)]

    def add(job):
        h, cid = job
        return h, cid, h.plugin("host-local", "ADD", ipam_conf(h), containerid=cid)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(add, jobs))
    for _, _, r in results:
        assert r.rc == 0, r
    addrs = [ipaddress.ip_interface(r.json["ips"][0]["address"]) for _, _, r in results]
    assert len({a.ip for a in addrs}) == 60
    owners = etcd_blocks(c)
    # A /28 holds 13 containers (network, gateway and broadcast excluded): every host needed
    # two blocks, and every address lies in a block etcd gives to the host that handed it out.
    for (h, _, r), a in zip(results, addrs):
        assert a.network.prefixlen == 28
        assert owners[a.network] == h.name
        gw = ipaddress.ip_address(r.json["ips"][0]["gateway"])
        assert gw == a.network.network_address + 1
        assert a.ip != gw
    for h in c.hosts:
        mine = [b for b, n in owners.items() if n == h.name]
        assert len(mine) == 2, owners
        # The node record lists the same blocks.
        rec = json.loads(c.etcd.get(f"{c.prefix}/nodes/{h.name}"))
        assert sorted(rec["blocks"]) == sorted(str(b) for b in mine)
        assert rec["address"] == h.address
    # DEL is local: every lease file goes.
    for h, cid, _ in results:
        assert h.plugin("host-local", "DEL", ipam_conf(h), containerid=cid).rc == 0
    for h in c.hosts:
        assert [p.name for p in (h.data_dir / "mh").iterdir()
                if p.name[0].isdigit()] == []


def test_same_block_after_agent_restart_and_lost_cache(cluster):
    h = cluster.add_host()
    conf = ipam_conf(h, block_size=24)
    a1, _ = add_ok(h, conf, "a1")
    pid = h.agent_pid()
    assert pid
    h.stop_agent()
    # host-local's cache of its blocks is gone as well: the restarted agent (started on demand
    # by the next ADD) gives back the same block, from its state dir.
    (h.data_dir / "mh" / "cluster-blocks.json").unlink()
    a2, _ = add_ok(h, conf, "a2")
    assert h.agent_pid() not in (None, pid)
    assert a2.network == a1.network
    assert a2.ip != a1.ip
    # And with the agent's state dir gone too: etcd's record of the node brings it back.
    h.stop_agent()
    (h.data_dir / "mh" / "cluster-blocks.json").unlink()
    (h.state_dir / "claims.json").unlink()
    h.agent("run", "--daemonize")
    deadline = time.time() + 5
    while time.time() < deadline and '"claims": []' in h.agent("status", "--json").replace("\n", ""):
        time.sleep(0.1)
    a3, _ = add_ok(h, conf, "a3")
    assert a3.network == a1.network
    assert etcd_blocks(cluster) == {a1.network: "h1"}


def test_etcd_outage_held_blocks_keep_working_and_new_adds_succeed_after(cluster):
    h1, h2 = cluster.add_host(), cluster.add_host()
    confs = {h: ipam_conf(h, block_size=28) for h in (h1, h2)}
    for h in (h1, h2):
        add_ok(h, confs[h], "first")
    cluster.etcd.kill()
    # Inside the held block: no etcd needed (12 more fit in a /28 after the first).
    for i in range(12):
        add_ok(h1, confs[h1], f"during{i}")
    # The block is full: a new one needs etcd, which is away: code 11, nothing leased.
    r = h1.plugin("host-local", "ADD", confs[h1], containerid="overflow")
    assert r.rc != 0 and r.code == 11, r
    # DEL never needs etcd.
    assert h1.plugin("host-local", "DEL", confs[h1], containerid="during0").rc == 0
    cluster.etcd.start()
    # Back: the overflow claims a second block; the freed address is reused too.
    seen = set()
    for i in range(3):
        a, _ = add_ok(h1, confs[h1], f"after{i}")
        seen.add(a.network)
    add_ok(h2, confs[h2], "after")
    owners = etcd_blocks(cluster)
    assert sorted(owners.values()) == ["h1", "h1", "h2"]
    assert seen <= {b for b, n in owners.items() if n == "h1"}
    # The agents republished after the outage.
    for h in (h1, h2):
        deadline = time.time() + 10
        while time.time() < deadline and cluster.etcd.get(f"{cluster.prefix}/nodes/{h.name}") is None:
            time.sleep(0.1)
        assert cluster.etcd.get(f"{cluster.prefix}/nodes/{h.name}") is not None


def test_status_50_when_no_block_can_be_claimed_and_gc_releases_empty_blocks(cluster):
    h1, h2 = cluster.add_host(), cluster.add_host()
    # 10.40.0.0/27 holds two /28 blocks: one per host.
    c1 = ipam_conf(h1, block_size=28, subnet="10.40.0.0/27", releaseEmptyBlocks=True)
    c2 = ipam_conf(h2, block_size=28, subnet="10.40.0.0/27")
    add_ok(h1, c1, "x")
    add_ok(h2, c2, "y")
    assert h1.plugin("host-local", "STATUS", c1).rc == 0
    for i in range(12):
        add_ok(h2, c2, f"fill{i}")
    r = h2.plugin("host-local", "STATUS", c2)
    assert r.rc != 0 and r.code == 50, r
    r = h2.plugin("host-local", "ADD", c2, containerid="one-too-many")
    assert r.rc != 0 and r.code == 50, r
    # h1 empties its block and GC gives it back; then h2 can grow into it.
    assert h1.plugin("host-local", "DEL", c1, containerid="x").rc == 0
    gc = dict(c1, **{"cni.dev/valid-attachments": []})
    assert h1.plugin("host-local", "GC", gc).rc == 0, "GC failed"
    assert list(etcd_blocks(cluster).values()) == ["h2"]
    assert h2.plugin("host-local", "STATUS", c2).rc == 0
    a, _ = add_ok(h2, c2, "one-more")
    assert etcd_blocks(cluster)[a.network] == "h2"


def test_block_claim_is_amortised_over_the_block(cluster):
    """31 ADDs in cluster mode make one block claim, logged once by the agent: only the first
    ADD asked the agent for a block (latencies and etcd round trips: bench/cluster.py)."""
    h = cluster.add_host()
    on = ipam_conf(h, block_size=24)
    addrs = {add_ok(h, on, f"on{i}")[0] for i in range(31)}
    assert len({a.network for a in addrs}) == 1 and len(addrs) == 31
    assert len(etcd_blocks(cluster)) == 1
    assert (h.state_dir / "agent.log").read_text().count("claimed ") == 1


def test_conf_example_allocates_per_host_blocks(cluster):
    """conf-examples/80-overlay.conflist's host-local, with this run's paths, and the shape of
    conf-examples/cluster.json; GC with releaseEmptyBlocks gives the blocks back."""
    example = json.loads((ROOT / "conf-examples" / "80-overlay.conflist").read_text())
    shape = json.loads((ROOT / "conf-examples" / "cluster.json").read_text())
    assert set(shape) == {"etcd", "node", "address"}
    hosts = [cluster.add_host(), cluster.add_host()]
    nets = []
    for h in hosts:
        conf = {"cniVersion": example["cniVersion"], "name": example["name"], "type": "bridge",
                "ipam": dict(example["plugins"][0]["ipam"], cluster=str(h.cluster_file),
                             dataDir=str(h.data_dir), releaseEmptyBlocks=True)}
        a, gw = add_ok(h, conf, "ex")
        assert a.network.prefixlen == 24
        assert a.network.subnet_of(ipaddress.ip_network("10.32.0.0/12"))
        assert gw == a.network.network_address + 1
        nets.append(a.network)
        assert h.plugin("host-local", "DEL", conf, containerid="ex").rc == 0
        gc = dict(conf, **{"cni.dev/valid-attachments": []})
        assert h.plugin("host-local", "GC", gc).rc == 0
    assert nets[0] != nets[1]
    assert etcd_blocks(cluster) == {}  # releaseEmptyBlocks gave both back
