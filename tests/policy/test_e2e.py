"""Policy end to end: nke-lab in the emulator, the cluster role, and the real /metrics (issues 4
and 11: tiers, policy names, staged policies, ClusterNetworkPolicy, service accounts), in every
Calico flavour (the ``lab`` fixture's ``calico_api``). Calico objects are written as libcalico-go
stores them in ``crd.projectcalico.org/v1`` and put where the flavour keeps Calico's data
(``lab.stored``: with native v3 CRDs, the object Calico's migration makes of them), so that a
policy's name is checked as Calico shows it in each flavour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from exporter.sim import calicoapi
from tests.e2e.lab import Lab, Samples, series, start_lab, stop_lab, value
from tests.policy.reference import DATA

CALICO = "crd.projectcalico.org/v1"
V3 = "projectcalico.org/v3"
INVALID = "calico_exporter_invalid_objects_total"


def _selected(samples: Samples, kind: str, namespace: str, policy: str,
              tier: str = "default") -> float | None:
    return value(samples, "calico_network_policy_selected_pods", kind=kind,
                 namespace=namespace, policy=policy, tier=tier)


def _testns_pods(lab: Lab) -> int:
    return sum(1 for p in lab.apiserver.list("pods", "testns")
               if not p["spec"].get("hostNetwork") and p["spec"].get("nodeName"))


async def _synced(lab: Lab) -> Samples:
    return await lab.wait_for(
        lambda s: _selected(s, "k8s", "guestbook", "mypolicy") == 5
        and _selected(s, "cluster", "", "kube-system-internal", "kube-admin") == 3,
        what="initial sync")


async def test_write_up_numbers(lab: Lab) -> None:
    """mypolicy selects guestbook's 5 pods; guestbook isolated 5/5; testns not isolated."""
    got = await _synced(lab)
    for direction in ("ingress", "egress"):
        assert value(got, "calico_pods_isolated", namespace="guestbook", direction=direction) == 5
        assert value(got, "calico_pods_not_isolated", namespace="testns",
                     direction=direction) == _testns_pods(lab) == 1
    assert _selected(got, "calico", "guestbook", "custom-deny-egress") == 5
    assert _selected(got, "calico", "guestbook", "default-allow-egress") == 5
    assert value(got, "calico_network_policies", kind="calico", namespace="guestbook",
                 tier="default") == 2
    assert value(got, "calico_network_policy_rules", kind="calico", direction="egress",
                 action="Deny") == 1


async def test_tiers_staged_and_cluster_policies_of_the_lab(lab: Lab) -> None:
    """nke-lab's tiers (Calico 3.32's built-ins and "security"), its v3.31-stored GNP in tier
    security, its staged Set and Delete policies and its ClusterNetworkPolicy in kube-admin, as
    exact series; none of them isolates a pod (Pass tiers, staged policies)."""
    got = await _synced(lab)
    assert {(s["tier"], s["order"]) for s in series(got, "calico_network_policy_tiers")} == {
        ("security", "100"), ("kube-admin", "1000"), ("default", "1000000"),
        ("kube-baseline", "10000000")}
    assert all(v == 1 for (n, _), v in got.items() if n == "calico_network_policy_tiers")
    # 22 pods have a workload endpoint: every pod but the three hostNetwork calico-node ones
    assert _selected(got, "global", "", "security.allow-dns", "security") == 22
    assert value(got, "calico_network_policies", kind="global", namespace="",
                 tier="security") == 1
    assert _selected(got, "staged", "guestbook", "frontend-ingress") == 3
    assert _selected(got, "staged", "guestbook", "default-allow-egress") == 0
    staged = {(s["policy"], s["action"]): v for (n, lbl), v in got.items()
              if n == "calico_network_policy_staged_enforced_pods" for s in (dict(lbl),)}
    assert staged == {("frontend-ingress", "Set"): 0, ("default-allow-egress", "Delete"): 5}
    assert series(got, "calico_network_policy_staged_enforced_pods",
                  policy="default-allow-egress") == [{
                      "kind": "staged", "namespace": "guestbook", "policy": "default-allow-egress",
                      "tier": "default", "action": "Delete"}]
    assert value(got, "calico_network_policies", kind="staged", namespace="guestbook",
                 tier="default") == 2
    assert value(got, "calico_network_policies", kind="cluster", namespace="",
                 tier="kube-admin") == 1
    for direction in ("ingress", "egress"):
        assert value(got, "calico_pods_isolated", namespace="kube-system",
                     direction=direction) == 0
        assert value(got, "calico_pods_not_isolated", namespace="testns",
                     direction=direction) == 1
    assert value(got, "calico_network_policy_rules", kind="cluster", direction="ingress",
                 action="Allow") == 1


