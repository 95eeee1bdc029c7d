"""IPAM end to end: emulator over HTTP, the watch engine, the cluster role's real /metrics, in
every Calico flavour (``calico_api``: v1, native v3, both).

Expected figures are recomputed in the test from the raw objects the emulator holds
(``ipam_reference.reference``), never taken from the exporter's own code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.sim.errors import ApiError
from exporter.sim.scenario import load
from tests.e2e.lab import Lab, Samples, start_lab, stop_lab, value
from tests.ipam.ipam_reference import Reference, reference


def _gauges(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """name's samples keyed by the given label values, zero values dropped."""
    out: dict[tuple[str, ...], float] = {}
    for (metric, lbls), v in samples.items():
        if metric == name and v:
            d = dict(lbls)
            out[tuple(d[k] for k in labels)] = v
    return out


def mismatches(samples: Samples, ref: Reference) -> list[str]:
    """Every family whose exported series differ from the reference (empty when all agree)."""
    checks: list[tuple[str, tuple[str, ...], dict[Any, int]]] = [
        ("calico_ippool_size_addresses", ("pool",), {(k,): v for k, v in ref.pool_size.items()}),
        ("calico_ippool_allocated_addresses", ("pool",),
         {(k,): v for k, v in ref.pool_allocated.items() if v}),
        ("calico_ippool_blocks", ("pool",), {(k,): v for k, v in ref.pool_blocks.items() if v}),
        ("calico_ippool_blocks_capacity", ("pool",),
         {(k,): v for k, v in ref.pool_capacity.items()}),
        ("calico_ipam_block_allocated_addresses", ("pool", "block", "node"),
         {k: v for k, v in ref.block_allocated.items() if v}),
        ("calico_ipam_block_size_addresses", ("pool", "block", "node"), dict(ref.block_size)),
        ("calico_ipam_node_allocated_addresses", ("node", "pool"),
         {k: v for k, v in ref.node_allocated.items() if v}),
        ("calico_ipam_node_blocks", ("node", "pool"),
         {k: v for k, v in ref.node_blocks.items() if v}),
        ("calico_ipam_borrowed_addresses", ("node", "pool"),
         {k: v for k, v in ref.borrowed.items() if v}),
    ]
    bad = []
    for name, labels, expected in checks:
        got = _gauges(samples, name, *labels)
        if got != {k: float(v) for k, v in expected.items()}:
            bad.append(f"{name}: exported {got} != reference {expected}")
    for pool, size in ref.pool_size.items():
        ratio = value(samples, "calico_ippool_utilization_ratio", pool=pool)
        if ratio != ref.pool_allocated[pool] / size:
            bad.append(f"utilization of {pool}: {ratio}")
    return bad


def lab_reference(lab: Lab, *, skip: Callable[[dict[str, Any]], bool] = lambda b: False
                  ) -> Reference:
    api = lab.apiserver
    return reference(api.list(lab.calico("ippools")),
                     [b for b in api.list(lab.calico("ipamblocks")) if not skip(b)])


async def wait_matching(lab: Lab, ref: Reference, **endpoints: int) -> Samples:
    """Scrape until the IPAM figures match ``ref`` and ``calico_workload_endpoints{node}`` equals
    ``endpoints[node]`` (pods and IPAM objects arrive through different watches)."""

    def ready(samples: Samples) -> bool:
        return not mismatches(samples, ref) and all(
            value(samples, "calico_workload_endpoints", node=node) == n
            for node, n in endpoints.items())

    samples = await lab.wait_for(ready, what="IPAM figures")
    assert mismatches(samples, ref) == []
    return samples


@pytest.fixture
async def exhaustion(tmp_path: Path, calico_api: str) -> AsyncIterator[Lab]:
    """ipam-exhaustion with a one-second leak grace period."""
    lab = await start_lab(tmp_path, scenario="ipam-exhaustion", leak_grace_period="1s",
                          calico_api=calico_api)
    try:
        yield lab
    finally:
        await stop_lab(lab)


