"""What steve's /v1 costs per cluster: nothing until browsed, then what browsing builds.

    python benchmarks/steve.py [--clusters 1000] [--browsed 50] [--out figures.json]

Through the real `ClusterSet` (built-in template) and each cluster's steve-tunnel factory, in memory:

* idle: N clusters created (what the agent holds before Rancher dials anything);
* pinged: every cluster answered `GET /ping` on its steve tunnel three times (Rancher's 15 s health
  check) -- the steve layer is mounted, so this shows what it keeps per cluster that nobody browses;
* browsed: `--browsed` clusters opened in the Cluster Explorer (/v1/schemas, /v1/counts,
  /v1/namespaces, /v1/nodes, /v1/pods): first the cluster's own store (built on first use, as kubectl
  or a Rancher controller would also cause), then what the requests leave behind (the store's owner
  index, which steve's reverse relationships and the apiserver's garbage collection share).
  Schema sets are per type table, built while warming up, shared by every cluster with the same types.

All figures are tracemalloc's live bytes after a full `gc.collect()`, so they are what stays, not peaks.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXPLORER = ("/v1/schemas", "/v1/counts", "/v1/namespaces", "/v1/nodes", "/v1/pods")


def request(cluster, path: str) -> bytes:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    protocol = cluster.steve_resolver("tcp", "127.0.0.1:6080").buildProtocol(
        IPv4Address("TCP", "127.0.0.1", 6080)
    )
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        f"GET {path} HTTP/1.1\r\nHost: rancher\r\nX-API-URL-Prefix: /k8s/clusters/c-x\r\n\r\n".encode()
    )
    reply = transport.value()
    if not reply.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{path}: {reply[:200]!r}")
    protocol.connectionLost(None)
    return reply


def live() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def measure(clusters: int, browsed: int) -> dict:
    from twisted.internet.task import Clock

    from scaleagent.cluster.cluster import ClusterConfig, ClusterSet

    clock = Clock()
    clock.advance(time.time())
    tracemalloc.start()
    cs = ClusterSet(clock, ClusterConfig(save_interval=0, lease_period=0, status_period=0))
    # warm everything process-wide: template, shared seeds, the steve Site, and the schema set of
    # each distinct type table (clusters differ in their seed CRDs; equal ones share one set)
    for i in range(20):
        warm = cs.cluster(10**6 + i, f"warm-{i:05d}")
        request(warm, "/ping")
        for path in EXPLORER:
            request(warm, path)
    base = live()
    group = [cs.cluster(i, f"scale-{i:05d}") for i in range(clusters)]
    idle = live()
    for _ in range(3):
        for cluster in group:
            request(cluster, "/ping")
    pinged = live()
    materialized = sum(c.materialized for c in group)
    for cluster in group[:browsed]:
        cluster.store  # noqa: B018  (what kubectl or a Rancher controller would also cause)
    stores = live()
    started = time.perf_counter()
    for cluster in group[:browsed]:
        for path in EXPLORER:
            request(cluster, path)
    browse_seconds = time.perf_counter() - started
    after_browse = live()
    tracemalloc.stop()
    return {
        "clusters": clusters,
        "browsed": browsed,
        "idle_bytes_per_cluster": round((idle - base) / clusters, 1),
        "steve_bytes_per_pinged_cluster": round((pinged - idle) / clusters, 1),
        "materialized_by_pings": materialized,
        "store_kib_per_browsed_cluster": round((stores - pinged) / browsed / 1024, 1),
        "steve_kib_per_browsed_cluster": round((after_browse - stores) / browsed / 1024, 1),
        "explorer_ms_per_cluster": round(browse_seconds / browsed * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--browsed", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    figures = measure(args.clusters, args.browsed)
    print(
        f"{figures['clusters']} clusters: idle {figures['idle_bytes_per_cluster']} B/cluster; "
        f"steve after 3 pings each: {figures['steve_bytes_per_pinged_cluster']} B/cluster "
        f"({figures['materialized_by_pings']} stores built); browsed ({figures['browsed']}): store "
        f"{figures['store_kib_per_browsed_cluster']} KiB/cluster, then steve "
        f"{figures['steve_kib_per_browsed_cluster']} KiB/cluster; explorer requests "
        f"{figures['explorer_ms_per_cluster']} ms/cluster"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
