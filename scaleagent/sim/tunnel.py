"""The stand-in's tunnel endpoint: /v3/connect and /v3/connect/register on the remotedialer server end.

Rancher's authorisation (`scaleagent.sim.authorize`) decides each upgrade; this module keeps the
bookkeeping between the remotedialer `TunnelServer` and the store: it tells the store when a cluster's
main or steve tunnel comes and goes (which drives `pending` → `active` → `unavailable`), and closes a
cluster's sessions when the cluster is deleted. The client keys are Rancher's: `<cluster id>` for the
main tunnel, `stv-cluster-<cluster id>` for the steve tunnel, so `TunnelServer.dial(key, ...)` reaches a
cluster the way Rancher's dialer does.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.web.resource import IResource
from twisted.web.server import Request

from scaleagent.redact import logger
from scaleagent.remotedialer.server import Refusal, TunnelServer
from scaleagent.remotedialer.session import Session
from scaleagent.sim.authorize import STV_PREFIX, Accepted, Refused, authorize
from scaleagent.sim.store import MAIN, STEVE, Cluster, NotFound, SimStore

log = logger()

CLOSE_WAIT = 5.0  # seconds `wait_closed` waits for sessions to go


def main_key(cluster_id: str) -> str:
    """Rancher's client key of a cluster's main tunnel."""
    return cluster_id


def steve_key(cluster_id: str) -> str:
    """Rancher's client key of a cluster's steve (stv-cluster) tunnel."""
    return STV_PREFIX + cluster_id


def split_key(client_key: str) -> tuple[str, str]:
    """(cluster id, MAIN or STEVE) of a client key."""
    if client_key.startswith(STV_PREFIX):
        return client_key[len(STV_PREFIX) :], STEVE
    return client_key, MAIN


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers with lower-case names (first value of each, as Go's `Header.Get`)."""
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        if values:
            headers.setdefault(name.decode("latin-1").lower(), values[0].decode("latin-1"))
    return headers


class SimTunnels:
    """The tunnel endpoint of the stand-in: a remotedialer `TunnelServer` with Rancher's authorizer."""

    def __init__(self, reactor: Any, store: SimStore) -> None:
        self._reactor = reactor
        self.store = store
        self.server = TunnelServer(
            reactor,
            self._authorize,
            on_session_added=self._added,
            on_session_removed=self._removed,
        )
        self.accepted = 0
        self.refused = 0
        # The Cluster of each open client key and its session count: a session that ends after its
        # cluster was deleted is still counted down on that (removed) Cluster.
        self._open: dict[str, tuple[Cluster, int]] = {}

    @property
    def resource(self) -> IResource:
        """Mount at /v3/connect and /v3/connect/register."""
        return self.server.resource

    # -- TunnelServer callbacks ----------------------------------------------------------------------

    def _authorize(self, request: Request) -> str | Refusal:
        result = authorize(self.store, request_headers(request))
        if isinstance(result, Refused):
            self.refused += 1
            return Refusal(result.status, result.body)
        assert isinstance(result, Accepted)
        self.accepted += 1
        return result.client_key

    def _added(self, client_key: str, session: Session) -> None:
        cluster_id, kind = split_key(client_key)
        try:
            cluster = self.store.get_cluster(cluster_id)
        except NotFound:
            # Deleted between the upgrade's authorisation and its opening.
            log.info("ranchersim: closing tunnel {key}: the cluster is gone", key=client_key)
            self.server.disconnect(client_key)
            return
        held = self._open.get(client_key)
        self._open[client_key] = (cluster, (held[1] if held and held[0] is cluster else 0) + 1)
        self.store.tunnel_opened(cluster, kind)

    def _removed(self, client_key: str, session: Session) -> None:
        _, kind = split_key(client_key)
        held = self._open.get(client_key)
        if held is None:  # refused in _added (its cluster was already gone): never counted
            return
        cluster, count = held
        if count <= 1:
            del self._open[client_key]
        else:
            self._open[client_key] = (cluster, count - 1)
        self.store.tunnel_closed(cluster, kind)

    # -- what the service uses -----------------------------------------------------------------------

    def sessions(self, cluster_id: str, kind: str = MAIN) -> list[Session]:
        """Open sessions of a cluster's main or steve tunnel, oldest first."""
        key = main_key(cluster_id) if kind == MAIN else steve_key(cluster_id)
        return self.server.sessions(key)

    def close_cluster(self, cluster: Cluster) -> int:
        """Close the main and steve sessions of a cluster (a clean WebSocket close); how many there were."""
        count = 0
        for key in (main_key(cluster.id), steve_key(cluster.id)):
            count += len(self.server.protocols(key))
            self.server.disconnect(key)
        return count

    def close_all(self) -> None:
        """Drop every session (the stand-in is stopping)."""
        self.server.stop()

    async def wait_closed(self, timeout: float = CLOSE_WAIT) -> None:
        """Wait (bounded) until no session is left."""
        for _ in range(int(timeout / 0.01)):
            if not self.server.client_keys():
                return
            await task.deferLater(self._reactor, 0.01, lambda: None)
        log.warn("ranchersim: {n} tunnel sessions still open at stop", n=len(self.server.client_keys()))


__all__ = ["SimTunnels", "main_key", "split_key", "steve_key"]
