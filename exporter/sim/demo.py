"""What ``calico-exporter demo`` adds to its simulated cluster so that every dashboard panel has
something to show: a NetworkSet and a GlobalNetworkSet, and a Kubernetes NetworkPolicy whose
selector has a typo (``run: tsetpod``), so it selects no pod at all, in namespace ``default``,
which every cluster has; and in ``guestbook`` a staged policy that would deny what is allowed
today (testns's traffic into guestbook, which ``mypolicy`` allows), so the demo's flows show
``CalicoStagedPolicyWouldDeny`` and the "would deny" panel. Addresses are documentation
ranges: data, never targets.
The Calico objects go into the group that holds Calico's data (``ApiServer.calico_group``), as
the scenario's do.
"""

from __future__ import annotations

from typing import Any

from exporter.sim import calicoapi
from exporter.sim.apiserver import ApiServer

__all__ = ["EXTRAS", "seed_extras"]

EXTRAS: tuple[dict[str, Any], ...] = (
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkSet",
     "metadata": {"name": "partners", "namespace": "default", "labels": {"role": "partner"}},
     "spec": {"nets": ["198.51.100.0/24"]}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkSet",
     "metadata": {"name": "blocklist", "labels": {"role": "blocklist"}},
     "spec": {"nets": ["203.0.113.0/24"]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "allow-web-to-testpod", "namespace": "default"},
     "spec": {"podSelector": {"matchLabels": {"run": "tsetpod"}},
              "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}]}]}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "StagedNetworkPolicy",
     "metadata": {"name": "lockdown-guestbook", "namespace": "guestbook"},
     "spec": {"stagedAction": "Set", "tier": "default", "order": 10, "selector": "all()",
              "types": ["Ingress"],
              "ingress": [{"action": "Deny", "source": {
                  "namespaceSelector": "kubernetes.io/metadata.name == 'testns'"}}]}},
)
"""The objects: network sets, a policy that selects nothing (a typo of ``testpod``), and a
staged policy that would deny allowed traffic."""


def seed_extras(api: ApiServer) -> None:
    """Add :data:`EXTRAS` to the emulator (replacing objects of the same names), Calico's in
    native ``projectcalico.org/v3`` when that group holds the data."""
    v3 = api.calico_api_version != calicoapi.V1_API
    api.seed([calicoapi.migrated(obj) if v3 and obj["apiVersion"] == calicoapi.V1_API
              else dict(obj) for obj in EXTRAS])
