"""Calico Goldmane's gRPC interface: ``api.proto`` and the Python modules generated from it.

``api.proto`` is a byte-for-byte copy of ``goldmane/proto/api.proto`` of projectcalico/calico
v3.32.1 (git blob ``0d8ab6f8932bc2ebb4d1780c8eafbe79753276b1``, checked by a test). The four
``api_pb2*`` files are generated from it by ``make proto`` (``tools/gen_proto.py``: grpcio-tools
for the messages and stubs, mypy-protobuf for the ``.pyi`` types) and committed.

Why committed rather than generated at install time: the exporter installs and runs without
``grpcio-tools`` (a protoc build of several megabytes needed by nobody at run time); an
editable install, the image build and ``mypy --strict`` on a fresh clone all find the modules
without a custom build step; and a change of generator shows as a reviewable diff. The cost is
that the generated code pins its runtime (``protobuf`` 7.x at least the generating version,
``grpcio`` at least the generating version: both bounds are in ``pyproject.toml``) and must be
regenerated on an upgrade; ``tests/flows/test_wire.py`` regenerates into a temporary folder and
fails when the committed files differ, so they cannot drift.

Data definitions only, no logic of ours: both the exporter's ``exporter.flows`` feature and the
simulator's Goldmane stand-in (``exporter.sim.goldmane``) speak this interface, as both speak
Kubernetes' JSON. It imports nothing from the exporter (an import-linter contract).
"""