async def test_nke_lab_write_up_blocks(tmp_path: Path, calico_api: str) -> None:
    """nke-lab: the /16 pool has 65536 addresses; worker-1's block holds 11, worker-0's 9, of 64."""
    lab = await start_lab(tmp_path, calico_api=calico_api)
    try:
        worker_1 = "nke-dev01-89e792-worker-1"
        samples = await wait_matching(lab, lab_reference(lab), **{worker_1: 11})
        assert value(samples, "calico_ippool_size_addresses", pool="default-ipv4-ippool") == 65536
        for block, node, used in (("172.20.116.128/26", "nke-dev01-89e792-worker-1", 11),
                                  ("172.20.188.64/26", "nke-dev01-89e792-worker-0", 9)):
            labels = {"pool": "default-ipv4-ippool", "block": block, "node": node}
            assert value(samples, "calico_ipam_block_allocated_addresses", **labels) == used
            assert value(samples, "calico_ipam_block_size_addresses", **labels) == 64
    finally:
        await stop_lab(lab)


async def test_exhausted_pool_makes_a_node_borrow(exhaustion: Lab) -> None:
    """ipam-exhaustion: pool, block and node figures, borrowed included, equal the reference."""
    ref = lab_reference(exhaustion)
    assert ref.borrowed[("node-c", "tight-ipv4-ippool")] == 8
    assert ref.borrowed[("node-c", "tight-ipv6-ippool")] == 8
    assert ref.pool_blocks["tight-ipv4-ippool"] == ref.pool_capacity["tight-ipv4-ippool"] == 4
    # node-c's leaked pod is gone: 7 of its 8 pods are endpoints
    samples = await wait_matching(exhaustion, ref, **{"node-a": 30, "node-b": 20, "node-c": 7})
    assert value(samples, "calico_ipam_borrowed_addresses", node="node-a",
                 pool="tight-ipv4-ippool") == 0


async def test_dual_stack_figures(tmp_path: Path, calico_api: str) -> None:
    """dual-stack: IPv4 and IPv6 pools, blocks and borrowed fixed IPs equal the reference."""
    lab = await start_lab(tmp_path, scenario="dual-stack", calico_api=calico_api)
    try:
        ref = lab_reference(lab)
        assert sum(v for (_, pool), v in ref.borrowed.items() if "ipv6" in pool) == 2
        # ds-node-1: its 4 cart pods; the other nodes add a single-stack and a fixed-IP pod
        samples = await wait_matching(lab, ref, **{"ds-node-1": 4, "ds-node-2": 6,
                                                   "ds-node-3": 6})
        info = [dict(lbl) for (name, lbl) in samples if name == "calico_ippool_info"]
        assert {(i["pool"], i["cidr"], i["block_size"], i["vxlan_mode"]) for i in info} == {
            ("default-ipv4-ippool", "10.244.0.0/16", "26", "CrossSubnet"),
            ("default-ipv6-ippool", "fd00:10:244::/56", "122", "Never"),
        }
    finally:
        await stop_lab(lab)


async def test_leak_shows_after_grace_and_clears_on_release(exhaustion: Lab) -> None:
    """The leaked pod shows 1 leaked address per family after the grace period, 0 once released."""
    leaked = {("tight-ipv4-ippool", "node-c"), ("tight-ipv6-ippool", "node-c")}

    def leaks(samples: Samples) -> dict[tuple[str, ...], float]:
        return _gauges(samples, "calico_ipam_leaked_addresses", "pool", "node")

    await exhaustion.wait_for(lambda s: set(leaks(s)) == leaked, what="leaked addresses")
    samples = await exhaustion.samples()
    assert leaks(samples) == dict.fromkeys(leaked, 1.0)
    handles = {
        a["handle_id"] for b in exhaustion.apiserver.list(exhaustion.calico("ipamblocks"))
        for a in b["spec"]["attributes"] if a["secondary"].get("pod") == "job-7"
    }
    assert len(handles) == 1
    exhaustion.cluster.ipam.release_handle(handles.pop())
    samples = await exhaustion.wait_for(lambda s: not leaks(s), what="leak released")
    for pool, node in leaked:
        assert value(samples, "calico_ipam_leaked_addresses", pool=pool, node=node) == 0
    await wait_matching(exhaustion, lab_reference(exhaustion))


