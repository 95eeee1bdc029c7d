"""Synthetic probes with expected verdicts, run from a chosen source namespace.

A probe (``config``) is tried by a prober (``http``, ``tcp``, ``dns``, ``icmp``; registry in
``probers``) up to ``attempts`` times per run; the run's bounded outcome is judged against the
probe's ``expect`` (``outcome``). The ``scheduler`` runs each probe on its own fixed grid under a
global concurrency limit, ``results`` keeps what the metrics module exports, ``reload`` follows
the config file, and ``demo`` serves loopback targets for ``make demo``. Nothing here imports
prometheus-client, kubernetes-asyncio or another feature module.
"""
