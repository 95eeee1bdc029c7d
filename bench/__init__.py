"""Benchmarks: a generator of large simulated clusters, a churn driver and the harness.

``python -m bench.harness --quick`` (``make bench-quick``) or ``--full`` (``make bench``).
"""