def _malformed(lab: Lab, name: str, cidr: str,
               mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    size = 16
    spec: dict[str, Any] = {
        "cidr": cidr, "strictAffinity": False,
        "allocations": [0] + [None] * (size - 1), "unallocated": list(range(1, size)),
        "attributes": [{"handle_id": "k8s-pod-network.bad", "secondary": {
            "node": "node-c", "namespace": "batch", "pod": "bad"}}],
    }
    mutate(spec)
    return lab.calico_object("IPAMBlock", name, spec=spec)


async def test_malformed_blocks_are_counted_and_skipped(exhaustion: Lab) -> None:
    """Bad CIDR, too many allocations, dangling index: counted, skipped, other series right.
    The native v3 CRD declares ``format: cidr``, so there the API server refuses the bad CIDR
    itself (422) and only the other two reach the exporter."""
    ref = lab_reference(exhaustion)
    await wait_matching(exhaustion, ref)
    bad_cidr = _malformed(exhaustion, "bad-cidr", "10.30.0.300/28", lambda s: None)
    bad = [
        _malformed(exhaustion, "too-long", "10.30.0.64/28",
                   lambda s: s["allocations"].append(None)),
        _malformed(exhaustion, "dangling", "fd00:30::40/124",
                   lambda s: s["allocations"].__setitem__(0, 4)),
    ]
    if exhaustion.calico_api_version == "projectcalico.org/v3":
        with pytest.raises(ApiError) as refused:
            exhaustion.apiserver.create(bad_cidr)
        assert refused.value.status == 422
    else:
        bad.append(bad_cidr)
    for obj in bad:
        exhaustion.apiserver.create(obj)

    def counted(samples: Samples) -> bool:
        # the resource label is the kubectl-style name, ipamblocks.crd.projectcalico.org
        return sum(v for (name, lbl), v in samples.items()
                   if name == "calico_exporter_invalid_objects_total"
                   and dict(lbl)["resource"].split(".")[0] == "ipamblocks") == len(bad)

    samples = await exhaustion.wait_for(counted, what="invalid objects counted")
    assert mismatches(samples, ref) == []
    assert not any(lbl for (name, lbl) in samples if name == "calico_ipam_block_size_addresses"
                   and dict(lbl)["block"] in ("10.30.0.64/28", "fd00:30::40/124"))


def test_scenarios_load() -> None:
    """The IPAM scenarios parse with the scenario loader."""
    assert len(load("ipam-exhaustion").pods) == 61
    assert load("dual-stack").blocks == (("10.244.10.0/26", "ds-node-1"),
                                          ("fd00:10:244::/122", "ds-node-1"))


async def test_overlapping_pool_is_not_usable(tmp_path: Path, calico_api: str) -> None:
    """kube-controllers' FV case "should mark overlapping IP pools with a status condition"
    (pool_controller_test.go, master 87c1590): test-pool 192.168.1.0/24, then overlapping-pool
    192.168.0.0/16. With native v3 CRDs the controller marks the second Allocatable=False and
    calico_ippool_info says usable="false"; the v1 CRDs have no status, so there both stay
    usable="true"."""
    lab = await start_lab(tmp_path, calico_api=calico_api)
    try:
        for second, (name, cidr) in enumerate((("test-pool", "192.168.1.0/24"),
                                               ("overlapping-pool", "192.168.0.0/16"))):
            lab.apiserver.seed([lab.calico_object(
                "IPPool", name, spec={"cidr": cidr},
                creationTimestamp=f"2026-01-01T00:00:0{second}Z")])
        v3 = calico_api == "v3"

        def info(samples: Samples, pool: str) -> list[str]:
            return [dict(lbl)["usable"] for (name, lbl) in samples
                    if name == "calico_ippool_info" and dict(lbl)["pool"] == pool]

        samples = await lab.wait_for(
            lambda s: info(s, "overlapping-pool") == ["false" if v3 else "true"],
            what="the overlapping pool's usable label")
        assert info(samples, "test-pool") == ["true"]
        assert info(samples, "default-ipv4-ippool") == ["true"]
    finally:
        await stop_lab(lab)
