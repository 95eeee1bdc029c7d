"""The deploy options for securing /metrics: the kustomize overlay ``deploy/overlays/secured``
(components ``scraper-auth`` and ``network-policy``) and the Helm values ``metricsAuth``,
``tls`` and ``networkPolicy`` build, validate strictly against the Kubernetes 1.30 schemas, grant
the review RBAC only when asked, render the same objects in both forms, and give the exporter a
configuration it accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load as load_settings
from tests.ops.helpers import ROOT, required_tool, run
from tests.ops.test_deploy import (
    BASE,
    CLUSTER_SCOPED,
    MONITORING_CRDS,
    Objects,
    _contains,
    _docs,
    _find,
    _helm,
    _kubectl,
    _kustomize,
    _normalized,
    _pod_specs,
    _readme_overlay,
    _validate,
    helm_env,  # noqa: F401  (a fixture)
)

SECURED = ROOT / "deploy" / "overlays" / "secured"
REVIEW_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
     "verbs": ["create"]},
]
HELM_SECURED = {"metricsAuth": {"enabled": True}, "networkPolicy": {"enabled": True}}
HELM_TLS = {**HELM_SECURED, "tls": {
    "enabled": True, "secretName": "calico-exporter-tls", "clientCA": True,
    "serviceMonitorTlsConfig": {"ca": {"secret": {"name": "calico-exporter-tls",
                                                  "key": "ca.crt"}},
                                "serverName": "calico-exporter.calico-exporter.svc"}}}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Objects]:
    result = run(required_tool("kubectl"), "kustomize", str(SECURED))
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp("secured") / "secured.yaml"
    out.write_text(result.stdout)
    return out, _docs(result.stdout)


def _exporter_workloads(objects: Objects) -> dict[str, dict[str, Any]]:
    return {w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: w
            for w, _ in _pod_specs(objects)
            if w["metadata"]["namespace"] == "calico-exporter"}


def test_secured_overlay_builds_and_validates_strictly(secured: tuple[Path, Objects]) -> None:
    """kubectl kustomize builds the overlay and kubernetes-validate --strict accepts it."""
    _validate(secured[0])


def test_review_rbac_only_with_the_component(secured: tuple[Path, Objects],
                                             helm_env: dict[str, str],  # noqa: F811
                                             tmp_path: Path) -> None:
    """The overlay (and Helm metricsAuth) add exactly create on tokenreviews and
    subjectaccessreviews, bound to the cluster and node service accounts, plus the
    metrics-reader role (get /metrics) bound to Prometheus; the defaults add neither."""
    for objects in (secured[1], _helm(helm_env, tmp_path, HELM_SECURED)[1]):
        (auth,) = _find(objects, "ClusterRole", "calico-exporter-auth")
        assert auth["rules"] == REVIEW_RULES
        (binding,) = _find(objects, "ClusterRoleBinding", "calico-exporter-auth")
        assert {(s["kind"], s["namespace"], s["name"]) for s in binding["subjects"]} == {
            ("ServiceAccount", "calico-exporter", "calico-exporter"),
            ("ServiceAccount", "calico-exporter", "calico-exporter-node")}
        (reader,) = _find(objects, "ClusterRole", "calico-exporter-metrics-reader")
        assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
        (reader_binding,) = _find(objects, "ClusterRoleBinding",
                                  "calico-exporter-metrics-reader")
        assert reader_binding["subjects"] == [{"kind": "ServiceAccount",
                                               "name": "prometheus-k8s",
                                               "namespace": "monitoring"}]
    defaults = _helm(helm_env, tmp_path, None)[1]
    assert [r["metadata"]["name"] for r in _find(defaults, "ClusterRole")] == ["calico-exporter"]
    assert not _find(defaults, "NetworkPolicy")


def test_secured_workloads_authorize_and_monitors_send_a_token(
        secured: tuple[Path, Objects], helm_env: dict[str, str],  # noqa: F811
        tmp_path: Path) -> None:
    """Both exporter roles run with scraper authorization and an API token; both
    ServiceMonitors send Prometheus's token; the configuration is one the exporter accepts."""
    helm = _helm(helm_env, tmp_path, HELM_SECURED)[1]
    for objects in (secured[1], helm):
        workloads = _exporter_workloads(objects)
        assert set(workloads) == {"cluster", "node"}
        for workload in workloads.values():
            assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
        for sm in _find(objects, "ServiceMonitor"):
            if sm["metadata"]["name"] in ("calico-exporter", "calico-exporter-node"):
                (endpoint,) = sm["spec"]["endpoints"]
                assert endpoint["bearerTokenFile"] == (
                    "/var/run/secrets/kubernetes.io/serviceaccount/token")
    for workload in _exporter_workloads(secured[1]).values():
        assert workload["spec"]["template"]["spec"]["containers"][0]["args"][-1] == (
            "--authorize-scrapers")
    (config_map,) = _find(helm, "ConfigMap", "calico-exporter-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["authorize_scrapers"] is True
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    assert load_settings(config_file=str(path)).access.authorize_scrapers is True


def test_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port(
        secured: tuple[Path, Objects], helm_env: dict[str, str],  # noqa: F811
        tmp_path: Path) -> None:
    """One NetworkPolicy selects the cluster and node pods (not the probe agents) and admits
    only namespace monitoring, only to 9808; Helm renders the same object, and the namespace
    (or a namespace selector replacing it, and a pod selector) are values."""
    (policy,) = _find(secured[1], "NetworkPolicy", "calico-exporter")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": 9808, "protocol": "TCP"}]}]
    selected = {c for c, w in _exporter_workloads(secured[1]).items()}
    assert selected == {"cluster", "node"}
    expressions = {e["key"]: set(e["values"]) for e in spec["podSelector"]["matchExpressions"]}
    assert expressions == {"app.kubernetes.io/name": {"calico-exporter"},
                           "app.kubernetes.io/component": {"cluster", "node"}}
    (helm_policy,) = _find(_helm(helm_env, tmp_path, HELM_SECURED)[1], "NetworkPolicy",
                           "calico-exporter")
    assert _normalized(helm_policy) == _normalized(policy)
    other = {**HELM_SECURED, "networkPolicy": {
        "enabled": True, "namespaceSelector": {"matchLabels": {"team": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}}
    (custom,) = _find(_helm(helm_env, tmp_path, other)[1], "NetworkPolicy")
    renamed = {**HELM_SECURED, "networkPolicy": {"enabled": True, "namespace": "prom"}}
    (by_name,) = _find(_helm(helm_env, tmp_path, renamed)[1], "NetworkPolicy")
    assert by_name["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "prom"}}}]
    assert custom["spec"]["ingress"][0]["from"] == [{
        "namespaceSelector": {"matchLabels": {"team": "observability"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]


def test_helm_tls_values(helm_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    """tls.enabled mounts the Secret, points the exporter at its files (client CA too),
    serves the kubelet's probes on the plain health port, scrapes over HTTPS with the given
    tlsConfig, and validates strictly."""
    path, objects = _helm(helm_env, tmp_path, HELM_TLS)
    _validate(path)
    for workload in _exporter_workloads(objects).values():
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert [p["name"] for p in container["ports"]] == ["metrics", "health"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert {"name": "tls", "mountPath": "/etc/calico-exporter/tls",
                "readOnly": True} in container["volumeMounts"]
        assert {"name": "tls", "secret": {"secretName": "calico-exporter-tls"}} in pod["volumes"]
    (config_map,) = _find(objects, "ConfigMap", "calico-exporter-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert {k: config[k] for k in ("tls_cert_file", "tls_key_file", "tls_client_ca_file",
                                   "health_listen")} == {
        "tls_cert_file": "/etc/calico-exporter/tls/tls.crt",
        "tls_key_file": "/etc/calico-exporter/tls/tls.key",
        "tls_client_ca_file": "/etc/calico-exporter/tls/ca.crt",
        "health_listen": "0.0.0.0:9809"}
    for sm in _find(objects, "ServiceMonitor"):
        if sm["metadata"]["name"] in ("calico-exporter", "calico-exporter-node"):
            (endpoint,) = sm["spec"]["endpoints"]
            assert endpoint["scheme"] == "https"
            assert endpoint["tlsConfig"] == HELM_TLS["tls"]["serviceMonitorTlsConfig"]


def test_helm_tls_needs_a_secret_name(helm_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    """tls.enabled without tls.secretName fails to render, naming the value."""
    (tmp_path / "values.yaml").write_text(yaml.safe_dump({"tls": {"enabled": True}}))
    from tests.ops.helpers import CHART, optional_tool
    result = run(optional_tool("helm"), "template", "x", str(CHART), "--values",
                 str(tmp_path / "values.yaml"), env=helm_env)
    assert result.returncode != 0
    assert "tls.secretName is required with tls.enabled" in result.stderr


def test_secured_overlay_stays_within_the_generic_base(secured: tuple[Path, Objects],
                                                       tmp_path: Path) -> None:
    """The overlay adds to the generic base only the components' RBAC and NetworkPolicy: no
    probe agent, nothing namespaced outside calico-exporter. The install deploy/README.md shows,
    with its resource switched to the overlay as its section 3 says, runs every container on
    your image."""
    objects = secured[1]
    outside = [(o["kind"], o["metadata"]["name"]) for o in objects
               if o["kind"] not in CLUSTER_SCOPED
               and o["metadata"].get("namespace") != "calico-exporter"]
    assert outside == []
    assert not [w for w, _ in _pod_specs(objects)
                if w["spec"]["template"]["metadata"]["labels"].get(
                    "app.kubernetes.io/component") == "probe"]
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    overlay = tmp_path / "my-install"
    overlay.mkdir()
    config = _readme_overlay()
    config["resources"] = ["../deploy/overlays/secured" if r == "../deploy/base" else r
                           for r in config["resources"]]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(config))
    _, mine = _kustomize(overlay, tmp_path / "out.yaml")
    (image,) = config["images"]
    assert {c["image"] for _, pod in _pod_specs(mine) for c in pod["containers"]} == {
        f"{image['newName']}:{image['newTag']}"}
    assert _find(mine, "NetworkPolicy", "calico-exporter")
    assert _find(mine, "ClusterRole", "calico-exporter-auth")


async def _apply(kubeconfig: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return await _kubectl(kubeconfig, "apply", "--server-side", "-k", str(directory))


@pytest.mark.timeout(180)
async def test_secured_overlay_applies_server_side_over_the_base(
        secured: tuple[Path, Objects], tmp_path: Path) -> None:
    """`kubectl apply --server-side -k deploy/overlays/secured` against the API emulator, over an
    installed deploy/base (the upgrade path) and again: every object is accepted and stored as
    rendered (the exporters run with --authorize-scrapers, the ServiceMonitors send a token),
    and applying it once more changes nothing."""
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.resources import CRD_DIR

    server = ApiServer(tls=True, crd_files=[*CRD_DIR.glob("*.yaml"),
                                            *MONITORING_CRDS.glob("*.yaml")])
    await server.start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        base = await _apply(kubeconfig, BASE)
        assert base.returncode == 0, base.stderr
        result = await _apply(kubeconfig, SECURED)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == len(secured[1])
        versions = {}
        for obj in secured[1]:
            meta = obj["metadata"]
            rt = server.registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rt is not None, obj["kind"]
            stored = server.get(rt.qualified, meta["name"], meta.get("namespace"))
            assert _contains(stored, obj), (obj["kind"], meta["name"])
            versions[(obj["kind"], meta["name"])] = stored["metadata"]["resourceVersion"]
        node = server.get("daemonsets.apps", "calico-exporter-node", "calico-exporter")
        assert "--authorize-scrapers" in node["spec"]["template"]["spec"]["containers"][0][
            "args"]
        again = await _apply(kubeconfig, SECURED)
        assert again.returncode == 0, again.stderr
        for obj in secured[1]:
            meta = obj["metadata"]
            rt = server.registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rt is not None
            stored = server.get(rt.qualified, meta["name"], meta.get("namespace"))
            assert stored["metadata"]["resourceVersion"] == versions[(obj["kind"], meta["name"])]
    finally:
        await server.stop()
