"""The container image, built by `make image` and run: what users deploy is what was tested.

The image is built as users build it (`make image`, here with buildah and the local Debian 12
base that `tools/image.py base` makes, since no registry is reachable) and then run with
`buildah run --isolation chroot`. For the demo run the root filesystem is made read-only as a
pod's `readOnlyRootFilesystem: true` makes it: the container starts as root only to bind-remount
its own root read-only in its private mount namespace, then drops to the image's uid 65532 with
no capabilities left and execs `calico-exporter demo`, with a tmpfs on /tmp as the manifests
mount an emptyDir there. The exporter process is then checked from the host: its uid, its
capabilities, its mounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__
from tests.e2e.lab import parse_samples, value
from tests.ops.helpers import ROOT, optional_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TAG = f"localhost/calico-exporter:{__version__}-test-{os.getpid()}"
"""A tag of this run's own (make image IMAGE_TAG=...), removed at the end: runs on one machine
never share or delete each other's image."""
MASTER = "nke-dev01-89e792-master-0"
READ_ONLY = ("mount -o remount,bind,ro / && exec setpriv --reuid=65532 --regid=65532 "
             "--clear-groups --inh-caps=-all --bounding-set=-all ")
"""Run as root in the container's own mount namespace: make / read-only, then become the
image's user with no capabilities, and exec the rest of the command line."""


