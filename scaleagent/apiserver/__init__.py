"""One simulated kube-apiserver: resource types, a per-cluster store, and the Twisted Web tree over it.

Knows nothing of tunnels or Rancher (see shared/DESIGN.md); `scaleagent.cluster` joins the layers.
"""
