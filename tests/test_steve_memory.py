"""The steve layer adds no per-cluster cost while nobody browses (figures: benchmarks/steve.py)."""

from __future__ import annotations

import gc
import tracemalloc

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from scaleagent.cluster.cluster import ClusterConfig, ClusterSet, SimulatedCluster
from scaleagent.steve.schemas import schemas_for
from tests.test_steve_api import call


def ping(cluster) -> None:
    factory = cluster.steve_resolver("tcp", "127.0.0.1:6080")
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6080))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /ping HTTP/1.1\r\nHost: not-used\r\n\r\n")
    assert transport.value().endswith(b"\r\n\r\npong")
    protocol.connectionLost(None)


def test_pinged_clusters_keep_nothing_of_steve_and_browsing_builds_only_the_browsed_one():
    clusters = ClusterSet(task.Clock(), ClusterConfig(save_interval=0, lease_period=0, status_period=0))
    warm = clusters.cluster(999, "warm-00999")
    ping(warm)
    assert call(warm, "GET", "/v1/schemas")[0] == 200  # process-wide parts (Site, schema set) exist now
    group = [clusters.cluster(i, f"scale-{i:05d}") for i in range(300)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):  # Rancher's health check every 15 s, three rounds
            for cluster in group:
                ping(cluster)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 300 * 50, f"{grown} bytes kept after 900 pings"  # i.e. nothing per cluster
    assert not any(c.materialized for c in group)
    assert not any(hasattr(c, "steve") for c in group) and "_steve_site" in SimulatedCluster.__slots__
    assert all(c._steve_site is None for c in group)  # the shared Site serves them all
    # browsing one builds its store (and nothing for the others); the schema set is the shared one
    code, body = call(group[7], "GET", "/v1/pods")
    assert code == 200 and body["count"] > 0
    assert [c.index for c in group if c.materialized] == [7]
    assert schemas_for(group[7].api.kinds) is schemas_for(warm.api.kinds)
