"""Whether this machine can run tests in network namespaces it creates (root, iproute2, BIRD)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess

BIRD = "/usr/sbin/bird"
"""Debian's BIRD 1.6.8, the lineage Calico runs."""


def netns_unusable(*, bird: bool = False) -> str | None:
    """Why namespaces (and BIRD, when asked) cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    if bird and not os.access(BIRD, os.X_OK):
        return f"needs BIRD 1.6 at {BIRD}"
    probe = f"cebp{secrets.token_hex(3)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"ip netns does not work here: {exc}"
    with contextlib.suppress(subprocess.CalledProcessError, OSError):
        subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True,
                       timeout=30)
    return None
