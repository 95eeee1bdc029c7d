"""Probe targets in link-local ranges and cloud metadata services are refused by validation
unless a probe opts in with ``allow_link_local: true`` (SSRF through the probe agent).

Validation only: nothing here sends a packet anywhere. The addresses are built from the
exporter's own constants and ipaddress arithmetic, never written as literals."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from exporter.probes.config import (
    LINK_LOCAL_NETWORKS,
    METADATA_ADDRESSES,
    METADATA_NAMES,
    parse_probe_config,
    restricted_target,
)

V4_LINK_LOCAL, V6_LINK_LOCAL = LINK_LOCAL_NETWORKS
LINK_LOCAL_V4 = V4_LINK_LOCAL[7 * 256 + 9]  # an ordinary address in the /16
LINK_LOCAL_V6 = V6_LINK_LOCAL[0x1234]
INSTANCE_METADATA = V4_LINK_LOCAL[169 * 256 + 254]  # the well-known metadata address
IPV6_METADATA = next(a for a in METADATA_ADDRESSES
                     if a.version == 6)  # AWS's, which is not link-local
MAPPED = ipaddress.IPv6Address(int(ipaddress.IPv6Address("::ffff:0:0")) + int(LINK_LOCAL_V4))
LAB = ipaddress.ip_network("198.18.0.0/15")[5]


def probe(protocol: str, target: str, **extra: object) -> dict[str, object]:
    return {"name": "p", "protocol": protocol, "target": target, "expect": "allow",
            "source": {"namespace": "team-a"}, **extra}


def errors_of(*probes: dict[str, object]) -> list[str]:
    _, errors = parse_probe_config(yaml.safe_dump({"probes": list(probes)}))
    return errors


def test_metadata_address_is_one_of_the_constants() -> None:
    """The address built by arithmetic is the one the exporter lists (so the cases below test
    what they claim)."""
    assert INSTANCE_METADATA in METADATA_ADDRESSES
    assert IPV6_METADATA not in V6_LINK_LOCAL


@pytest.mark.parametrize(("protocol", "target", "host", "reason"), [
    ("http", f"http://{INSTANCE_METADATA}/latest/meta-data/", str(INSTANCE_METADATA),
     "is a cloud metadata address"),
    ("http", f"http://[{IPV6_METADATA}]/latest/", str(IPV6_METADATA),
     "is a cloud metadata address"),
    ("http", "http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal",
     "is a cloud metadata service name"),
    ("tcp", f"{LINK_LOCAL_V4}:80", str(LINK_LOCAL_V4), "is link-local"),
    ("tcp", f"[{LINK_LOCAL_V6}]:443", str(LINK_LOCAL_V6), "is link-local"),
    ("tcp", f"[{MAPPED}]:80", str(MAPPED), "is link-local"),
    ("icmp", str(LINK_LOCAL_V4), str(LINK_LOCAL_V4), "is link-local"),
    ("icmp", "instance-data.ec2.internal.", "instance-data.ec2.internal.",
     "is a cloud metadata service name"),
])
def test_link_local_and_metadata_targets_are_refused(protocol: str, target: str, host: str,
                                                     reason: str) -> None:
    """Each protocol's target in a link-local range, at a metadata address or name, is refused
    with one message naming the host and the opt-in."""
    assert errors_of(probe(protocol, target)) == [
        f'probes[0] "p": target: "{host}" {reason}: refused unless the probe sets '
        "allow_link_local: true"]


def test_dns_server_in_link_local_range_is_refused() -> None:
    """A DNS probe's server counts as a target too."""
    assert errors_of(probe("dns", "kubernetes.default.svc.cluster.local",
                           server=f"{LINK_LOCAL_V4}:53")) == [
        f'probes[0] "p": server: "{LINK_LOCAL_V4}" is link-local: refused unless the probe '
        "sets allow_link_local: true"]


def test_explicit_opt_in_allows_them() -> None:
    """allow_link_local: true on the probe accepts the same targets, and the model keeps the
    opt-in; it must be a boolean."""
    config, errors = parse_probe_config(yaml.safe_dump({"probes": [
        probe("tcp", f"{LINK_LOCAL_V4}:80", allow_link_local=True)]}))
    assert errors == []
    assert config is not None
    assert config.probes[0].allow_link_local is True
    assert errors_of(probe("tcp", f"{LINK_LOCAL_V4}:80", allow_link_local="yes")) == [
        'probes[0] "p": allow_link_local: "yes" is not true or false']


def test_ordinary_targets_are_not_restricted() -> None:
    """Lab, cluster and service addresses and ordinary names pass."""
    assert errors_of(probe("tcp", f"{LAB}:80"), ) == []
    for host in (str(LAB), "frontend.guestbook.svc.cluster.local", "metadata-api"):
        assert restricted_target(host) is None
    assert all(restricted_target(name) == "is a cloud metadata service name"
               for name in METADATA_NAMES)
