"""The real kubectl against the emulator: get (table, wide, yaml), apply, patch, delete, watch.

kubectl sends bearer tokens only over TLS, so these tests use ``ApiServer(tls=True)``; one test
shows plain HTTP works when authentication is off.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.sim.apiserver import ApiServer

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

POOL = """\
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 172.20.0.0/16
  blockSize: 26
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: {nat}
"""


class Kubectl:
    """Runs kubectl with the emulator's kubeconfig and a private cache directory."""

    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    async def run(self, *args: str, stdin: str | None = None, check: bool = True
                  ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.base, *args, stdin=asyncio.subprocess.PIPE if stdin else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin else None), 30)
        rc = proc.returncode
        assert rc is not None
        if check and rc != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({rc}): {err.decode()}")
        return rc, out.decode(), err.decode()


@pytest.fixture
async def tls_server() -> AsyncIterator[ApiServer]:
    srv = ApiServer(tls=True)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def kubectl(tls_server: ApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(tls_server.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")


def seed_lab(srv: ApiServer) -> None:
    srv.seed([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guestbook"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-0"},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.102.103"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "frontend", "namespace": "guestbook"},
         "spec": {"nodeName": "worker-0", "containers": [{"name": "php", "image": "php"}]},
         "status": {"phase": "Running", "podIP": "172.20.188.66",
                    "containerStatuses": [{"name": "php", "ready": True, "restartCount": 2}]}},
    ])


async def test_get_table_and_wide(tls_server: ApiServer, kubectl: Kubectl) -> None:
    """kubectl get prints the server-side table; -o wide adds IP and node; -A adds namespace."""
    seed_lab(tls_server)
    _, out, _ = await kubectl.run("get", "pods", "-A", "-o", "wide")
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS"]
    assert row.split()[:5] == ["guestbook", "frontend", "1/1", "Running", "2"]
    assert "172.20.188.66" in row
    assert "worker-0" in row
    _, out, _ = await kubectl.run("get", "nodes", "-o", "wide")
    assert "192.168.102.103" in out
    assert out.splitlines()[1].split()[1] == "Ready"
    accept = [r.headers.get("Accept", "") for r in tls_server.requests if r.path == "/api/v1/pods"]
    assert accept
    assert accept[0].startswith("application/json;as=Table")


async def test_get_yaml(tls_server: ApiServer, kubectl: Kubectl) -> None:
    """kubectl get -o yaml prints the stored objects (as a List for a collection)."""
    await kubectl.run("apply", "-f", "-", stdin=POOL.format(nat="true"))
    _, out, _ = await kubectl.run("get", "ippools.crd.projectcalico.org", "-o", "yaml")
    doc = yaml.safe_load(out)
    assert doc["kind"] == "List"
    (item,) = doc["items"]
    assert item["metadata"]["name"] == "pool-a"
    assert item["spec"]["natOutgoing"] is True
    assert item["spec"]["assignmentMode"] == "Automatic"  # CRD default applied
    _, out, _ = await kubectl.run("get", "ippool", "pool-a", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["uid"] == item["metadata"]["uid"]


async def test_apply_creates_then_configures(tls_server: ApiServer, kubectl: Kubectl) -> None:
    """kubectl apply creates (POST, server-side field validation), then sends a merge patch
    for a custom resource and a strategic merge patch for a pod."""
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=POOL.format(nat="true"))
    assert out.strip() == "ippool.crd.projectcalico.org/pool-a created"
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=POOL.format(nat="false"))
    assert out.strip() == "ippool.crd.projectcalico.org/pool-a configured"
    pool = tls_server.get("ippools", "pool-a")
    assert pool["spec"]["natOutgoing"] is False
    assert pool["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in pool["metadata"]["annotations"]
    writes = [(r.method, r.content_type, r.query.get("fieldValidation"))
              for r in tls_server.requests if r.method in ("POST", "PATCH")]
    assert writes == [("POST", "application/json", "Strict"),
                      ("PATCH", "application/merge-patch+json", "Strict")]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    await kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(pod))
    pod["spec"]["containers"][0]["image"] = "nginx:2"
    await kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(pod))
    assert tls_server.get("pods", "web", "default")["spec"]["containers"][0]["image"] == "nginx:2"
    assert tls_server.requests[-1].content_type.startswith(
        "application/strategic-merge-patch+json")


