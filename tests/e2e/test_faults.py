"""Issue 2: the exporter survives every injected API fault and converges to the emulator's truth,
with Calico's data in crd.projectcalico.org/v1 and in native projectcalico.org/v3 CRDs."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from tests.e2e.lab import Lab, Samples, start_lab, stop_lab, value

MASTER = "nke-dev01-89e792-master-0"
WORKER0 = "nke-dev01-89e792-worker-0"
POOL = "default-ipv4-ippool"


def truth_allocated(lab: Lab) -> int:
    """Addresses in use in the pool, computed straight from the emulator's IPAMBlocks."""
    total = 0
    for block in lab.apiserver.list(lab.calico("ipamblocks")):
        spec = block["spec"]
        if block["metadata"]["name"] == "broken-block":
            continue
        size = ipaddress.ip_network(spec["cidr"]).num_addresses
        total += size - len(spec["unallocated"])
    return total


def truth_peers(lab: Lab) -> dict[tuple[str, str], float]:
    """(node, peer_ip) -> 1/0 from the emulator's CalicoNodeStatus objects."""
    out = {}
    for obj in lab.apiserver.list(lab.calico("caliconodestatuses")):
        for peer in (obj.get("status") or {}).get("bgp", {}).get("peersV4", []):
            out[(obj["spec"]["node"], peer["peerIP"])] = float(peer["state"] == "Established")
    return out


def restarts(samples: Samples, reason: str) -> float:
    return sum(v for (name, labels), v in samples.items()
               if name == "calico_exporter_watch_restarts_total" and ("reason", reason) in labels)


def matches_truth(lab: Lab, samples: Samples) -> bool:
    if value(samples, "calico_ippool_allocated_addresses", pool=POOL) != truth_allocated(lab):
        return False
    for (node, peer_ip), up in truth_peers(lab).items():
        got = [v for (name, labels), v in samples.items() if name == "calico_bgp_peer_up"
               and ("node", node) in labels and ("peer_ip", peer_ip) in labels]
        if got != [up]:
            return False
    return True


@pytest.mark.parametrize("calico_api", ["v1", "v3"])
async def test_survives_faults_and_converges(tmp_path: Path, calico_api: str) -> None:
    """410s, compaction, 500s, 429 with Retry-After, dropped and stalled streams and an object
    that fails to parse: the exporter keeps running, ends equal to the truth, and counts it all."""
    lab = await start_lab(tmp_path, calico_api=calico_api)
    try:
        await lab.wait_for(lambda s: matches_truth(lab, s) and value(
            s, "calico_bgp_peers", node=MASTER, ip_version="4", state="established") == 2,
            what="initial sync")
        api = lab.apiserver
        api.inject("watch_error_410", path="*/caliconodestatuses", count=1)
        api.inject("status", path="/api/v1/pods", count=3, code=500)
        api.inject("status", path="/api/v1/nodes", count=1, code=429, retry_after=1)
        api.inject("drop", path="*/ipamblocks", count=1)
        api.inject("status", path="*/blockaffinities", count=2, code=503)
        # The world changes while the faults are active.
        lab.cluster.set_session(MASTER, WORKER0, up=False)
        lab.cluster.delete_pod("guestbook", "frontend-795b566649-j4r75")
        api.create(lab.calico_object(
            "IPAMBlock", "broken-block",
            spec={"cidr": "172.20.200.0/30", "allocations": [0, None, None, None],
                  "unallocated": [1, 2, 3], "attributes": [], "strictAffinity": False}))
        await asyncio.sleep(1.0)
        api.compact()  # every watcher that reconnects now with an old resourceVersion gets 410
        api.inject("drop", path="*", count=4)
        await asyncio.sleep(1.0)
        got = await lab.wait_for(lambda s: matches_truth(lab, s)
                                 and restarts(s, "expired") >= 1
                                 and restarts(s, "server_error") >= 1
                                 and restarts(s, "throttled") >= 1
                                 and restarts(s, "connection") >= 1,
                                 timeout=30, what="convergence after faults")
        # A stream that goes silent (no events, no bookmarks) is restarted after the
        # inactivity timeout (2 s here) and catches up with what happened meanwhile.
        api.inject("stall", path="*/ipamblocks", count=1, seconds=30)
        api.inject("drop", path="*/ipamblocks", count=1)
        await lab.wait_for(lambda s: restarts(s, "connection") >= 2, what="reconnect")
        lab.cluster.delete_pod("guestbook", "redis-leader-c767d6dbb-t5t8j")
        got = await lab.wait_for(lambda s: restarts(s, "inactivity") >= 1
                                 and matches_truth(lab, s)
                                 and value(s, "calico_exporter_source_up",
                                           source="kubernetes") == 1, timeout=30,
                                 what="recovery from a stalled stream")
        assert value(got, "calico_bgp_peer_up", node=MASTER, ip_version="4",
                     peer_ip="192.168.102.103", peer_type="NodeMesh") == 0
        assert value(got, "calico_exporter_invalid_objects_total",
                     resource="ipamblocks.crd.projectcalico.org") >= 1  # once per (re)list
        assert not lab.task.done()  # type: ignore[union-attr]
    finally:
        await stop_lab(lab)
