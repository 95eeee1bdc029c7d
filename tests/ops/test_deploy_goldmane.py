"""The optional Goldmane flow counters in both deploy forms: the kustomize overlay
``deploy/overlays/goldmane`` (component ``goldmane``) and the Helm value ``goldmane.enabled``
build, validate strictly, render the same cluster Deployment, mount the client certificate
Secret read-only where the flags point, and leave everything else as the base has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import load as load_settings
from tests.ops.helpers import ROOT, required_tool, run
from tests.ops.test_deploy import (
    Objects,
    _docs,
    _find,
    _helm,
    _normalized,
    _probe_values,
    _validate,
    helm_env,  # noqa: F401  (a fixture)
)

OVERLAY = ROOT / "deploy" / "overlays" / "goldmane"
MOUNT = "/etc/calico-exporter/goldmane"


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Objects]:
    result = run(required_tool("kubectl"), "kustomize", str(OVERLAY))
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp("goldmane") / "goldmane.yaml"
    out.write_text(result.stdout)
    return out, _docs(result.stdout)


@pytest.fixture(scope="module")
def helm_goldmane(tmp_path_factory: pytest.TempPathFactory,
                  helm_env: dict[str, str]) -> tuple[Path, Objects]:  # noqa: F811
    values = {**_probe_values(), "goldmane": {"enabled": True}}
    return _helm(helm_env, tmp_path_factory.mktemp("helm-goldmane"), values)


def _cluster(objects: Objects) -> dict[str, Any]:
    (deployment,) = _find(objects, "Deployment", "calico-exporter")
    return deployment


def test_overlay_builds_and_validates_strictly(overlay: tuple[Path, Objects]) -> None:
    """kubectl kustomize builds the overlay and kubernetes-validate --strict accepts it."""
    _validate(overlay[0])


def test_helm_with_goldmane_validates_and_matches_the_overlay(
        overlay: tuple[Path, Objects], helm_goldmane: tuple[Path, Objects]) -> None:
    """goldmane.enabled renders the same cluster Deployment as the kustomize component."""
    _validate(helm_goldmane[0])
    assert _normalized(_cluster(helm_goldmane[1])) == _normalized(_cluster(overlay[1]))


@pytest.mark.parametrize("form", ["overlay", "helm_goldmane"])
def test_flags_point_at_the_read_only_secret_mount(form: str,
                                                   request: pytest.FixtureRequest) -> None:
    """The exporter's flags name files under the mount of the Secret calico-exporter-goldmane,
    mounted read-only; the settings load (so the process starts), Goldmane switched on."""
    objects: Objects = request.getfixturevalue(form)[1]
    pod = _cluster(objects)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "goldmane-client"]
    assert mount == {"name": "goldmane-client", "mountPath": MOUNT, "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "goldmane-client"]
    assert volume["secret"]["secretName"] == "calico-exporter-goldmane"
    args = container["args"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
    assert "--goldmane-enabled" in args
    for name, file in (("goldmane-cert-file", "tls.crt"), ("goldmane-key-file", "tls.key"),
                       ("goldmane-ca-file", "ca.crt")):
        assert flags[name] == f"{MOUNT}/{file}"
    settings = load_settings(flags={k.replace("-", "_"): v for k, v in flags.items()}
                             | {"goldmane_enabled": True})
    assert settings.flows.goldmane_enabled


def test_only_the_cluster_deployment_changes(
        overlay: tuple[Path, Objects], helm_goldmane: tuple[Path, Objects]) -> None:
    """Apart from the cluster Deployment, the overlay holds exactly the base's objects; the node
    DaemonSet never gets the certificate."""
    base = run(required_tool("kubectl"), "kustomize", str(ROOT / "deploy" / "base"))
    def key(o: dict[str, Any]) -> tuple[str, str, str]:
        return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    base_objects = {key(o): o for o in _docs(base.stdout)}
    assert sorted(base_objects) == sorted(key(o) for o in overlay[1])
    for obj in overlay[1]:
        if key(obj) != ("Deployment", "calico-exporter", "calico-exporter"):
            assert obj == base_objects[key(obj)], key(obj)
    for objects in (overlay[1], helm_goldmane[1]):
        for ds in _find(objects, "DaemonSet"):
            assert "goldmane" not in str(ds["spec"]["template"]["spec"])
