"""Rancher's rule for an imported cluster being Active, from what the driver observed.

rancher-protocol.md §5.10: the summary is `active` only with `Ready=True` and none of the
"transitioning" conditions Unknown or False; in practice Connected (steve `/ping` answered 200),
Provisioned (a main tunnel with params), Ready (the health check passed), AgentDeployed (the agent
deployment check and its apply succeeded). Rancher's stats also need at least one node with a role
label ("node role cannot be determined" otherwise), and a version with `k3s`/`rke2` in it would turn
the driver into k3s/rke2 instead of `imported`, so the version must be plain. Pure logic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROLE_LABELS = (
    "node-role.kubernetes.io/etcd",
    "node-role.kubernetes.io/controlplane",
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/worker",
)
_PLAIN_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


def plain_version(version: str) -> bool:
    """True for `v1.32.4`; False for `v1.32.4+k3s1`, `v1.32.4+rke2r1` and anything unparsable."""
    return bool(_PLAIN_VERSION.match(version)) and "k3s" not in version and "rke2" not in version


def has_role(node: Mapping[str, Any]) -> bool:
    """Whether a Node carries one of the role labels Rancher reads (value "true", or "" as kubeadm)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return any(labels.get(label) in ("true", "") for label in ROLE_LABELS)


def count_role_nodes(nodes: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for node in nodes if has_role(node))


@dataclass
class Observed:
    """What the driver has seen of one cluster; `None` = not checked yet."""

    provisioned: bool = False
    connected: bool | None = None  # the last steve /ping answered 200
    healthy: bool | None = None  # the last health check passed
    agent_deployed: bool = False
    role_nodes: int | None = None
    version: str = ""
    informers_synced: bool = True  # False while an informer of the profile has not synced yet


def not_active_because(observed: Observed) -> list[str]:
    """Why the cluster is not Active (empty: it is)."""
    reasons = []
    if not observed.provisioned:
        reasons.append("Provisioned is not True (no main tunnel with params)")
    if not observed.connected:
        reasons.append("Connected is not True (steve /ping has not answered 200)")
    if not observed.healthy:
        reasons.append("Ready is not True (health check not passed)")
    if not observed.agent_deployed:
        reasons.append("AgentDeployed is not True")
    if not observed.role_nodes:
        reasons.append("node role cannot be determined (no node with a role label)")
    if not observed.version:
        reasons.append("version unknown")
    elif not plain_version(observed.version):
        reasons.append(f"version {observed.version!r} is not plain (k3s/rke2 driver)")
    if not observed.informers_synced:
        reasons.append("informers not synced")
    return reasons


def is_active(observed: Observed) -> bool:
    return not not_active_because(observed)


__all__ = [
    "ROLE_LABELS",
    "Observed",
    "count_role_nodes",
    "has_role",
    "is_active",
    "not_active_because",
    "plain_version",
]
