"""Prometheus collectors: every metric name, type, help text and label set lives here.

One module per feature; each declares ``SPECS`` (see :mod:`exporter.metrics.spec`) and a collector
class that reads the in-memory state it was given. This package and ``exporter.server`` are the
only importers of prometheus-client.
"""
