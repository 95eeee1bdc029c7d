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
from tests.policy.reference import Cluster, raw_calico_policy, raw_global_policy, writeup_cluster


def _samples(cluster: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(build_registry([PolicyCollector(cluster.index)])).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_writeup_series() -> None:
    """mypolicy selects 5, guestbook is isolated 5/5, testns's pod is not isolated either way."""
    samples = _samples(writeup_cluster())
    assert samples[("calico_network_policy_selected_pods",
                    (("kind", "k8s"), ("namespace", "guestbook"), ("policy", "mypolicy")))] == 5
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
    assert len(rule_series) == 3 * 2 * 4


def test_every_family_is_declared() -> None:
    """Every exported family is one of SPECS, with exactly its declared labels."""
    cluster = writeup_cluster()
    cluster.network_set("guestbook", "blocked", {"role": "x"})
    specs = {spec.name: spec for spec in SPECS}
    seen = set()
    for name, labels in _samples(cluster):
        assert name in specs
        assert tuple(sorted(specs[name].labels)) == tuple(k for k, _ in labels)
        seen.add(name)
    assert seen == set(specs)


def test_same_display_name_is_summed() -> None:
    """Two stored names that display alike (mid-migration) give one series, never a duplicate."""
    cluster = writeup_cluster()
    cluster.calico(raw_calico_policy("guestbook", "default.mypolicy", {}))
    cluster.calico(raw_calico_policy("guestbook", "mypolicy", {}))
    samples = _samples(cluster)
    assert samples[("calico_network_policy_selected_pods",
                    (("kind", "calico"), ("namespace", "guestbook"), ("policy", "mypolicy")))] == 10


def test_bad_policy_does_not_break_scrape() -> None:
    """A GNP with an unparsable selector shows 0 selected pods and the others are unaffected."""
    telemetry = Telemetry()
    cluster = writeup_cluster()
    cluster.index = cluster.wire(telemetry)
    cluster.gnp(raw_global_policy("typo", {"selector": "app == guestbook"}))
    samples = _samples(cluster)
    assert samples[("calico_network_policy_selected_pods",
                    (("kind", "global"), ("namespace", ""), ("policy", "typo")))] == 0
    assert samples[("calico_network_policy_selected_pods",
                    (("kind", "k8s"), ("namespace", "guestbook"), ("policy", "mypolicy")))] == 5
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
