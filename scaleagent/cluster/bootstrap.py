"""The objects every simulated cluster starts with (for now: the default namespaces).

They form one shared `Seed`, so thousands of clusters hold a single copy.  The simulated-cluster work
(templates, nodes, system workloads) extends this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scaleagent.apiserver.kinds import Registry
from scaleagent.apiserver.store import Seed, Store

DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")

_DEFAULT_SEED: Seed | None = None


def namespace(name: str) -> dict[str, Any]:
    """A Namespace object as a fresh cluster has it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def default_objects() -> list[dict[str, Any]]:
    return [namespace(name) for name in DEFAULT_NAMESPACES]


def seed(extra: Iterable[dict[str, Any]] = (), *, now: float | None = None) -> Seed:
    """A seed of the default objects plus `extra`; without extras, one shared seed per process."""
    global _DEFAULT_SEED
    extra = list(extra)
    if not extra and now is None:
        if _DEFAULT_SEED is None:
            _DEFAULT_SEED = Seed.from_objects(default_objects(), cache_json=True)
        return _DEFAULT_SEED
    return Seed.from_objects([*default_objects(), *extra], now=now)


def new_store(base: Seed | None = None, *, kinds: Registry | None = None, resource_version: int = 0) -> Store:
    """A cluster store over `base` (the default seed when None)."""
    return Store(base or seed(), kinds=kinds, resource_version=resource_version)