async def test_live_edits(lab: Lab) -> None:
    """A GNP with a bad selector is counted and selects nothing; a good one, written as
    libcalico-go stores a default-tier policy (name default.x, v3 name in the metadata
    annotation), is shown by its v3 name and isolates testns."""
    await _synced(lab)
    lab.apiserver.create(lab.stored({
        "apiVersion": CALICO, "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "typo"}, "spec": {"selector": "run = 'testpod'"}}))
    lab.apiserver.create(lab.stored({
        "apiVersion": CALICO, "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "default.testpods", "annotations": {
            "projectcalico.org/metadata": '{"name":"testpods","creationTimestamp":null}'}},
        "spec": {"selector": "run == 'testpod'",
                 "namespaceSelector": "kubernetes.io/metadata.name == 'testns'"}}))
    got = await lab.wait_for(
        lambda s: _selected(s, "global", "", "testpods") == 1
        and value(s, INVALID, resource="globalnetworkpolicies.crd.projectcalico.org") == 1,
        what="GNP selection and the invalid count")
    assert _selected(got, "global", "", "typo") == 0
    assert value(got, "calico_pods_isolated", namespace="testns", direction="ingress") == 1
    assert value(got, "calico_pods_not_isolated", namespace="default", direction="ingress") == 1
    lab.apiserver.delete("networkpolicies.networking.k8s.io", "mypolicy", "guestbook")
    await lab.wait_for(
        lambda s: value(s, "calico_pods_isolated", namespace="guestbook",
                        direction="ingress") == 0
        and _selected(s, "k8s", "guestbook", "mypolicy") is None,
        what="mypolicy gone")


async def test_network_sets(lab: Lab) -> None:
    """A NetworkSet and a GlobalNetworkSet written where Calico keeps its data are counted, and
    uncounted once deleted."""
    lab.apiserver.create(lab.calico_object("NetworkSet", "external-db", namespace="guestbook",
                                           labels={"role": "db"},
                                           spec={"nets": ["198.51.100.0/28"]}))
    lab.apiserver.create(lab.calico_object("GlobalNetworkSet", "a-name-for-the-set",
                                           labels={"role": "external-database"},
                                           spec={"nets": ["198.51.100.0/28", "203.0.113.0/24"]}))
    await lab.wait_for(
        lambda s: value(s, "calico_network_sets", kind="calico", namespace="guestbook") == 1
        and value(s, "calico_network_sets", kind="global", namespace="") == 1,
        what="network sets counted")
    lab.apiserver.delete(lab.calico("globalnetworksets"), "a-name-for-the-set")
    await lab.wait_for(
        lambda s: not value(s, "calico_network_sets", kind="global", namespace=""),
        what="global network set gone")


CALICO_POLICY_KINDS = {"networkpolicies": "calico", "globalnetworkpolicies": "global",
                       "stagednetworkpolicies": "staged",
                       "stagedglobalnetworkpolicies": "staged_global"}
"""Calico's policy plurals and their ``kind`` label: the kinds whose names Calico converts."""


def calico_view(lab: Lab) -> set[tuple[str, str, str, str]]:
    """(kind, namespace, name, tier) of every Calico policy as Calico's projectcalico.org/v3 API
    shows it: the native objects with v3 CRDs, the Calico API server's view of the v1 storage
    in "both" (the emulator converts as ``ConvertK8sResourceToCalicoResource`` does), and that
    same conversion of the stored objects with v1 CRDs alone."""
    out = set()
    for plural, kind in CALICO_POLICY_KINDS.items():
        if lab.apiserver.registry.by_path("projectcalico.org", "v3", plural) is None:
            objects = [calicoapi.to_v3(o) for o in lab.apiserver.list(lab.calico(plural))]
        else:
            objects = lab.apiserver.list(f"{plural}.projectcalico.org")
        for obj in objects:
            meta, spec = obj["metadata"], obj.get("spec") or {}
            out.add((kind, meta.get("namespace", ""), meta["name"], spec.get("tier") or "default"))
    return out


async def test_policy_names_as_calico_shows_them(lab: Lab) -> None:
    """Every Calico policy's series carries the name Calico's v3 API shows for it, whichever
    group the exporter reads: stored names of every release (3.31's "default.x" with the v3 name
    in the metadata annotation, an older one with an annotation without a name, one written
    straight to the CRD, 3.32's unprefixed names, a tier-prefixed one outside the default tier)
    come out as the Calico API server (``sim/calicoapi.py``) and Calico's migration name them."""
    await _synced(lab)
    for kind, name, annotation in (
            ("GlobalNetworkPolicy", "default.legacy", '{"creationTimestamp":null}'),
            ("StagedGlobalNetworkPolicy", "default.staged-legacy", '{"creationTimestamp":null}'),
            ("GlobalNetworkPolicy", "default.raw", None)):
        meta: dict[str, Any] = {"name": name}
        if annotation is not None:
            meta["annotations"] = {"projectcalico.org/metadata": annotation}
        lab.apiserver.create(lab.stored({"apiVersion": CALICO, "kind": kind, "metadata": meta,
                                         "spec": {"selector": "all()"}}))
    got = await lab.wait_for(
        lambda s: _selected(s, "global", "", "default.raw") is not None
        and _selected(s, "staged_global", "", "staged-legacy") is not None
        and _selected(s, "global", "", "legacy") is not None, what="the new policies")
    shown = {(s["kind"], s["namespace"], s["policy"], s["tier"])
             for s in series(got, "calico_network_policy_selected_pods")
             if s["kind"] in CALICO_POLICY_KINDS.values()}
    assert shown == calico_view(lab)
    assert {("global", "", "security.allow-dns", "security"),
            ("calico", "guestbook", "default-allow-egress", "default"),
            ("staged", "guestbook", "frontend-ingress", "default")} <= shown


async def test_same_name_in_two_tiers(lab: Lab) -> None:
    """A v3.31-stored default-tier "allow-redis" (stored default.allow-redis, v3 name in the
    metadata annotation) and a v3.32 "allow-redis" of tier security are two series with their
    own counts, never a sum. With native v3 CRDs a name is unique in a namespace whatever the
    tier (Calico's migration stops at such a pair: kube-controllers' migration controller,
    WaitingForConflictResolution, master 87c1590), so there the default-tier one is in testns."""
    await _synced(lab)
    native = lab.calico_api_version == V3
    default_ns = "testns" if native else "guestbook"
    lab.apiserver.create(lab.stored({"apiVersion": CALICO, "kind": "NetworkPolicy", "metadata": {
        "name": "default.allow-redis", "namespace": default_ns,
        "annotations": {"projectcalico.org/metadata": '{"name":"allow-redis"}'}},
        "spec": {"selector": "app == 'redis'", "types": ["Ingress"]}}))
    lab.apiserver.create(lab.stored({"apiVersion": CALICO, "kind": "NetworkPolicy", "metadata": {
        "name": "allow-redis", "namespace": "guestbook", "labels": {
            "projectcalico.org/tier": "security"}},
        "spec": {"tier": "security", "selector": "role == 'leader'", "types": ["Ingress"]}}))
    got = await lab.wait_for(
        lambda s: _selected(s, "calico", "guestbook", "allow-redis", "security") == 1
        and _selected(s, "calico", default_ns, "allow-redis") is not None,
        what="both tiers")
    shown = series(got, "calico_network_policy_selected_pods", policy="allow-redis")
    assert sorted((s["kind"], s["namespace"], s["tier"]) for s in shown) == sorted([
        ("calico", default_ns, "default"), ("calico", "guestbook", "security")])
    assert _selected(got, "calico", default_ns, "allow-redis") == (0 if native else 2)
    assert value(got, "calico_network_policies", kind="calico", namespace="guestbook",
                 tier="security") == 1
    assert value(got, "calico_network_policies", kind="calico", namespace="guestbook",
                 tier="default") == (2 if native else 3)


async def test_staged_delete_enforced(lab: Lab) -> None:
    """nke-lab's staged Delete of default-allow-egress reports the 5 pods that policy selects;
    once the deletion is enforced (the policy deleted) it reports 0, and guestbook stays isolated
    on egress by custom-deny-egress."""
    got = await _synced(lab)
    labels = {"kind": "staged", "namespace": "guestbook", "policy": "default-allow-egress",
              "tier": "default", "action": "Delete"}
    assert value(got, "calico_network_policy_staged_enforced_pods", **labels) == 5
    lab.apiserver.delete(lab.calico("networkpolicies"), "default-allow-egress", "guestbook")
    got = await lab.wait_for(
        lambda s: value(s, "calico_network_policy_staged_enforced_pods", **labels) == 0,
        what="the deletion enforced")
    assert _selected(got, "calico", "guestbook", "default-allow-egress") is None
    assert _selected(got, "staged", "guestbook", "default-allow-egress") == 0
    assert value(got, "calico_pods_isolated", namespace="guestbook", direction="egress") == 5


async def test_service_account_docs_example(lab: Lab) -> None:
    """Calico's docs example "restrict-intern-access" (tigera/docs calico/network-policy/
    policy-rules/service-accounts.mdx) selects the pods running as the service account labelled
    role: intern; relabelling the service accounts moves the selection."""
    await _synced(lab)
    api = lab.apiserver
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "prod-engineering", "labels": {"kubernetes.io/metadata.name": "prod-engineering"}}})
    for name, labels in (("intern", {"role": "intern"}), ("senior", {"role": "dev"})):
        api.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": name, "namespace": "prod-engineering", "labels": labels}})
    for name, account in (("app-1", "intern"), ("app-2", "intern"), ("app-3", "senior"),
                          ("app-4", "default")):
        api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": "prod-engineering", "labels": {"app": "x"}},
            "spec": {"nodeName": "nke-dev01-89e792-worker-0", "serviceAccountName": account,
                     "containers": [{"name": "main", "image": "registry.example/app:1"}]},
            "status": {"phase": "Running"}})
    doc: dict[str, Any] = yaml.safe_load((DATA / "service-accounts-docs-example.yaml").read_text())
    if lab.calico_api_version == CALICO:  # no Calico API server: straight into the v1 CRD
        doc["apiVersion"] = CALICO
    api.create(doc)  # v3 and both: as the docs apply it, projectcalico.org/v3
    got = await lab.wait_for(
        lambda s: _selected(s, "calico", "prod-engineering", "restrict-intern-access") == 2,
        what="the intern pods selected")
    for direction in ("ingress", "egress"):
        assert value(got, "calico_pods_isolated", namespace="prod-engineering",
                     direction=direction) == 2
    api.patch("serviceaccounts", "senior", {"metadata": {"labels": {"role": "intern"}}},
              namespace="prod-engineering")
    await lab.wait_for(
        lambda s: _selected(s, "calico", "prod-engineering", "restrict-intern-access") == 3,
        what="the relabelled service account's pod selected")


