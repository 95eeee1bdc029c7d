"""Kubernetes API emulator and simulated Calico cluster: the stand-in for the real world."""
