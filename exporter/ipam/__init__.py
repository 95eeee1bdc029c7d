"""IPAM utilization: pools, blocks, nodes, borrowed and leaked addresses, workload endpoints.

Pure computation over the IPPool, IPAMBlock, BlockAffinity, IPAMHandle and pod stores, kept
incremental through store subscriptions (see :func:`~exporter.ipam.state.wire_ipam`). No I/O, no
prometheus-client: ``exporter.metrics.ipam`` turns an :class:`~exporter.ipam.state.IpamSnapshot`
into series.
"""

from exporter.ipam.pools import NO_POOL, PoolIndex
from exporter.ipam.state import IpamSnapshot, IpamState, wire_ipam

__all__ = ["NO_POOL", "IpamSnapshot", "IpamState", "PoolIndex", "wire_ipam"]
