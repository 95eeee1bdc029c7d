"""The policy collector: the write-up's series, exposition validity, resilience."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.policy import SPECS, PolicyCollector
from exporter.metrics.registry import build_registry
from exporter.model.telemetry import Telemetry
from tests.policy.reference import (
    Cluster,
    raw_calico_policy,
    raw_global_policy,
    raw_staged_policy,
    v1_stored,
    writeup_cluster,
)

Labels = tuple[tuple[str, str], ...]


def _samples(cluster: Cluster) -> dict[tuple[str, Labels], float]:
    text = generate_latest(build_registry([PolicyCollector(cluster.index)])).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_writeup_series() -> None:
    """mypolicy selects 5, guestbook is isolated 5/5, testns's pod is not isolated either way."""
    samples = _samples(writeup_cluster())
    assert samples[("calico_network_policy_selected_pods",
                    (("kind", "k8s"), ("namespace", "guestbook"), ("policy", "mypolicy"),
                     ("tier", "default")))] == 5
    for direction in ("ingress", "egress"):
        labels = (("direction", direction), ("namespace", "guestbook"))
        assert samples[("calico_pods_isolated", labels)] == 5
        assert samples[("calico_pods_not_isolated", labels)] == 0
        testns = (("direction", direction), ("namespace", "testns"))
        assert samples[("calico_pods_isolated", testns)] == 0
        assert samples[("calico_pods_not_isolated", testns)] == 1
    assert samples[("calico_network_policies",
                    (("kind", "calico"), ("namespace", "guestbook"), ("tier", "default")))] == 2
    assert samples[("calico_network_policy_rules",
                    (("action", "Deny"), ("direction", "egress"), ("kind", "calico")))] == 1
    assert samples[("calico_network_policy_rules",
                    (("action", "Pass"), ("direction", "ingress"), ("kind", "global")))] == 0
    rule_series = [k for k in samples if k[0] == "calico_network_policy_rules"]
    assert len(rule_series) == 7 * 2 * 4
    assert [k for k in samples if k[0] == "calico_network_policy_tiers"] == [
        ("calico_network_policy_tiers", (("order", "1000000"), ("tier", "default")))]


def test_every_family_is_declared() -> None:
    """Every exported family is one of SPECS, with exactly its declared labels."""
    cluster = writeup_cluster()
    cluster.network_set("guestbook", "blocked", {"role": "x"})
    cluster.policy("staged", raw_staged_policy("guestbook", "x", {}))
    specs = {spec.name: spec for spec in SPECS}
    seen = set()
    for name, labels in _samples(cluster):
        assert name in specs
        assert tuple(sorted(specs[name].labels)) == tuple(k for k, _ in labels)
        seen.add(name)
    assert seen == set(specs)


def _selected(kind: str, namespace: str, policy: str, tier: str) -> tuple[str, Labels]:
    return ("calico_network_policy_selected_pods", (("kind", kind), ("namespace", namespace),
                                                    ("policy", policy), ("tier", tier)))


def test_same_name_in_two_tiers_is_two_series() -> None:
    """Two policies of one name in two tiers are two series, each with its own count, never a
    sum (before, default.allow-dns and security.allow-dns added up into one series)."""
    cluster = writeup_cluster()
    cluster.tier("security", 100, "Pass")
    cluster.calico(v1_stored(raw_calico_policy("guestbook", "default.allow-dns", {
        "selector": "app == 'redis'"}), "allow-dns"))
    cluster.calico(raw_calico_policy("guestbook", "allow-dns", {
        "tier": "security", "selector": "tier == 'frontend'"}))
    samples = _samples(cluster)
    assert {k: v for k, v in samples.items()
            if k[0] == "calico_network_policy_selected_pods" and ("policy", "allow-dns") in k[1]
            } == {_selected("calico", "guestbook", "allow-dns", "default"): 2,
                  _selected("calico", "guestbook", "allow-dns", "security"): 3}
    assert samples[("calico_network_policy_tiers", (("order", "100"), ("tier", "security")))] == 1


def test_migrating_names_are_not_summed() -> None:
    """Two stored names shown alike while kube-controllers migrates them give one series, the
    migrated object's count (never a sum, never a duplicate)."""
    cluster = writeup_cluster()
    cluster.calico(v1_stored(raw_calico_policy("guestbook", "default.mypolicy", {}), "mypolicy"))
    cluster.calico(v1_stored(raw_calico_policy("guestbook", "mypolicy", {
        "selector": "app == 'redis'"}), "mypolicy"))
    samples = _samples(cluster)
    assert samples[_selected("calico", "guestbook", "mypolicy", "default")] == 2


def test_staged_delete_series() -> None:
    """A staged Delete policy (libcalico-go never sends it to Felix) selects 0 pods and reports
    the 5 pods the enforced policy of its name selects; a Set one its own selection."""
    cluster = writeup_cluster()
    cluster.policy("staged", raw_staged_policy("guestbook", "default-allow-egress", {
        "stagedAction": "Delete", "tier": "default"}))
    cluster.policy("staged", raw_staged_policy("guestbook", "redis-only", {
        "selector": "app == 'redis'", "types": ["Egress"]}))
    samples = _samples(cluster)
    assert samples[_selected("staged", "guestbook", "default-allow-egress", "default")] == 0
    assert samples[_selected("staged", "guestbook", "redis-only", "default")] == 2
    staged = {k: v for k, v in samples.items()
              if k[0] == "calico_network_policy_staged_enforced_pods"}
    assert staged == {
        ("calico_network_policy_staged_enforced_pods", (
            ("action", "Delete"), ("kind", "staged"), ("namespace", "guestbook"),
            ("policy", "default-allow-egress"), ("tier", "default"))): 5,
        ("calico_network_policy_staged_enforced_pods", (
            ("action", "Set"), ("kind", "staged"), ("namespace", "guestbook"),
            ("policy", "redis-only"), ("tier", "default"))): 0,
    }
    # staged policies never isolate: guestbook stays 5/5 only through the enforced ones
    assert samples[("calico_pods_isolated", (("direction", "egress"),
                                             ("namespace", "guestbook")))] == 5


def test_bad_policy_does_not_break_scrape() -> None:
    """A GNP with an unparsable selector shows 0 selected pods and the others are unaffected."""
    telemetry = Telemetry()
    cluster = writeup_cluster()
    cluster.index = cluster.wire(telemetry)
    cluster.gnp(raw_global_policy("typo", {"selector": "app == guestbook"}))
    samples = _samples(cluster)
    assert samples[_selected("global", "", "typo", "default")] == 0
    assert samples[_selected("k8s", "guestbook", "mypolicy", "default")] == 5
    assert telemetry.invalid_objects["globalnetworkpolicies.crd.projectcalico.org"] == 1


def test_promtool_check_metrics() -> None:
    """promtool finds nothing to report on the policy exposition."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make test installs Debian prometheus)")
    registry = build_registry([PolicyCollector(writeup_cluster().index)])
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
