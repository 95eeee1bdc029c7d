"""The ClusterRole of deploy/base is the least privilege the cluster role needs, shown against the
API emulator enforcing its rules, with Calico's data in crd.projectcalico.org/v1, in native
projectcalico.org/v3 CRDs, and in v1 behind the Calico API server (both): under each flavour the
whole scenario (initial sync, statuses created, a drifted status repaired, a node removed, a
status of ours left without a node deleted) runs without one 403 and uses every grant of the
role for its own Calico group, and nothing of the other (so every grant is used under some
flavour); and each rule, and each verb of each rule, once taken away, makes some request of the
exporter fail with 403 under every flavour whose Calico group the rule names (every rule of
another group under both Calico groups' flavours).
"""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.nodestatus.refresher import MANAGED_BY, MANAGER
from exporter.sim.apiserver import RequestRecord
from tests.e2e.lab import Lab, start_lab, stop_lab, value
from tests.ops.helpers import ROOT

CLUSTERROLE = ROOT / "deploy" / "base" / "clusterrole.yaml"
RULES: list[dict[str, Any]] = yaml.safe_load(CLUSTERROLE.read_text())["rules"]
CNS = "caliconodestatuses"
CALICO = "crd.projectcalico.org"
CALICO_V3 = "projectcalico.org"
FLAVOUR_GROUP = {"v1": CALICO, "v3": CALICO_V3, "both": CALICO}
"""The Calico group the exporter must use under each flavour."""
MASTER = "nke-dev01-89e792-master-0"
WORKER0 = "nke-dev01-89e792-worker-0"
WORKER1 = "nke-dev01-89e792-worker-1"
NODES = (MASTER, WORKER0, WORKER1)
Grant = tuple[str, str, str]
"""(verb, API group, resource)"""


def granted(rules: list[dict[str, Any]]) -> set[Grant]:
    return {(verb, group, resource) for rule in rules for verb in rule["verbs"]
            for group in rule["apiGroups"] for resource in rule["resources"]}


def for_flavour(grants: set[Grant], flavour: str) -> set[Grant]:
    """The grants the exporter uses under a flavour: all but the other Calico group's."""
    other = CALICO_V3 if FLAVOUR_GROUP[flavour] == CALICO else CALICO
    return {g for g in grants if g[1] != other}


def flavours_of(rule: dict[str, Any]) -> list[str]:
    """The flavours under which a rule is needed: those whose Calico group it names; both Calico
    groups' flavours for a rule of another group (service accounts, ClusterNetworkPolicy: never
    switched)."""
    out = [f for f in ("v1", "v3") if FLAVOUR_GROUP[f] in rule["apiGroups"]]
    return out or ["v1", "v3"]


def is_resource(record: RequestRecord) -> bool:
    """A resource request (RBAC rules apply), not discovery (/api, /apis, /apis/{group}...)."""
    parts = record.path.partition("?")[0].strip("/").split("/")
    return len(parts) >= (3 if parts[0] == "api" else 4)


def grant_of(record: RequestRecord) -> Grant:
    """What a request asks for, as RBAC sees it: (verb, API group, resource)."""
    parts = record.path.partition("?")[0].strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(record.method)
    if record.method == "GET":
        verb = "watch" if record.watch else ("get" if name else "list")
    elif record.method == "DELETE":
        verb = "delete" if name else "deletecollection"
    assert verb is not None, record
    return verb, group, resource


def forbidden(lab: Lab) -> set[Grant]:
    return {grant_of(r) for r in lab.apiserver.requests if r.status == 403 and is_resource(r)}