async def test_bad_input_stays_harmless(lab: Lab) -> None:
    """A policy in a tier that does not exist is counted and kept as Felix keeps it (it isolates);
    a ClusterNetworkPolicy whose subject has an unknown operator is counted and skipped; every
    other series keeps being served. A selector nested 5,000 parentheses deep (330 crashed the
    exporter, issue 12) is valid, as for Calico, and selects."""
    await _synced(lab)
    api = lab.apiserver
    api.create(lab.stored({"apiVersion": CALICO, "kind": "NetworkPolicy", "metadata": {
        "name": "deep", "namespace": "testns"},
        "spec": {"selector": "(" * 5000 + "run == 'testpod'" + ")" * 5000,
                 "types": ["Egress"]}}))
    api.create(lab.stored({"apiVersion": CALICO, "kind": "NetworkPolicy", "metadata": {
        "name": "orphan", "namespace": "testns"},
        "spec": {"tier": "nonexistent", "selector": "run == 'testpod'", "types": ["Ingress"]}}))
    api.create({"apiVersion": "policy.networking.k8s.io/v1alpha2",
                "kind": "ClusterNetworkPolicy", "metadata": {"name": "bad-subject"},
                "spec": {"tier": "Admin", "priority": 5, "subject": {"namespaces": {
                    "matchExpressions": [{"key": "team", "operator": "Equals",
                                          "values": ["a"]}]}}}})
    got = await lab.wait_for(
        lambda s: value(s, INVALID, resource="networkpolicies.crd.projectcalico.org") == 1
        and value(s, INVALID, resource="clusternetworkpolicies.policy.networking.k8s.io") == 1,
        what="both counted")
    assert _selected(got, "calico", "testns", "orphan", "nonexistent") == 1
    assert _selected(got, "calico", "testns", "deep") == 1
    assert value(got, "calico_pods_isolated", namespace="testns", direction="ingress") == 1
    assert not series(got, "calico_network_policy_tiers", tier="nonexistent")
    assert _selected(got, "cluster", "", "bad-subject", "kube-admin") is None
    assert _selected(got, "k8s", "guestbook", "mypolicy") == 5
    assert _selected(got, "cluster", "", "kube-system-internal", "kube-admin") == 3
    api.create(lab.stored({"apiVersion": CALICO, "kind": "Tier",
                           "metadata": {"name": "nonexistent"},
                           "spec": {"order": 50, "defaultAction": "Pass"}}))
    await lab.wait_for(
        lambda s: value(s, "calico_pods_isolated", namespace="testns", direction="ingress") == 0
        and value(s, "calico_network_policy_tiers", tier="nonexistent", order="50") == 1,
        what="the tier created")


