"""Operability: alert rules, dashboards, deploy manifests, Dockerfile, a real Prometheus."""
