"""Rancher's tunnel authorisation for /v3/connect and /v3/connect/register, as a pure function.

Rancher's tunnel server asks a chain of authorizers and takes the first that accepts; if none does it
answers 400 with the first error, or 401 `failed authentication` when no authorizer had an error
(`pkg/tunnelserver/chain.go`, remotedialer `server.go`). The two members that matter to an agent, in
chain order:

1. the steve proxy authorizer: `Authorization: Bearer stv-cluster-<registration token>` → client key
   `stv-cluster-<cluster id>` (the steve tunnel); an unknown token is "not mine", not an error;
2. the MCM authorizer: `X-API-Tunnel-Token: <registration token>` → client key `<cluster id>` (the main
   tunnel), after decoding and checking `X-API-Tunnel-Params`; an unknown token is the error
   `cluster not found`, bad params are errors too. The params are stored as Rancher stores them.

Headers are looked up case-insensitively (pass a mapping with lower-case keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scaleagent.sim.params import ParamsError, decode_params
from scaleagent.sim.store import MAIN, STEVE, Cluster, ClusterParams, SimStore

STV_PREFIX = "stv-cluster-"
CLUSTER_NOT_FOUND = "cluster not found"
FAILED_AUTHENTICATION = "failed authentication"
NODE_NOT_SIMULATED = "node agents are not simulated by the stand-in"


@dataclass(frozen=True)
class Accepted:
    """The tunnel may open: its remotedialer client key, cluster and kind (MAIN or STEVE)."""

    client_key: str
    cluster: Cluster
    kind: str
    params_changed: bool = False


@dataclass(frozen=True)
class Refused:
    """The upgrade is refused with this status and plain-text body (Rancher's texts)."""

    status: int
    body: str


def _steve(store: SimStore, headers: Mapping[str, str]) -> Accepted | None:
    auth = headers.get("authorization", "")
    # Rancher: strings.TrimPrefix(header, "Bearer ") — case-sensitive, one space.
    if auth.startswith("Bearer "):
        auth = auth[len("Bearer ") :]
    if not auth.startswith(STV_PREFIX):
        return None
    cluster = store.cluster_for_token(auth[len(STV_PREFIX) :])
    if cluster is None:
        return None
    return Accepted(STV_PREFIX + cluster.id, cluster, STEVE)


def _main(store: SimStore, headers: Mapping[str, str]) -> Accepted | str | None:
    token = headers.get("x-api-tunnel-token", "")
    if not token:
        return None
    cluster = store.cluster_for_token(token)
    if cluster is None:
        return CLUSTER_NOT_FOUND
    try:
        data = decode_params(headers.get("x-api-tunnel-params", ""))
    except ParamsError as error:
        return str(error)
    if data.node is not None:
        # Rancher would register a custom-cluster node here; imported clusters have no node agents.
        return NODE_NOT_SIMULATED
    assert data.cluster is not None
    params = ClusterParams(data.cluster["address"], data.cluster["token"], data.cluster["caCert"])
    changed = store.record_params(cluster, params)
    return Accepted(cluster.id, cluster, MAIN, params_changed=changed)


def authorize(store: SimStore, headers: Mapping[str, str]) -> Accepted | Refused:
    """Decide one upgrade request the way Rancher's authorizer chain does."""
    first_error = ""
    steve = _steve(store, headers)
    if steve is not None:
        return steve
    main = _main(store, headers)
    if isinstance(main, Accepted):
        return main
    if isinstance(main, str):
        first_error = main
    if first_error:
        return Refused(400, first_error)
    return Refused(401, FAILED_AUTHENTICATION)
