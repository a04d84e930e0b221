"""Rancher's management API, the part an importing agent needs (treq): check the server, import a
cluster, its registration token, its state, delete it. See `scaleagent.rancher.client`."""
