"""The BGP view of the cluster: one NodeBGP per existing node, from the watched statuses."""

from __future__ import annotations

from exporter.kube.store import Store
from exporter.model.bgp import NodeBGP
from exporter.model.core import Node
from exporter.model.nodestatus import CalicoNodeStatus


class NodeStatusView:
    """Reads the CalicoNodeStatus and Node stores; owns nothing.

    When several statuses name the same node (ours and one a user applied by hand), the one we
    manage wins, else the most recently updated one, so each node has exactly one set of series.
    Statuses of nodes that no longer exist are not exported.
    """

    def __init__(self, *, statuses: Store[CalicoNodeStatus], nodes: Store[Node] | None,
                 prefix: str) -> None:
        self._statuses = statuses
        self._nodes = nodes
        self._prefix = prefix

    def snapshot(self) -> list[NodeBGP]:
        best: dict[str, CalicoNodeStatus] = {}
        for status in self._statuses.values():
            if self._nodes is not None and self._nodes.get(("", status.node)) is None:
                continue
            current = best.get(status.node)
            if current is None or self._rank(status) > self._rank(current):
                best[status.node] = status
        return [best[node].bgp for node in sorted(best)]

    def _rank(self, status: CalicoNodeStatus) -> tuple[bool, float, str]:
        ours = status.name == self._prefix + status.node
        return (ours, status.bgp.last_updated or 0.0, status.name)
