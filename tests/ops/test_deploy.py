"""The deploy manifests: the kustomize base (what every cluster needs, in one namespace), the lab
overlay (the base plus the lab's probe agents) and the Helm chart build, validate strictly against
the Kubernetes 1.30 schemas, render the same objects, grant exactly the RBAC the exporter needs,
lock every container down, take the image from one place, run one probe agent per source
namespace of a probe config, and are accepted by the API emulator through
`kubectl apply --server-side`."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load as load_settings
from exporter.config import options
from exporter.probes.config import agents, load_probe_config, validate_probe_config
from tests.ops.helpers import (
    CHART,
    DASHBOARDS,
    ROOT,
    optional_tool,
    required_tool,
    run,
)

BASE = ROOT / "deploy" / "base"
LAB = ROOT / "deploy" / "examples" / "lab"
PROBES = LAB / "probes.yaml"
RENDER = ROOT / "deploy" / "render_probe_agents.py"
PORT = 9808
EXPECTED_RBAC = {
    ("", "nodes"): {"list", "watch"},
    ("", "pods"): {"list", "watch"},
    ("", "namespaces"): {"list", "watch"},
    ("", "serviceaccounts"): {"list", "watch"},
    ("networking.k8s.io", "networkpolicies"): {"list", "watch"},
    ("policy.networking.k8s.io", "clusternetworkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "ippools"): {"list", "watch"},
    ("crd.projectcalico.org", "ipamblocks"): {"list", "watch"},
    ("crd.projectcalico.org", "blockaffinities"): {"list", "watch"},
    ("crd.projectcalico.org", "ipamhandles"): {"list", "watch"},
    ("crd.projectcalico.org", "networkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "globalnetworkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "networksets"): {"list", "watch"},
    ("crd.projectcalico.org", "globalnetworksets"): {"list", "watch"},
    ("crd.projectcalico.org", "tiers"): {"list", "watch"},
    ("crd.projectcalico.org", "stagednetworkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "stagedglobalnetworkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "stagedkubernetesnetworkpolicies"): {"list", "watch"},
    ("crd.projectcalico.org", "caliconodestatuses"): {"list", "watch", "create", "patch",
                                                      "delete"},
    ("projectcalico.org", "ippools"): {"list", "watch"},
    ("projectcalico.org", "ipamblocks"): {"list", "watch"},
    ("projectcalico.org", "blockaffinities"): {"list", "watch"},
    ("projectcalico.org", "ipamhandles"): {"list", "watch"},
    ("projectcalico.org", "networkpolicies"): {"list", "watch"},
    ("projectcalico.org", "globalnetworkpolicies"): {"list", "watch"},
    ("projectcalico.org", "networksets"): {"list", "watch"},
    ("projectcalico.org", "globalnetworksets"): {"list", "watch"},
    ("projectcalico.org", "tiers"): {"list", "watch"},
    ("projectcalico.org", "stagednetworkpolicies"): {"list", "watch"},
    ("projectcalico.org", "stagedglobalnetworkpolicies"): {"list", "watch"},
    ("projectcalico.org", "stagedkubernetesnetworkpolicies"): {"list", "watch"},
    ("projectcalico.org", "caliconodestatuses"): {"list", "watch", "create", "patch", "delete"},
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"}

Objects = list[dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Rendering


def _docs(text: str) -> Objects:
    return [d for d in yaml.safe_load_all(text) if d]


def _validate(path: Path) -> None:
    """kubernetes-validate --strict for 1.30: clean, warnings only for the operator's CRD kinds."""
    result = run(required_tool("kubernetes-validate"), "--strict", "-k", "1.30", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith(("WARN", "ERROR")):
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm")
    return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


def _helm(env: dict[str, str], workdir: Path, values: dict[str, Any] | None = None,
          ) -> tuple[Path, Objects]:
    helm = optional_tool("helm")
    argv = [helm, "template", "calico-exporter", str(CHART), "--namespace", "calico-exporter"]
    if values is not None:
        values_file = workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        argv += ["--values", str(values_file)]
    result = run(*argv, env=env)
    assert result.returncode == 0, result.stderr
    out = workdir / "helm.yaml"
    out.write_text(result.stdout)
    return out, _docs(result.stdout)


def _probe_values() -> dict[str, Any]:
    return {"probes": {"config": yaml.safe_load(PROBES.read_text())}}


def _kustomize(directory: Path, out: Path) -> tuple[Path, Objects]:
    result = run(required_tool("kubectl"), "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    out.write_text(result.stdout)
    return out, _docs(result.stdout)


@pytest.fixture(scope="module")
def kustomized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Objects]:
    """`kubectl kustomize deploy/base`: the generic install."""
    return _kustomize(BASE, tmp_path_factory.mktemp("kustomize") / "base.yaml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Objects]:
    """`kubectl kustomize deploy/examples/lab`: the base plus the lab's probe agents."""
    return _kustomize(LAB, tmp_path_factory.mktemp("kustomize") / "lab.yaml")


@pytest.fixture(scope="module")
def helm_default(tmp_path_factory: pytest.TempPathFactory,
                 helm_env: dict[str, str]) -> tuple[Path, Objects]:
    """The chart with its default values (no probe agents)."""
    return _helm(helm_env, tmp_path_factory.mktemp("helm-default"))


@pytest.fixture(scope="module")
def helm_probes(tmp_path_factory: pytest.TempPathFactory,
                helm_env: dict[str, str]) -> tuple[Path, Objects]:
    """The chart rendered with the lab's probes.yaml as its probe config (the lab overlay)."""
    return _helm(helm_env, tmp_path_factory.mktemp("helm-probes"), _probe_values())


@pytest.fixture(params=["kustomize", "helm"])
def rendered(request: pytest.FixtureRequest) -> Objects:
    """The objects of the lab overlay, then of the Helm chart with the same probe config."""
    name = "lab" if request.param == "kustomize" else "helm_probes"
    objects: Objects = request.getfixturevalue(name)[1]
    return objects


def _find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def _pod_specs(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for o in objects:
        if o["kind"] in {"Deployment", "DaemonSet"}:
            yield o, o["spec"]["template"]["spec"]


def _component(workload: dict[str, Any]) -> str:
    component: str = workload["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/component"]
    return component


# --------------------------------------------------------------------------------------------
# Building and validating


@pytest.mark.parametrize("which", ["kustomized", "lab"])
def test_kustomize_builds_and_validates_strictly(which: str,
                                                 request: pytest.FixtureRequest) -> None:
    """kubectl kustomize builds the base and the lab overlay, and kubernetes-validate --strict
    -k 1.30 accepts them."""
    path, objects = request.getfixturevalue(which)
    assert objects
    _validate(path)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition"}


def test_base_contains_nothing_outside_its_namespace(kustomized: tuple[Path, Objects]) -> None:
    """Every namespaced object of `kubectl kustomize deploy/base` is in namespace
    calico-exporter; the others are cluster-scoped (the Namespace itself and the RBAC of the
    cluster exporter): the base touches no namespace of the cluster's workloads."""
    objects = kustomized[1]
    outside = [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
               for o in objects if o["kind"] not in CLUSTER_SCOPED
               and o["metadata"].get("namespace") != "calico-exporter"]
    assert outside == []
    assert {o["kind"] for o in objects if o["kind"] in CLUSTER_SCOPED} == {
        "Namespace", "ClusterRole", "ClusterRoleBinding"}
    assert not [o for o in objects if o["kind"] in CLUSTER_SCOPED
                and "namespace" in o["metadata"]]
    assert not [o for o in objects if _component_of(o) == "probe"]


def _component_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


def test_namespace_admits_node_mode(kustomized: tuple[Path, Objects]) -> None:
    """The namespace carries the Pod Security labels node mode needs: its hostPath volume is
    admitted only at the privileged level; the rest is audited against restricted."""
    (namespace,) = _find(kustomized[1], "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    (ds,) = _find(kustomized[1], "DaemonSet")
    assert any("hostPath" in v for v in ds["spec"]["template"]["spec"]["volumes"])


def test_base_has_one_object_per_file() -> None:
    """Every YAML file of the base (and of the lab's probe-agents directory) holds exactly one
    object, and the kustomizations list every one of them."""
    for directory in (BASE, LAB / "probe-agents"):
        listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
        files = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
        assert sorted(f for f in listed if f.endswith(".yaml")) == files
        for name in files:
            assert len(_docs((directory / name).read_text())) == 1, name


def test_helm_lint_is_clean(helm_env: dict[str, str]) -> None:
    """helm lint --strict finds nothing to report on the chart."""
    helm = optional_tool("helm")
    result = run(helm, "lint", "--strict", str(CHART), env=helm_env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [
    None,
    {"nodeMode": {"enabled": False}, "serviceMonitor": {"enabled": False},
     "prometheusRule": {"enabled": False}, "dashboards": {"enabled": False}},
    {**_probe_values(), "probes": {**_probe_values()["probes"], "netRaw": False,
                                   "scrapeFromNamespace": "monitoring"}},
], ids=["defaults", "minimal", "probes-hardened"])
def test_helm_template_builds_and_validates_strictly(values: dict[str, Any] | None,
                                                     helm_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """helm template renders the chart (defaults, everything optional off, probe agents with
    NET_RAW off and a scrape NetworkPolicy) and kubernetes-validate --strict accepts it."""
    path, objects = _helm(helm_env, tmp_path, values)
    assert _find(objects, "Deployment", "calico-exporter")
    _validate(path)


def test_helm_refuses_probe_labels_that_clash_with_the_selector(helm_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    """A probe source label the agent's selector needs makes helm template fail with a reason."""
    helm = optional_tool("helm")
    values = {"probes": {"config": {"probes": [{
        "name": "x", "protocol": "tcp", "target": "db:5432", "expect": "allow",
        "source": {"namespace": "app", "labels": {"app.kubernetes.io/component": "db"}}}]}}}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    result = run(helm, "template", "x", str(CHART), "--values", str(tmp_path / "values.yaml"),
                 env=helm_env)
    assert result.returncode != 0
    assert "app.kubernetes.io/component" in result.stderr


# --------------------------------------------------------------------------------------------
# Same content


def _normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what legitimately differs: Helm's bookkeeping labels, annotations
    (config checksums, comments), and the text form of ConfigMap data."""
    out = copy.deepcopy(obj)
    out["metadata"].pop("labels", None)
    out["metadata"].pop("annotations", None)
    template = out.get("spec", {}).get("template")
    if template:
        template["metadata"].pop("annotations", None)
        template["metadata"]["labels"] = {k: v for k, v in template["metadata"]["labels"].items()
                                          if k not in HELM_LABELS}
    if out["kind"] == "ConfigMap":
        out["data"] = {k: yaml.safe_load(v) for k, v in out["data"].items()}
    return out


@pytest.mark.parametrize(("kustomize", "helm"), [("kustomized", "helm_default"),
                                                  ("lab", "helm_probes")],
                         ids=["base-and-defaults", "lab-and-lab-probes"])
def test_helm_chart_renders_what_kustomize_holds(kustomize: str, helm: str,
                                                 request: pytest.FixtureRequest) -> None:
    """With its default values the chart renders the same objects as the base, and with the
    lab's probe config the same as the lab overlay (but the Namespace, which Helm leaves to
    --create-namespace), field for field."""
    def index(objects: Objects) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]):
                _normalized(o) for o in objects if o["kind"] != "Namespace"}
    base = index(request.getfixturevalue(kustomize)[1])
    chart = index(request.getfixturevalue(helm)[1])
    assert sorted(base) == sorted(chart)
    for key, obj in base.items():
        assert chart[key] == obj, f"{key} differs between {kustomize} and the Helm chart"


# --------------------------------------------------------------------------------------------
# RBAC


def _rbac(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_cluster_role_grants_exactly_what_the_exporter_needs(rendered: Objects) -> None:
    """The ClusterRole grants list/watch on what the exporter reads and create/patch/delete on
    caliconodestatuses only: nothing more (no get, no secrets, no wildcards), nothing less."""
    (role,) = _find(rendered, "ClusterRole")
    assert _rbac(role) == EXPECTED_RBAC


def test_cluster_role_is_bound_to_the_cluster_exporter_only(rendered: Objects) -> None:
    """The binding gives the role to the service account of the cluster Deployment, and no other
    workload runs with that account or any API token."""
    (binding,) = _find(rendered, "ClusterRoleBinding")
    (role,) = _find(rendered, "ClusterRole")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    (subject,) = binding["subjects"]
    for workload, pod in _pod_specs(rendered):
        if _component(workload) == "cluster":
            assert (pod["serviceAccountName"], workload["metadata"]["namespace"]) == (
                subject["name"], subject["namespace"])
            assert pod["automountServiceAccountToken"] is True
        else:
            assert pod["serviceAccountName"] != subject["name"]
            assert pod["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------------------------
# Workloads


def test_every_container_is_locked_down(rendered: Objects) -> None:
    """Non-root, read-only root filesystem, no privilege escalation, every capability dropped
    (NET_RAW added back for probe agents only), RuntimeDefault seccomp, no host network or PID,
    requests and limits for CPU and memory."""
    for workload, pod in _pod_specs(rendered):
        name = f"{workload['metadata']['namespace']}/{workload['metadata']['name']}"
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("hostNetwork"), name
        assert not pod.get("hostPID"), name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            allowed = [["NET_RAW"]] if _component(workload) == "probe" else []
            assert sc["capabilities"].get("add", []) in [[], *allowed], name
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, name


def test_every_container_has_health_probes_on_the_metrics_port(rendered: Objects) -> None:
    """Liveness on /healthz and readiness on /readyz, both on the port named metrics = 9808."""
    for _, pod in _pod_specs(rendered):
        for c in pod["containers"]:
            assert c["ports"] == [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_each_role_runs_its_subcommand(rendered: Objects) -> None:
    """The cluster Deployment runs `calico-exporter cluster` and the DaemonSet
    `calico-exporter node`, both with the config ConfigMap; agents run `probe`."""
    expected = {"cluster": ["cluster", "--config-file", "/etc/calico-exporter/config.yaml"],
                "node": ["node", "--config-file", "/etc/calico-exporter/config.yaml"],
                "probe": ["probe", "--probe-config", "/etc/calico-exporter/probes.yaml"]}
    seen = set()
    for workload, pod in _pod_specs(rendered):
        (container,) = pod["containers"]
        assert container["args"] == expected[_component(workload)]
        assert container["image"] == "ghcr.io/calico-exporter/calico-exporter:0.1.0"
        seen.add(_component(workload))
    assert seen == set(expected)
    (cluster,) = _find(rendered, "Deployment", "calico-exporter")
    assert cluster["spec"]["replicas"] == 1


def test_node_daemonset_reads_bird_sockets_read_only_everywhere(rendered: Objects) -> None:
    """The DaemonSet mounts the /var/run/calico directory read-only via hostPath, joins the
    socket's group 0, takes NODE_NAME from spec.nodeName, tolerates every taint, no hostNetwork."""
    (ds,) = _find(rendered, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/calico")
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["hostPath"] == {"path": "/var/run/calico", "type": "Directory"}
    host_paths = [v for v in pod["volumes"] if "hostPath" in v]
    assert host_paths == [volumes[mount["name"]]]
    assert pod["securityContext"]["supplementalGroups"] == [0]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in (
        container["env"])
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert "hostNetwork" not in pod


def test_no_other_workload_touches_the_host(rendered: Objects) -> None:
    """Only the node DaemonSet has a hostPath volume."""
    for workload, pod in _pod_specs(rendered):
        if _component(workload) != "node":
            assert not any("hostPath" in v for v in pod.get("volumes", [])), workload["metadata"]


def test_config_map_is_a_valid_exporter_config(rendered: Objects, tmp_path: Path) -> None:
    """config.yaml of the config ConfigMap loads with the exporter's own settings loader and
    listens on the metrics port."""
    (cm,) = _find(rendered, "ConfigMap", "calico-exporter-config")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    settings = load_settings(config_file=str(path))
    assert settings.server.listen == f"0.0.0.0:{PORT}"
    assert settings.log.log_format == "json"
    assert settings.node_status.node_status_update_period == 30


DURATIONS = {"node_status_update_period": ("1m30s", 90), "leak_grace_period": ("1h", 3600.0),
             "bird_interval": ("500ms", 0.5), "api_timeout": ("15", 15.0),
             "backoff_max": ("2m", 120.0), "watch_timeout": ("5m", 300.0),
             "header_read_timeout": ("1m30s", 90.0), "access_review_allow_ttl": ("10m", 600.0)}


def test_helm_values_take_durations(helm_env: dict[str, str], tmp_path: Path) -> None:
    """Helm `config` values take every duration form (Go/Prometheus strings, plain seconds):
    the rendered config.yaml loads with the exporter's loader to those values."""
    values = {"config": {k: v for k, (v, _) in DURATIONS.items()}}
    _, objects = _helm(helm_env, tmp_path, values)
    (cm,) = _find(objects, "ConfigMap", "calico-exporter-config")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    settings = load_settings(config_file=str(path))
    for name, (_, want) in DURATIONS.items():
        group = next(o.group for o in options() if o.name == name)
        assert getattr(getattr(settings, group), name) == want, name


# --------------------------------------------------------------------------------------------
# Probe agents


def test_one_probe_agent_per_source_namespace(rendered: Objects, tmp_path: Path) -> None:
    """Each source namespace of the lab's probes.yaml gets one agent wearing the labels its probes
    name, with a ConfigMap holding exactly that namespace's probes, valid for the agent."""
    config = load_probe_config(str(PROBES))
    expected = {a.namespace: dict(a.labels) for a in agents(config)}
    deployments = {d["metadata"]["namespace"]: d for d in _find(rendered, "Deployment")
                   if _component(d) == "probe"}
    assert sorted(deployments) == sorted(expected)
    for ns, labels in expected.items():
        pod = deployments[ns]["spec"]["template"]
        assert labels.items() <= pod["metadata"]["labels"].items()
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["CALICO_EXPORTER_SOURCE_NAMESPACE"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}}
        assert {"name": "net.ipv4.ping_group_range", "value": "0 2147483647"} in (
            pod["spec"]["securityContext"]["sysctls"])
        cms = [c for c in _find(rendered, "ConfigMap", "calico-exporter-probes")
               if c["metadata"]["namespace"] == ns]
        assert len(cms) == 1
        path = tmp_path / f"{ns}.yaml"
        path.write_text(cms[0]["data"]["probes.yaml"])
        assert validate_probe_config(str(path)) == []
        names = {p.name for p in load_probe_config(str(path)).probes}
        assert names == {p.name for p in config.for_namespace(ns)}


def test_probe_agent_manifests_are_current() -> None:
    """render_probe_agents.py --check finds deploy/examples/lab/probe-agents rendered from
    deploy/examples/lab/probes.yaml."""
    result = run(sys.executable, str(RENDER), "--check")
    assert result.returncode == 0, result.stderr


def _render(tmp_path: Path, config: dict[str, Any], *extra: str) -> tuple[int, str, Path]:
    source = tmp_path / "probes.yaml"
    source.write_text(yaml.safe_dump(config))
    out = tmp_path / "agents"
    result = run(sys.executable, str(RENDER), "--config", str(source), "--out", str(out), *extra)
    return result.returncode, result.stderr, out


def _probe(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "protocol": "tcp", "target": "db.data.svc:5432", "expect": "allow",
            "source": {"namespace": namespace, "labels": labels}}


def test_renderer_refuses_labels_the_agent_selector_needs(tmp_path: Path) -> None:
    """A probe source label that would override the agent's selector labels is an error (exit
    2, naming the label), never a silently broken Deployment."""
    code, stderr, out = _render(tmp_path, {"probes": [
        _probe("p", "shop", **{"app.kubernetes.io/name": "shop"})]})
    assert code == 2
    assert "app.kubernetes.io/name" in stderr
    assert not out.exists()


def test_renderer_refuses_an_invalid_probe_config(tmp_path: Path) -> None:
    """An invalid probe config is reported with the agent's own messages (exit 2)."""
    code, stderr, _ = _render(tmp_path, {"probes": [{**_probe("p", "shop"), "expect": "maybe"}]})
    assert code == 2
    assert 'probes[0] "p"' in stderr


def test_renderer_removes_agents_of_dropped_namespaces(tmp_path: Path) -> None:
    """Rendering again after a namespace left the config deletes that namespace's files, and the
    result builds with kustomize into objects that validate."""
    code, _, out = _render(tmp_path, {"probes": [_probe("a", "shop"), _probe("b", "blog")]})
    assert code == 0
    assert (out / "blog-deployment.yaml").exists()
    code, _, out = _render(tmp_path, {"probes": [_probe("a", "shop")]}, "--no-net-raw",
                           "--scrape-from-namespace", "monitoring")
    assert code == 0
    assert sorted(p.name for p in out.glob("*.yaml")) == [
        "kustomization.yaml", "servicemonitor.yaml", "shop-configmap.yaml",
        "shop-deployment.yaml", "shop-networkpolicy.yaml", "shop-service.yaml",
        "shop-serviceaccount.yaml"]
    result = run(required_tool("kubectl"), "kustomize", str(out))
    assert result.returncode == 0, result.stderr
    (tmp_path / "agents.yaml").write_text(result.stdout)
    _validate(tmp_path / "agents.yaml")
    objects = _docs(result.stdout)
    (deployment,) = _find(objects, "Deployment")
    caps = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert caps["capabilities"] == {"drop": ["ALL"]}
    (policy,) = _find(objects, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": PORT, "protocol": "TCP"}]


# --------------------------------------------------------------------------------------------
# Scraping and dashboards


def test_service_monitors_reach_a_metrics_port_of_running_pods(rendered: Objects) -> None:
    """Every ServiceMonitor selects a Service (in its own namespace or those it names) that has
    the endpoint's port, every such Service selects pods exposing it, and every job name matches
    the alert rules' job=~"calico-exporter.*"."""
    services = _find(rendered, "Service")
    pods = [(w["metadata"]["namespace"], w["spec"]["template"]) for w, _ in _pod_specs(rendered)]
    jobs = set()
    for sm in _find(rendered, "ServiceMonitor"):
        spec = sm["spec"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames",
                                                            [sm["metadata"]["namespace"]])
        selector = spec["selector"]["matchLabels"]
        matched = [s for s in services if s["metadata"]["namespace"] in namespaces
                   and selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == len(namespaces), sm["metadata"]["name"]
        (endpoint,) = spec["endpoints"]
        assert endpoint["honorLabels"] is True
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        assert relabel["replacement"].startswith("calico-exporter")
        jobs.add(relabel["replacement"])
        for service in matched:
            ports = {p["name"]: p for p in service["spec"]["ports"]}
            assert ports[endpoint["port"]]["targetPort"] == "metrics"
            backing = [t for ns, t in pods if ns == service["metadata"]["namespace"]
                       and service["spec"]["selector"].items()
                       <= t["metadata"]["labels"].items()]
            assert backing, f"Service {service['metadata']['name']} selects no pod"
    assert jobs == {"calico-exporter", "calico-exporter-node", "calico-exporter-probe"}


def test_dashboards_ship_as_sidecar_config_maps(rendered: Objects) -> None:
    """Each dashboard of grafana/dashboards is one ConfigMap labelled grafana_dashboard: "1"
    carrying the JSON unchanged."""
    shipped = {}
    for cm in _find(rendered, "ConfigMap"):
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            ((key, text),) = cm["data"].items()
            shipped[key] = text
    assert shipped == {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}


def test_prometheus_rule_carries_the_rules_file(rendered: Objects) -> None:
    """The PrometheusRule's spec is the plain rules file."""
    (rule,) = _find(rendered, "PrometheusRule")
    plain = yaml.safe_load((ROOT / "deploy" / "prometheus" / "calico-exporter.rules.yaml")
                           .read_text())
    assert rule["spec"] == plain


# --------------------------------------------------------------------------------------------
# The image, from one place


MY_IMAGE = ("registry.example.com/platform/calico-exporter", "0.1.0-rc1")


def _readme_overlay() -> dict[str, Any]:
    """The kustomization deploy/README.md tells you to write (its heredoc, as written)."""
    text = (ROOT / "deploy" / "README.md").read_text()
    m = re.search(r"cat > my-install/kustomization.yaml <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert m, "deploy/README.md no longer shows the overlay"
    overlay: dict[str, Any] = yaml.safe_load(m.group(1))
    return overlay


def test_install_overlay_of_the_readme(tmp_path: Path) -> None:
    """The overlay deploy/README.md shows, written next to deploy/ as it says, builds into the
    base with every container on your registry's image; with the rendered probe agents added
    (as its section 4 says), those take the same image."""
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    overlay = tmp_path / "my-install"
    overlay.mkdir()
    config = _readme_overlay()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(config))
    _, objects = _kustomize(overlay, tmp_path / "out.yaml")
    (image,) = config["images"]
    want = f"{image['newName']}:{image['newTag']}"
    assert {c["image"] for _, pod in _pod_specs(objects) for c in pod["containers"]} == {want}
    code, stderr, _ = _render(tmp_path, yaml.safe_load(PROBES.read_text()))
    assert code == 0, stderr
    (tmp_path / "agents").rename(overlay / "probe-agents")
    config["resources"].append("probe-agents")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(config))
    _, objects = _kustomize(overlay, tmp_path / "out.yaml")
    assert {c["image"] for _, pod in _pod_specs(objects) for c in pod["containers"]} == {want}
    assert {_component(w) for w, _ in _pod_specs(objects)} == {"cluster", "node", "probe"}


def test_image_from_one_place_helm(helm_env: dict[str, str], tmp_path: Path) -> None:
    """Helm `image.repository` and `image.tag` set the image of every container."""
    values = {**_probe_values(), "image": {"repository": MY_IMAGE[0], "tag": MY_IMAGE[1]}}
    _, objects = _helm(helm_env, tmp_path, values)
    images = {c["image"] for _, pod in _pod_specs(objects) for c in pod["containers"]}
    assert images == {":".join(MY_IMAGE)}


def test_the_base_image_is_the_package_version(kustomized: tuple[Path, Objects]) -> None:
    """Without an override the manifests run the image of this version of the package."""
    from exporter import __version__

    images = {c["image"] for _, pod in _pod_specs(kustomized[1]) for c in pod["containers"]}
    assert images == {f"ghcr.io/calico-exporter/calico-exporter:{__version__}"}


# --------------------------------------------------------------------------------------------
# Applied to an API server


MONITORING_CRDS = ROOT / "tests" / "data" / "crds"


def _contains(stored: Any, wanted: Any) -> bool:
    """``wanted`` is in ``stored``: every key of a mapping (recursively), lists item by item."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            k in stored and _contains(stored[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(stored, list) and len(stored) == len(wanted)
                and all(_contains(a, b) for a, b in zip(stored, wanted, strict=True)))
    return bool(stored == wanted)


async def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [required_tool("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(180)
async def test_base_applies_server_side(tmp_path: Path, kustomized: tuple[Path, Objects],
                                        lab: tuple[Path, Objects]) -> None:
    """`kubectl apply --server-side -k deploy/base` against the API emulator (Calico's and
    prometheus-operator's CRDs installed, none of the lab's namespaces present) accepts every
    object, and each is stored as rendered; applying again changes nothing. The lab overlay is
    accepted once its namespaces exist."""
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.resources import CRD_DIR

    server = ApiServer(tls=True, crd_files=[*CRD_DIR.glob("*.yaml"),
                                            *MONITORING_CRDS.glob("*.yaml")])
    await server.start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        result = await _kubectl(kubeconfig, "apply", "--server-side", "-k", str(BASE))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        objects = kustomized[1]
        assert len(lines) == len(objects)
        assert all(line.endswith(" serverside-applied") for line in lines), lines
        versions = {}
        for obj in objects:
            meta = obj["metadata"]
            rt = server.registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rt is not None, obj["kind"]
            stored = server.get(rt.qualified, meta["name"], meta.get("namespace"))
            # Stored as rendered, plus what the server adds (schema defaults such as a
            # relabeling's action: replace, a Namespace's kubernetes.io/metadata.name label).
            assert _contains(stored, obj), (obj["kind"], meta["name"])
            (entry,) = stored["metadata"]["managedFields"]
            assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
            versions[(obj["kind"], meta["name"])] = stored["metadata"]["resourceVersion"]
        again = await _kubectl(kubeconfig, "apply", "--server-side", "-k", str(BASE))
        assert again.returncode == 0, again.stderr
        for obj in objects:
            meta = obj["metadata"]
            rt = server.registry.by_kind(obj["apiVersion"], obj["kind"])
            assert rt is not None
            stored = server.get(rt.qualified, meta["name"], meta.get("namespace"))
            assert stored["metadata"]["resourceVersion"] == versions[(obj["kind"], meta["name"])]
        missing = await _kubectl(kubeconfig, "apply", "--server-side", "-k", str(LAB))
        assert missing.returncode != 0
        assert 'namespaces "guestbook" not found' in missing.stderr
        for name in ("guestbook", "testns"):
            server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        result = await _kubectl(kubeconfig, "apply", "--server-side", "-k", str(LAB))
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == len(lab[1])
    finally:
        await server.stop()
