"""Traffic profiles of the stand-in's driver: which of Rancher's periodic traffic each cluster gets.

Every profile first does Rancher's one-time setup for a new cluster (kube-system, discovery, version,
nodes, the impersonation account, the agent deployment check), so clusters turn Active under any of
them. Then:

* `idle`: only the 15-second health check (`/readyz`) and steve `/ping`;
* `rancher-2.13`: Rancher's informer set with list-then-watch (client-go < 0.35), health through
  `GET /api/v1/namespaces/kube-system` as Rancher ≤ 2.13 does;
* `rancher-2.14`: the same informers with watch-list (`sendInitialEvents=true`), health `/readyz`.

`ui_browsing` adds periodic LISTs of pods and events through the main tunnel, as Rancher's k8s proxy
sends them for a browser (impersonation headers, the impersonator account's token).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

IDLE = "idle"
RANCHER_213 = "rancher-2.13"
RANCHER_214 = "rancher-2.14"
NAMES = (IDLE, RANCHER_213, RANCHER_214)
DEFAULT = RANCHER_214

READYZ = "readyz"
KUBE_SYSTEM = "kube-system"


@dataclass(frozen=True)
class Informer:
    """One of Rancher's informers on a downstream cluster: a list URL and its selectors."""

    name: str
    path: str
    field_selector: str = ""


# Rancher's informers on a plain imported cluster (rancher-protocol.md §5.4).
RANCHER_INFORMERS = (
    Informer("namespaces", "/api/v1/namespaces"),
    Informer("nodes", "/api/v1/nodes"),
    Informer("secrets", "/api/v1/secrets", "metadata.namespace=cattle-system,metadata.name=stv-aggregation"),
    Informer("serviceaccounts", "/api/v1/namespaces/cattle-impersonation-system/serviceaccounts"),
    Informer("resourcequotas", "/api/v1/resourcequotas"),
    Informer("limitranges", "/api/v1/limitranges"),
    Informer("clusterroles", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
    Informer("clusterrolebindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    Informer("roles", "/apis/rbac.authorization.k8s.io/v1/roles"),
    Informer("rolebindings", "/apis/rbac.authorization.k8s.io/v1/rolebindings"),
    Informer("apiservices", "/apis/apiregistration.k8s.io/v1/apiservices"),
)


@dataclass(frozen=True)
class Profile:
    """What the driver sends to each cluster after the one-time setup."""

    name: str
    informers: tuple[Informer, ...] = ()
    watch_list: bool = False
    health: str = READYZ
    ui_browsing: bool = False
    health_interval: float = 15.0
    ping_interval: float = 15.0
    ui_interval: float = 30.0
    watch_timeout: tuple[float, float] = (300.0, 600.0)  # client-go: 5 min × (1 + rand)

    def with_options(self, **changes: object) -> Profile:
        return replace(self, **changes)  # type: ignore[arg-type]


PROFILES = {
    IDLE: Profile(IDLE),
    RANCHER_213: Profile(RANCHER_213, RANCHER_INFORMERS, watch_list=False, health=KUBE_SYSTEM),
    RANCHER_214: Profile(RANCHER_214, RANCHER_INFORMERS, watch_list=True, health=READYZ),
}


def get_profile(name: str, *, ui_browsing: bool = False) -> Profile:
    """The named profile; ValueError naming the choices for anything else."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown traffic profile {name!r}; expected one of {', '.join(NAMES)}") from None
    return profile.with_options(ui_browsing=True) if ui_browsing else profile


__all__ = [
    "DEFAULT",
    "IDLE",
    "NAMES",
    "PROFILES",
    "RANCHER_213",
    "RANCHER_214",
    "Informer",
    "Profile",
    "get_profile",
]
