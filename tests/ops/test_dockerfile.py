"""The Dockerfile: clean under hadolint, two stages on one BASE_IMAGE (python:3.11-slim unless
overridden), installs only the host-built wheels with nothing fetched, runs nothing in the final
stage, a non-root user and calico-exporter as the entrypoint. tests/ops/test_image.py builds
and runs it."""

from __future__ import annotations

import json
import re

from tests.ops.helpers import ROOT, required_tool, run

DOCKERFILE = ROOT / "Dockerfile"


def _stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by FROM; what comes
    before the first FROM is left out (see _preamble)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing on the Dockerfile."""
    result = run(required_tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def _preamble() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [line for line in lines[:first] if line and not line.startswith("#")]


def test_two_stages_on_one_base() -> None:
    """Both stages start from BASE_IMAGE, which defaults to the public Python 3.11 slim image."""
    assert _preamble() == ["ARG BASE_IMAGE=python:3.11-slim"]
    stages = _stages()
    assert len(stages) == 2
    assert stages[0][0] == "FROM ${BASE_IMAGE} AS install"
    assert stages[1][0] == "FROM ${BASE_IMAGE}"


def test_install_stage_uses_only_the_host_built_wheels() -> None:
    """The install stage copies the wheels of the build context and installs from them alone
    (--no-index, pip run from its wheel), no test extras."""
    install = _stages()[0]
    assert "COPY wheels/ /wheels/" in install
    (run,) = [i for i in install if i.startswith("RUN ")]
    assert "--no-index" in run
    assert "--find-links /wheels" in run
    assert "[test]" not in run
    assert "python3 -m venv --without-pip /opt/calico-exporter" in run


def test_final_stage_runs_nothing() -> None:
    """The final stage only copies the installed environment from the install stage."""
    final = _stages()[1]
    assert not [i for i in final if i.startswith(("RUN", "ADD"))]
    assert [i for i in final if i.startswith("COPY")] == [
        "COPY --from=install /opt/calico-exporter /opt/calico-exporter"]


def test_runs_as_non_root_with_the_exporter_entrypoint() -> None:
    """The final stage switches to a numeric non-root user and runs calico-exporter."""
    final = _stages()[1]
    users = [i.split()[1] for i in final if i.startswith("USER ")]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    entrypoint = next(i for i in final if i.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["calico-exporter"]
    assert "EXPOSE 9808" in final
