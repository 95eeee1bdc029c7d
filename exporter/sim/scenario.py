"""Scenario files: a simulated Calico cluster described in YAML.

A scenario lists nodes (name, addresses, labels), the BGP topology (full mesh, or route
reflectors that every other node peers with, plus explicit peers), IP pools, pre-claimed IPAM
blocks, namespaces, pods (fixed or allocated IPs), leaks, and any raw objects (policies, network
sets). Built-in scenarios live next to this module in ``scenarios/``; ``load("nke-lab")`` or a
path. Every address in a scenario is data for the simulated API objects, never a network target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIOS = Path(__file__).parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file is not valid; the message names the entry."""


@dataclass(frozen=True)
class SimNode:
    name: str
    ipv4: str
    ipv6: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    route_reflector: bool = False


@dataclass(frozen=True)
class SimPod:
    namespace: str
    name: str
    node: str
    ips: tuple[str, ...] = ()
    ip_versions: tuple[int, ...] = (4,)
    labels: dict[str, str] = field(default_factory=dict)
    host_network: bool = False
    service_account: str = "default"
    phase: str = "Running"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    nodes: tuple[SimNode, ...]
    mesh: bool
    as_number: int
    ippools: tuple[dict[str, Any], ...]
    blocks: tuple[tuple[str, str], ...]
    """Pre-claimed (cidr, node) blocks."""
    strict_affinity: bool
    namespaces: tuple[tuple[str, dict[str, str]], ...]
    pods: tuple[SimPod, ...]
    leaks: tuple[tuple[str, str], ...]
    objects: tuple[dict[str, Any], ...]
    extra_routes: int = 0
    """Extra routes each node's status reports (BGPPeer, from the first peer), for benchmarks."""


def _req(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ScenarioError(f"{where}: missing {key!r}")
    return entry[key]


def parse(doc: dict[str, Any]) -> Scenario:
    if not isinstance(doc, dict):
        raise ScenarioError("scenario must be a mapping")
    bgp = doc.get("bgp") or {}
    reflectors = set(bgp.get("routeReflectors") or ())
    nodes = tuple(
        SimNode(
            name=str(_req(n, "name", "nodes[]")),
            ipv4=str(_req(n, "ipv4", f"node {n.get('name')}")),
            ipv6=str(n.get("ipv6", "")),
            labels={str(k): str(v) for k, v in (n.get("labels") or {}).items()},
            route_reflector=n.get("name") in reflectors,
        )
        for n in doc.get("nodes") or ()
    )
    names = {n.name for n in nodes}
    if len(names) != len(nodes):
        raise ScenarioError("node names must be unique")
    pods = []
    for p in doc.get("pods") or ():
        where = f"pod {p.get('namespace')}/{p.get('name')}"
        node = str(_req(p, "node", where))
        if node not in names:
            raise ScenarioError(f"{where}: unknown node {node!r}")
        ips = tuple(str(i) for i in (p.get("ips") or ([p["ip"]] if p.get("ip") else [])))
        pods.append(
            SimPod(
                namespace=str(_req(p, "namespace", where)),
                name=str(_req(p, "name", where)),
                node=node,
                ips=ips,
                ip_versions=tuple(int(v) for v in (p.get("ipVersions") or (4,))),
                labels={str(k): str(v) for k, v in (p.get("labels") or {}).items()},
                host_network=bool(p.get("hostNetwork", False)),
                service_account=str(p.get("serviceAccount", "default")),
                phase=str(p.get("phase", "Running")),
            )
        )
    ipam = doc.get("ipam") or {}
    namespaces = {str(n["name"]): {str(k): str(v) for k, v in (n.get("labels") or {}).items()}
                  for n in doc.get("namespaces") or ()}
    for pod in pods:
        namespaces.setdefault(pod.namespace, {})
    return Scenario(
        name=str(doc.get("name", "unnamed")),
        description=str(doc.get("description", "")),
        nodes=nodes,
        mesh=bool(bgp.get("mesh", True)) and not reflectors,
        as_number=int(bgp.get("asNumber", 64512)),
        ippools=tuple(doc.get("ippools") or ()),
        blocks=tuple((str(b["cidr"]), str(b["node"])) for b in ipam.get("blocks") or ()),
        strict_affinity=bool(ipam.get("strictAffinity", False)),
        namespaces=tuple(sorted(namespaces.items())),
        pods=tuple(pods),
        leaks=tuple((str(x["namespace"]), str(x["pod"])) for x in doc.get("leaks") or ()),
        objects=tuple(doc.get("objects") or ()),
        extra_routes=int(bgp.get("extraRoutes", 0)),
    )


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIOS / f"{name_or_path}.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {name_or_path}: {exc.strerror}") from None
    return parse(doc)
