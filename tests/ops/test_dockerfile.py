"""The Dockerfile: clean under hadolint, multi-stage on python:3.11-slim, only runtime dependencies
in the final image, a non-root user and calico-exporter as the entrypoint."""

from __future__ import annotations

import json
import re

from tests.ops.helpers import ROOT, required_tool, run

DOCKERFILE = ROOT / "Dockerfile"


def _stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing on the Dockerfile."""
    result = run(required_tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_two_stages_on_python_slim() -> None:
    """A build stage makes the wheels; the final stage starts again from python:3.11-slim."""
    stages = _stages()
    assert len(stages) == 2
    assert stages[0][0] == "FROM python:3.11-slim AS build"
    assert stages[1][0] == "FROM python:3.11-slim"
    assert any(i.startswith("RUN pip wheel --wheel-dir /wheels .") for i in stages[0])


def test_final_stage_installs_only_the_built_wheels() -> None:
    """The final stage installs from the build stage's wheels with --no-index (no test extras,
    no compiler, nothing fetched) and copies no source tree."""
    final = _stages()[1]
    installs = [i for i in final if "pip install" in i]
    assert len(installs) == 1
    assert "--no-index" in installs[0]
    assert "--mount=type=bind,from=build,source=/wheels" in installs[0]
    assert "[test]" not in installs[0]
    assert not any(i.startswith(("COPY", "ADD")) for i in final)


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