async def test_apply_rejects_invalid_objects(kubectl: Kubectl) -> None:
    """kubectl apply reports the server's 400 for an unknown field and 422 for a schema
    violation."""
    bad_field = POOL.format(nat="true") + "  bogus: 1\n"
    rc, _, err = await kubectl.run("apply", "-f", "-", stdin=bad_field, check=False)
    assert rc != 0
    assert 'unknown field "spec.bogus"' in err
    bad_value = POOL.format(nat="true").replace("blockSize: 26", "blockSize: 200")
    rc, _, err = await kubectl.run("apply", "-f", "-", stdin=bad_value, check=False)
    assert rc != 0
    assert "spec.blockSize" in err
    assert "should be less than or equal to 128" in err


async def test_patch_merge_and_delete(tls_server: ApiServer, kubectl: Kubectl) -> None:
    """kubectl patch --type merge changes the object; kubectl delete removes it."""
    await kubectl.run("apply", "-f", "-", stdin=POOL.format(nat="true"))
    _, out, _ = await kubectl.run("patch", "ippools.crd.projectcalico.org", "pool-a",
                                  "--type", "merge", "-p", '{"spec":{"disabled":true}}')
    assert out.strip() == "ippool.crd.projectcalico.org/pool-a patched"
    assert tls_server.get("ippools", "pool-a")["spec"]["disabled"] is True
    _, out, _ = await kubectl.run("delete", "ippools.crd.projectcalico.org", "pool-a")
    assert out.strip() == 'ippool.crd.projectcalico.org "pool-a" deleted'
    assert tls_server.list("ippools") == []
    rc, _, err = await kubectl.run("get", "ippool", "pool-a", check=False)
    assert rc == 1
    assert 'ippools.crd.projectcalico.org "pool-a" not found' in err


async def test_get_watch_streams_changes(tls_server: ApiServer, kubectl: Kubectl) -> None:
    """kubectl get --watch prints the current rows, then a row per change."""
    seed_lab(tls_server)
    proc = await asyncio.create_subprocess_exec(
        *kubectl.base, "get", "pods", "-n", "guestbook", "--watch",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), 20)
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert header.split()[:2] == [b"NAME", b"READY"]
        assert first.split()[:3] == [b"frontend", b"1/1", b"Running"]
        while tls_server.open_watches == 0:  # noqa: ASYNC110 - the server's own state
            await asyncio.sleep(0.05)
        tls_server.patch("pods", "frontend", {"status": {"phase": "Failed"}},
                         namespace="guestbook")
        changed = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert changed.split()[:3] == [b"frontend", b"1/1", b"Failed"]
    finally:
        proc.kill()
        await proc.wait()


async def test_plain_http_without_auth(tmp_path: Path) -> None:
    """Over plain HTTP kubectl sends no token, so it works when authentication is disabled."""
    srv = ApiServer(token=None)
    await srv.start()
    try:
        kubectl = Kubectl(srv.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
        _, out, _ = await kubectl.run("get", "namespaces", "-o", "name")
        names: list[Any] = out.split()
        assert names == ["namespace/default", "namespace/kube-node-lease",
                         "namespace/kube-public", "namespace/kube-system"]
    finally:
        await srv.stop()


async def test_v3_printer_columns(tmp_path: Path) -> None:
    """With native v3 CRDs, kubectl get shows each CRD's additionalPrinterColumns: an IPPool's
    CIDR, modes, NAT and its Allocatable condition (a JSONPath filter), a CalicoNodeStatus's
    classes as JSON; a v1 CRD (none declared) shows NAME and AGE."""
    srv = ApiServer(tls=True, calico_api="v3")
    await srv.start()
    try:
        kubectl = Kubectl(srv.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
        srv.create({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                    "metadata": {"name": "pool-a"},
                    "spec": {"cidr": "172.20.0.0/16", "vxlanMode": "Always",
                             "natOutgoing": True},
                    "status": {"conditions": [{
                        "type": "Allocatable", "status": "False", "reason": "CIDROverlap",
                        "message": "overlap", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        srv.create({"apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
                    "metadata": {"name": "n1"},
                    "spec": {"node": "n1", "classes": ["Agent", "BGP"],
                             "updatePeriodSeconds": 10}})
        _, out, _ = await kubectl.run("get", "ippools.projectcalico.org")
        header, row = out.splitlines()[:2]
        assert header.split() == ["NAME", "CIDR", "VXLAN", "IPIP", "NAT", "ALLOCATABLE", "AGE"]
        # no ipipMode: the server sends a null cell, as the real one does for a path that
        # matches nothing (the v3 CRD does not default it; clientv3 does, on write)
        assert row.split()[:5] == ["pool-a", "172.20.0.0/16", "Always", "true", "False"]
        _, out, _ = await kubectl.run("get", "caliconodestatuses.projectcalico.org")
        assert out.splitlines()[1].split() == ["n1", "n1", '["Agent","BGP"]']
    finally:
        await srv.stop()
