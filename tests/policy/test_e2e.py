"""Issue 4 end to end: nke-lab in the emulator, the cluster role, and the real /metrics, in every
Calico flavour (the ``lab`` fixture's ``calico_api``)."""

from __future__ import annotations

from tests.e2e.lab import Lab, Samples, value


def _selected(samples: Samples, kind: str, namespace: str, policy: str) -> float | None:
    return value(samples, "calico_network_policy_selected_pods", kind=kind,
                 namespace=namespace, policy=policy)


def _testns_pods(lab: Lab) -> int:
    return sum(1 for p in lab.apiserver.list("pods", "testns")
               if not p["spec"].get("hostNetwork") and p["spec"].get("nodeName"))


async def test_write_up_numbers(lab: Lab) -> None:
    """mypolicy selects guestbook's 5 pods; guestbook isolated 5/5; testns not isolated."""
    got = await lab.wait_for(lambda s: _selected(s, "k8s", "guestbook", "mypolicy") == 5,
                             what="mypolicy selection")
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


async def test_live_edits(lab: Lab) -> None:
    """A GNP with a bad selector is counted and selects nothing; a good one isolates testns."""
    await lab.wait_for(lambda s: _selected(s, "k8s", "guestbook", "mypolicy") == 5,
                       what="initial sync")
    lab.apiserver.create(lab.calico_object("GlobalNetworkPolicy", "typo",
                                           spec={"selector": "run = 'testpod'"}))
    lab.apiserver.create(lab.calico_object(
        "GlobalNetworkPolicy", "default.testpods",
        spec={"selector": "run == 'testpod'",
              "namespaceSelector": "kubernetes.io/metadata.name == 'testns'"}))
    got = await lab.wait_for(
        lambda s: _selected(s, "global", "", "testpods") == 1
        and value(s, "calico_exporter_invalid_objects_total",
                  resource="globalnetworkpolicies.crd.projectcalico.org") == 1,
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
