"""The Kubernetes boundary: API client, list-then-watch engine and in-memory stores.

This package is the only one that imports kubernetes-asyncio. Above it, code sees parsed, frozen
model objects in a :class:`~exporter.kube.store.Store` and change notifications, never raw HTTP.
"""