@dataclass
class Image:
    buildah: str
    container: str
    info: dict[str, object]

    def run(self, *argv: str, read_only: bool = False, timeout: float = 120,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv, read_only=read_only), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def argv(self, *argv: str, read_only: bool = False) -> list[str]:
        base = [self.buildah, "run", "--isolation", "chroot"]
        if not read_only:
            return [*base, self.container, "--", *argv]
        return [*base, "--user", "0:0", "--cap-add", "CAP_SYS_ADMIN",
                "--mount", "type=tmpfs,destination=/tmp", self.container, "--",
                "sh", "-c", READ_ONLY + " ".join(argv)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """`make image` with the local Debian 12 base and buildah, and a container of it."""
    buildah = optional_tool("buildah")
    if os.geteuid() != 0:
        pytest.skip("buildah needs root here (make test runs as root in CI)")
    base = subprocess.run([sys.executable, "tools/image.py", "base"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert base.returncode == 0, base.stderr
    built = subprocess.run(["make", "--no-print-directory", "image",
                            f"BASE_IMAGE={base.stdout.strip()}", "IMAGE_TOOL=buildah",
                            f"IMAGE_TAG={TAG}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert f"built {TAG}" in built.stdout
    info = json.loads(subprocess.run([buildah, "inspect", "--type", "image", TAG],
                                     capture_output=True, text=True, check=True).stdout)
    container = subprocess.run([buildah, "from", "--pull-never", TAG], capture_output=True,
                               text=True, check=True).stdout.strip()
    try:
        yield Image(buildah, container, info)
    finally:
        subprocess.run([buildah, "rm", container], capture_output=True, check=False)
        subprocess.run([buildah, "rmi", TAG], capture_output=True, check=False)


def test_image_config(image: Image) -> None:
    """The image runs calico-exporter as uid 65532 by default and exposes the metrics port."""
    config = image.info["OCIv1"]["config"]  # type: ignore[index]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["calico-exporter"]
    assert config["Cmd"] == ["--help"]
    assert "9808/tcp" in config["ExposedPorts"]
    result = image.run("id", "-u")
    assert result.stdout.strip() == "65532", result.stderr


def test_version(image: Image) -> None:
    """`calico-exporter --version` in the image prints the package version."""
    result = image.run("calico-exporter", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"calico-exporter {__version__}\n"


def test_only_runtime_dependencies(image: Image) -> None:
    """The image's Python has the exporter and its runtime dependencies (grpcio and protobuf for
    Goldmane included), and no pip, no test tools, no protobuf compiler, no compiler."""
    script = ("import importlib.util as u; print(*[m for m in ('exporter', 'aiohttp', "
              "'kubernetes_asyncio', 'prometheus_client', 'orjson', 'structlog', 'yaml', 'grpc', "
              "'google.protobuf', 'pip', 'pytest', 'mypy', 'setuptools', 'grpc_tools', "
              "'mypy_protobuf') if u.find_spec(m)])")
    result = image.run("python", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["exporter", "aiohttp", "kubernetes_asyncio",
                                     "prometheus_client", "orjson", "structlog", "yaml", "grpc",
                                     "google.protobuf"]
    assert image.run("sh", "-c", "command -v gcc cc || echo none").stdout.strip() == "none"
    stubs = image.run("sh", "-c", "find /opt/calico-exporter -name '*.pyi' | wc -l")
    assert stubs.stdout.strip() == "0"


def test_generated_kubernetes_classes_import_from_bytecode(image: Image) -> None:
    """kubernetes-asyncio's generated API and model classes have no sources in the image, only
    bytecode where the sources were, and import from it (its client package imports them)."""
    script = ("import kubernetes_asyncio.client as c; "
              "print(c.CoreV1Api.__module__, c.V1Pod.__module__, "
              "c.api.core_v1_api.__file__.endswith('.pyc'))")
    result = image.run("python", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["kubernetes_asyncio.client.api.core_v1_api",
                                     "kubernetes_asyncio.client.models.v1_pod", "True"]


def _size_mb(image: Image) -> float:
    """The uncompressed size of the image's layers as buildah reports it (SI units)."""
    listed = json.loads(subprocess.run([image.buildah, "images", "--json", TAG],
                                       capture_output=True, text=True, check=True).stdout)
    number, unit = str(listed[0]["size"]).split()
    return float(number) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


def test_size_under_200_mb_as_the_readme_says(image: Image) -> None:
    """The image is under 200 MB uncompressed, and the README states its size (within 15 MB)."""
    size = _size_mb(image)
    assert size < 200, f"{size:.0f} MB"
    stated = re.search(r"image is about (\d+) MB", (ROOT / "README.md").read_text())
    assert stated, "README.md does not state the image size"
    assert abs(int(stated.group(1)) - size) <= 15, (
        f"README says {stated.group(1)} MB, built {size:.0f} MB")


def test_root_filesystem_is_really_read_only(image: Image) -> None:
    """In the read-only setup, writing anywhere but /tmp fails, as uid 65532 without
    capabilities."""
    script = ("id -u; grep CapEff /proc/self/status; touch /opt/calico-exporter/x; touch /x; "
              "touch /tmp/x && echo tmp-writable")
    result = image.run(f"sh -c '{script}'", read_only=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "65532", result.stdout + result.stderr
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert result.stderr.count("Read-only file system") == 2, result.stderr
    assert lines[-1] == "tmp-writable"


def _find_process(marker: str, deadline: float) -> int:
    """The PID whose command line contains ``marker`` (chroot isolation shares our PIDs)."""
    while True:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if marker in cmdline and "setpriv" not in cmdline and "sh -c" not in cmdline:
                    return int(entry.name)
        assert time.monotonic() < deadline, f"no process with {marker!r}"
        time.sleep(0.2)


def test_demo_runs_read_only_as_65532(image: Image) -> None:
    """`calico-exporter demo` in the image, root read-only and /tmp a tmpfs, serves /metrics
    with the demo's BGP numbers and reads its Goldmane stand-in over gRPC with mutual TLS (grpcio
    works in the image), as uid 65532 with no capabilities."""
    port, api = _free_port(), _free_port()
    marker = f"--listen 127.0.0.1:{port}"
    proc = subprocess.Popen(image.argv("calico-exporter", "demo", marker, "--apiserver-listen",
                                       f"127.0.0.1:{api}", read_only=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    pid = 0
    try:
        pid = _find_process(marker, deadline)
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    samples = parse_samples(r.read().decode())
                if value(samples, "calico_bgp_peers", node=MASTER, ip_version="4",
                         state="established") == 2:
                    break
            assert time.monotonic() < deadline, "the demo never served its BGP numbers"
            time.sleep(0.5)
        assert value(samples, "calico_ippool_size_addresses", pool="default-ipv4-ippool") == 65536
        while value(samples, "calico_exporter_source_up", source="goldmane") != 1:
            assert time.monotonic() < deadline, "the demo never read its Goldmane over mTLS"
            time.sleep(0.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                samples = parse_samples(r.read().decode())
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Uid:\s+65532\s+65532\s+65532\s+65532$", status, re.M), status
        assert re.search(r"^CapEff:\s+0+$", status, re.M), status
        mounts = {}
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            mounts[fields[4]] = (fields[5].split(","), line.split(" - ")[1].split()[0])
        assert "ro" in mounts["/"][0]
        assert mounts["/tmp"][1] == "tmpfs"
        assert "rw" in mounts["/tmp"][0]
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
