"""Policy watch: which pods each Kubernetes, Calico and global network policy, staged policy and
ClusterNetworkPolicy selects, in which tier, and which pods they isolate.

- :mod:`exporter.policy.selector`: the Calico selector language (tokenizer, parser, canonical
  printer, compiled evaluation), exactly as Calico v3.32 parses it.
- :mod:`exporter.policy.k8s`: Kubernetes label selectors and their Calico translation.
- :mod:`exporter.policy.effective`: the endpoint selector Felix derives from each policy and
  from each rule side, and the endpoint labels (namespace and service-account profiles).
- :mod:`exporter.policy.index`: the incremental :class:`~exporter.policy.index.PolicyIndex`.
- :mod:`exporter.policy.wiring`: builds the index over the watch stores.
- :mod:`exporter.policy.cli`: ``calico-exporter selector EXPR --labels k=v ...``.
"""