async def _ready(lab: Lab) -> Samples:
    await lab.wait_for(lambda s: value(s, "calico_network_policy_tiers", tier="default",
                                       order="1000000") == 1, what="sync")
    await lab.wait_ready()
    return await lab.samples()


def _paths(lab: Lab) -> list[str]:
    return [r.path.partition("?")[0] for r in lab.apiserver.requests]


async def test_cluster_network_policy_not_served(tmp_path: Path, calico_api: str) -> None:
    """Without the ClusterNetworkPolicy CRD the exporter asks discovery once, never lists or
    watches it, reports no error and is ready."""
    lab = await start_lab(tmp_path, scenario="dual-stack", calico_api=calico_api,
                          without_crds=("clusternetworkpolicies",))
    try:
        got = await _ready(lab)
        paths = _paths(lab)
    finally:
        await stop_lab(lab)
    assert paths.count("/apis/policy.networking.k8s.io/v1alpha2") == 1
    assert not [p for p in paths if "clusternetworkpolicies" in p]
    assert value(got, INVALID, resource="clusternetworkpolicies.policy.networking.k8s.io") == 0
    assert not series(got, "calico_network_policy_selected_pods", kind="cluster")


STAGED = ("stagednetworkpolicies", "stagedglobalnetworkpolicies",
          "stagedkubernetesnetworkpolicies")


