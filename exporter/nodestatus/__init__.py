"""BGP state from CalicoNodeStatus objects (cluster mode).

``refresher`` keeps one CalicoNodeStatus per Node (created on node join, repaired on drift,
deleted on node leave; never written on a timer). ``view`` turns the watched statuses into one
:class:`~exporter.model.bgp.NodeBGP` per existing node for the BGP collector.
"""
