"""The benchmark generator, churn driver and harness CLI, against the real API emulator."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from bench import generate as g
from bench.churn import Churn
from exporter.sim.apiserver import ApiServer
from exporter.sim.scenario import parse

ROOT = Path(__file__).resolve().parents[2]
SMALL = g.BenchSpec(nodes=7, routes=30, pods=50, policies=20, blocks=9, reflectors=2,
                    pods_per_namespace=15)


def seeded(spec: g.BenchSpec) -> tuple[ApiServer, g.Generated]:
    api = ApiServer(token=None, system_namespaces=False)
    gen = g.generate(spec)
    api.seed(gen.objects)
    return api, gen


async def test_generated_cluster_is_accepted_with_requested_counts() -> None:
    """Every generated object passes the emulator's schema validation, in the requested numbers."""
    api, gen = seeded(SMALL)
    want = g.expected_counts(SMALL)
    got = {resource: len(api.list(resource)) for resource in want}
    assert got == want
    assert gen.counts == want
    assert want["pods"] == 50
    assert want["nodes"] == 7
    assert want["ipamblocks"] == 9
    assert (want["networkpolicies.networking.k8s.io"]
            + want["networkpolicies.crd.projectcalico.org"]
            + want["globalnetworkpolicies"]) == 20


async def test_node_statuses_have_the_requested_routes_and_reflector_topology() -> None:
    """Each CalicoNodeStatus lists exactly R routes; reflectors peer with all, others with them."""
    api, _ = seeded(SMALL)
    statuses = api.list("caliconodestatuses.crd.projectcalico.org")
    assert len(statuses) == SMALL.nodes
    for obj in statuses:
        assert obj["metadata"]["labels"] == {g.MANAGED_BY: g.MANAGER}
        node = api.get("nodes", obj["spec"]["node"])
        assert obj["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        assert len(obj["status"]["routes"]["routesV4"]) == SMALL.routes
        peers = obj["status"]["bgp"]["peersV4"]
        reflector = "route-reflector" in node["metadata"]["labels"]
        assert len(peers) == (SMALL.nodes - 1 if reflector else SMALL.reflectors)


async def test_pod_addresses_match_ipam_blocks_and_handles() -> None:
    """Each pod's IP is allocated to its handle in a block affine to the pod's node."""
    api, _ = seeded(SMALL)
    blocks = {b["spec"]["cidr"]: b for b in api.list("ipamblocks")}
    handles = {h["spec"]["handleID"] for h in api.list("ipamhandles")}
    allocated = 0
    for pod in api.list("pods"):
        ip = ipaddress.ip_address(pod["status"]["podIP"])
        cidr = next(c for c in blocks if ip in ipaddress.ip_network(c))
        block = blocks[cidr]["spec"]
        assert block["affinity"] == f"host:{pod['spec']['nodeName']}"
        ordinal = int(ip) - int(ipaddress.ip_network(cidr).network_address)
        attr = block["attributes"][block["allocations"][ordinal]]
        assert attr["secondary"]["pod"] == pod["metadata"]["name"]
        assert attr["handle_id"] in handles
        allocated += 1
    assert allocated == SMALL.pods
    assert sum(64 - len(b["spec"]["unallocated"]) for b in blocks.values()) == SMALL.pods


async def test_churn_changes_stay_valid_and_keep_the_population() -> None:
    """Pod delete/create, status refreshes, policy edits and a flap are accepted by the emulator."""
    api, gen = seeded(SMALL)
    churn = Churn(api, gen)
    rv = api.resource_version
    for _ in range(5):
        churn.delete_pod()
        churn.create_pod()
    churn.write_status(3)
    churn.edit_policy()
    churn.set_session(SMALL.nodes - 1, 0, up=False)
    assert len(api.list("pods")) == SMALL.pods
    assert len(api.list("ipamhandles")) == SMALL.pods
    down = api.get("caliconodestatuses.crd.projectcalico.org",
                   g.status_name(g.node_name(SMALL.nodes - 1)))
    assert down["status"]["bgp"]["numberNotEstablishedV4"] == 1
    assert api.resource_version > rv
    assert churn.stats.errors == []


async def test_burst_writes_the_requested_number_of_events() -> None:
    """A burst commits one new resourceVersion per requested event."""
    api, gen = seeded(SMALL)
    churn = Churn(api, gen)
    result = await churn.burst("pods", 30, batch=7)
    assert result["rv_after"] - result["rv_before"] == 30


def test_scenario_document_parses_with_the_requested_counts() -> None:
    """The scenario form of a generated cluster is a valid scenario of the same size."""
    scenario = parse(g.scenario_doc(SMALL))
    assert len(scenario.nodes) == SMALL.nodes
    assert len(scenario.pods) == SMALL.pods
    assert len(scenario.blocks) == SMALL.blocks
    assert len(scenario.objects) == SMALL.policies
    assert sum(n.route_reflector for n in scenario.nodes) == SMALL.reflectors
    assert not scenario.mesh


def test_spec_rejects_more_pods_than_blocks_hold() -> None:
    """A cluster whose pods cannot fit in its IPAM blocks is refused up front."""
    with pytest.raises(ValueError, match="do not fit"):
        g.BenchSpec(nodes=2, routes=1, pods=1000, policies=0, blocks=2)


def test_harness_help_works() -> None:
    """``python -m bench.harness --help`` exits 0 and documents --quick and --full."""
    out = subprocess.run([sys.executable, "-m", "bench.harness", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout
    assert "--full" in out.stdout
    assert "--write-doc" in out.stdout