async def until(check: Any, what: str, timeout: float = 15.0) -> None:
    """Poll ``check()`` until true; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def ours(lab: Lab) -> dict[str, dict[str, Any]]:
    """Our CalicoNodeStatus objects by name."""
    return {o["metadata"]["name"]: o
            for o in lab.apiserver.list(lab.calico(CNS), label_selector=f"{MANAGED_BY}={MANAGER}")}


# ------------------------------------------------------------------------- the scenario steps


async def initial_sync(lab: Lab) -> None:
    """Every resource listed (/readyz), one status of ours per node, BGP numbers exported."""
    await until(lambda: {o["spec"]["node"] for o in ours(lab).values()} == set(NODES),
                "one status per node")
    await lab.wait_for(lambda s: value(s, "calico_bgp_peers", node=MASTER, ip_version="4",
                                       state="established") == 2, what="BGP numbers")
    await lab.wait_ready()


def drift(lab: Lab) -> str:
    """Someone edits the spec of one of our statuses."""
    name = f"calico-exporter-{MASTER}"
    lab.apiserver.patch(lab.calico(CNS), name, {"spec": {"updatePeriodSeconds": 600}})
    return name


def leftover(lab: Lab) -> str:
    """A status of ours for a node that no longer exists, without an owner the garbage collector
    would follow (left by an earlier install): only the exporter can delete it."""
    name = "calico-exporter-gone-node"
    lab.apiserver.create(lab.calico_object(
        "CalicoNodeStatus", name, labels={MANAGED_BY: MANAGER},
        spec={"node": "gone-node", "classes": ["BGP"], "updatePeriodSeconds": 1}))
    return name


async def whole_scenario(lab: Lab) -> None:
    await initial_sync(lab)
    name = drift(lab)
    await until(lambda: lab.apiserver.get(lab.calico(CNS), name)["spec"][
        "updatePeriodSeconds"] == 1, "drift repaired")
    lab.cluster.remove_node(WORKER1)
    await lab.wait_for(lambda s: not [k for k in s if ("node", WORKER1) in k[1]],
                       what="the removed node's series gone")
    await until(lambda: f"calico-exporter-{WORKER1}" not in ours(lab), "its status deleted")
    name = leftover(lab)
    await until(lambda: name not in ours(lab), "the leftover status deleted")


# ------------------------------------------------------------------------------------- tests


@pytest.mark.timeout(60)
@pytest.mark.parametrize("calico_api", ["v1", "v3", "both"])
async def test_clusterrole_allows_the_whole_scenario(tmp_path: Path, calico_api: str) -> None:
    """Under the ClusterRole the whole scenario runs without a 403, using every grant of it for
    the flavour's Calico group and none for the other."""
    lab = await start_lab(tmp_path, rbac_rules=RULES, calico_api=calico_api)
    try:
        await whole_scenario(lab)
        requests = [r for r in lab.apiserver.requests if is_resource(r)]
        hits = dict(lab.apiserver.rbac_hits)
    finally:
        await stop_lab(lab)
    assert [(r.method, r.path) for r in requests if r.status == 403] == []
    assert all(r.status for r in requests), "every request was answered"
    assert sorted(hits) == list(range(len(RULES))), "every rule allowed some request"
    used = {grant_of(r) for r in requests}
    want = for_flavour(granted(RULES), calico_api)
    assert used == want, (
        f"granted but unused: {sorted(want - used)}; used but not granted: {sorted(used - want)}")
    assert ("delete", FLAVOUR_GROUP[calico_api], "caliconodestatuses") in {
        grant_of(r) for r in requests if r.status == 200}


RULE_CASES = [(i, flavour) for i, rule in enumerate(RULES) for flavour in flavours_of(rule)]


@pytest.mark.parametrize(("index", "calico_api"), RULE_CASES,
                         ids=[f"{i}-{'+'.join(RULES[i]['resources'])}-{f}" for i, f in RULE_CASES])
async def test_each_rule_is_needed(tmp_path: Path, index: int, calico_api: str) -> None:
    """Without rule ``index`` the exporter's very first requests for its resource get 403."""
    rule = RULES[index]
    lab = await start_lab(tmp_path, rbac_rules=RULES[:index] + RULES[index + 1:],
                          calico_api=calico_api)
    try:
        await until(lambda: bool(forbidden(lab)), "a 403")
        denied = forbidden(lab)
    finally:
        await stop_lab(lab)
    assert {(g, res) for _, g, res in denied} <= {
        (g, res) for g in rule["apiGroups"] for res in rule["resources"]}


VERBS = [(i, verb, flavour) for i, rule in enumerate(RULES) for verb in rule["verbs"]
         for flavour in flavours_of(rule)]


@pytest.mark.parametrize(("index", "verb", "calico_api"), VERBS,
                         ids=[f"{i}-{RULES[i]['resources'][0]}-{v}-{f}" for i, v, f in VERBS])
async def test_each_verb_is_needed(tmp_path: Path, index: int, verb: str,
                                   calico_api: str) -> None:
    """Without one verb of one rule, the scenario step that needs it gets 403 for exactly that,
    in the flavour's Calico group."""
    rules = copy.deepcopy(RULES)
    rules[index]["verbs"].remove(verb)
    rule = rules[index]
    want = for_flavour({(verb, g, res) for g in rule["apiGroups"] for res in rule["resources"]},
                       calico_api)
    lab = await start_lab(tmp_path, rbac_rules=rules, calico_api=calico_api)
    try:
        if verb == "patch":
            await initial_sync(lab)
            drift(lab)
        elif verb == "delete":
            await initial_sync(lab)
            leftover(lab)
        await until(lambda: bool(forbidden(lab) & want), f"a 403 for {verb}")
        denied = forbidden(lab)
    finally:
        await stop_lab(lab)
    assert denied == want
