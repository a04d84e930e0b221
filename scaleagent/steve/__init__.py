"""steve's `/v1` API (what Rancher's Cluster Explorer reads), served on each cluster's steve tunnel.

Public API (for the cluster layer):

- `V1Resource(clock, api_of=cluster_api)`: the Twisted Web resource for `/v1`.  One instance serves
  every cluster of a process; `api_of(request)` returns the cluster's `ApiContext`.  The default reads
  `request.channel.steve_cluster.api` (the cluster layer tags each steve-tunnel connection).
- `summary.summarize(obj)`: wrangler's state rules; `schemas.schemas_for(registry)`: the shared schema
  set of a type table.

Nothing here is per cluster: schemas are cached on the type tables (shared between clusters with the
same discovery), lists and counts are computed from the store on request, and subscriptions live as
long as their WebSocket.
"""

from scaleagent.steve.resource import V1Resource, cluster_api

__all__ = ["V1Resource", "cluster_api"]
