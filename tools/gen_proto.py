"""Regenerate the Goldmane gRPC modules in ``exporter/goldmane/`` from its ``api.proto``.

``make proto`` runs this. The modules are committed (see ``exporter/goldmane/__init__.py`` for
why) and ``tests/flows/test_wire.py`` regenerates them into a temporary folder and compares, so a
hand edit or a generator upgrade without regenerating fails the tests. ``--out DIR`` writes the
four files there instead of in place.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("exporter/goldmane/api.proto")
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "api_pb2_grpc.pyi")


def generate(out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with the Python, gRPC and mypy plugins; return the files."""
    from grpc_tools import protoc  # a test and development dependency only

    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc", f"-I{ROOT}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}", f"--mypy_grpc_out={tmp}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            str(ROOT / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out / name
            shutil.copyfile(Path(tmp) / PROTO.parent / name, target)
            written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / PROTO.parent)
    args = parser.parse_args()
    for path in generate(args.out):
        sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
