"""scaleagent: many simulated downstream Kubernetes clusters for one Rancher server."""

__version__ = "0.1.0"
