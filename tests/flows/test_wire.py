"""The Goldmane wire modules: api.proto is Calico's, byte for byte, and the committed generated
modules are exactly what ``make proto`` produces from it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tools.gen_proto import GENERATED, PROTO, ROOT, generate

UPSTREAM_BLOB = "0d8ab6f8932bc2ebb4d1780c8eafbe79753276b1"
"""git blob of goldmane/proto/api.proto at projectcalico/calico v3.32.1 (0ca9d1b9)."""


def test_api_proto_is_the_upstream_file() -> None:
    """api.proto hashes to the upstream git blob (git hash-object), so it is byte-exact."""
    data = (ROOT / PROTO).read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    assert blob == UPSTREAM_BLOB


def test_committed_modules_are_what_make_proto_generates(tmp_path: Path) -> None:
    """Regenerating with the pinned grpcio-tools and mypy-protobuf gives the committed files."""
    generate(tmp_path)
    for name in GENERATED:
        committed = (ROOT / PROTO.parent / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"run make proto: {name} differs"
