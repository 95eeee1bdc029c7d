"""calico-exporter: telemetry for Calico networking on Kubernetes.

This module owns the version only.
"""

__version__ = "0.1.0"