async def test_calico_without_staged_policies(tmp_path: Path, calico_api: str) -> None:
    """A Calico before 3.30 (no staged policy CRDs), in every flavour: the exporter becomes ready
    without one request for them, so without a 404 and without re-running Calico's group
    discovery: one GET /apis in all, and one discovery of Calico's group-version for each
    optional Calico resource (tiers and the three staged kinds); both counts stay so while the
    exporter keeps following the cluster."""
    lab = await start_lab(tmp_path, scenario="dual-stack", calico_api=calico_api,
                          without_crds=STAGED)
    try:
        await _ready(lab)
        group = "/apis/" + lab.calico_api_version
        at_ready = _paths(lab)
        lab.apiserver.create(lab.calico_object(
            "GlobalNetworkPolicy", "after-ready", spec={"selector": "all()"}))
        got = await lab.wait_for(lambda s: _selected(s, "global", "", "after-ready") is not None,
                                 what="a policy created later")
        later = _paths(lab)
        not_found = [r.path for r in lab.apiserver.requests if r.status == 404]
    finally:
        await stop_lab(lab)
    for paths in (at_ready, later):
        assert paths.count("/apis") == 1
        assert paths.count(group) == 4
        assert not [p for p in paths if p.rpartition("/")[2] in STAGED]
    assert not_found == []
    for plural in STAGED:
        resource = f"{plural}.crd.projectcalico.org"
        assert value(got, "calico_exporter_watch_restarts_total", resource=resource,
                     reason="client_error") == 0
    assert not series(got, "calico_network_policy_selected_pods", kind="staged")
