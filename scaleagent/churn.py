"""Churn and faults: what breaks Rancher in the field, on purpose, at a set rate or on request.

Actions, each on clusters this process runs (`anchors.md` §2–§3):

* `leave`: the cluster is deleted in Rancher (tunnels closed, Rancher id forgotten) and comes back
  `rejoin_after` seconds later, re-imported under the same name (a new Rancher id, same contents);
* `drop`: both tunnels (or one) are cut without a close handshake, as a network failure; the agent
  reconnects by its reconnect policy;
* `unhealthy`: the cluster's apiserver answers `/readyz` with 500 (etcd failing) for a while;
* `slow`: every answer of the cluster's apiserver is held back by `latency` seconds for a while;
* `pods`: pods created in namespace `default` of connected clusters, deleted `lifetime` seconds later,
  so watches see ADDED and DELETED events.

`ChurnEngine` runs the `[churn]` rates (one timer, fractional credit per second) and the admin API's
one-off actions (`POST /churn/<action>`). Every action is one log line and counted by action
(`scaleagent_churn_actions_total`). The engine is a child service of the agent named "churn"
(`churn_of(agent)`), so it starts and stops with it.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, fields, replace
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.python.failure import Failure

from scaleagent.apiserver.faults import faults_of
from scaleagent.config import ChurnConfig
from scaleagent.redact import logger

log = logger()

NAME = "churn"
TICK = 1.0
ACTIONS = ("leave", "drop", "unhealthy", "slow", "pods")
TUNNEL_KINDS = ("main", "steve")
CHURN_LABEL = "scaleagent.io/churn"
CHURN_NAMESPACE = "default"
MAX_TARGETS = 100_000
LOG_NAMES = 5
RECENT = 50


class ChurnError(ValueError):
    """A churn request that cannot be carried out (bad parameters, nothing to act on)."""


def _names(runners: list[Any]) -> str:
    shown = ", ".join(r.name for r in runners[:LOG_NAMES])
    more = len(runners) - LOG_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


class ChurnEngine(Service):
    """Churn and fault actions for one agent; see the module docstring."""

    def __init__(self, agent: Any, clock: Any, config: ChurnConfig | None = None, rng: Any = None) -> None:
        import random

        self.setName(NAME)
        self.agent = agent
        self.clock = clock
        self.config = config if config is not None else ChurnConfig()
        self.rng = rng if rng is not None else random.Random()
        self.actions: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.away: dict[int, Any] = {}  # index -> DelayedCall of the rejoin
        self._credit: Counter[str] = Counter()
        self._pods: dict[tuple[int, str], Any] = {}  # (cluster index, pod name) -> DelayedCall
        self._swept: set[int] = set()  # clusters cleared of churn pods an earlier run left behind
        self._loop: task.LoopingCall | None = None
        self._next_drop = 0.0
        self._pending: set[defer.Deferred[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        super().startService()
        self._next_drop = self.clock.seconds() + self.config.drop_interval
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(TICK, now=False).addErrback(lambda f: log.failure("churn: loop failed", f))

    def stopService(self) -> Any:  # noqa: N802 (Twisted's name)
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for call in self.away.values():
            if call.active():
                call.cancel()
        self.away.clear()
        for (index, name), call in list(self._pods.items()):
            if call.active():
                call.cancel()
            self._delete_pod(index, name)
        self._pods.clear()
        pending = list(self._pending)
        for d in pending:
            d.cancel()
        return defer.succeed(None)

    def set_rates(self, **changes: Any) -> ChurnConfig:
        """Change `[churn]` values at run time (same names and rules as the config file)."""
        known = {f.name for f in fields(ChurnConfig)}
        clean: dict[str, float] = {}
        for key, value in changes.items():
            if key not in known:
                raise ChurnError(f"unknown churn setting {key!r}; expected one of {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ChurnError(f"{key}: expected a number >= 0")
            if key == "drop_fraction" and value > 1:
                raise ChurnError("drop_fraction: expected a fraction between 0 and 1")
            if not key.endswith(("_per_minute", "_fraction")) and not value > 0:
                raise ChurnError(f"{key}: expected a number > 0")
            clean[key] = float(value)
        old = self.config
        self.config = replace(old, **clean)
        if "drop_interval" in clean:
            self._next_drop = self.clock.seconds() + self.config.drop_interval
        self._record("rates", f"rates changed: {json.dumps(clean, sort_keys=True)}")
        return self.config

    # -- choosing clusters ---------------------------------------------------------------------------

    def _connected(self) -> list[Any]:
        return [r for r in self.agent.runners.values() if r.phase == "connected" and r.cluster is not None]

    def targets(self, names: Iterable[str] | None = None, count: int | None = None,
                fraction: float | None = None, *, connected: bool = True) -> list[Any]:
        """The runners to act on: by name, or `count` / `fraction` of the eligible ones at random."""
        if names is not None:
            picked = []
            for name in names:
                runner = self.agent.runner_by_name(str(name))
                if runner is None:
                    raise ChurnError(f"no cluster {name!r} in this process")
                picked.append(runner)
            return picked
        pool = self._connected() if connected else [
            r for r in self.agent.runners.values() if r.phase in ("connecting", "connected")
        ]
        pool.sort(key=lambda r: r.index)
        if fraction is not None:
            if not 0 <= fraction <= 1:
                raise ChurnError("fraction: expected a number between 0 and 1")
            count = round(len(pool) * fraction)
        if count is None:
            count = 1
        if not 0 <= count <= MAX_TARGETS:
            raise ChurnError(f"count: expected a whole number between 0 and {MAX_TARGETS}")
        return self.rng.sample(pool, min(count, len(pool)))

    # -- the actions ---------------------------------------------------------------------------------

    def _record(self, action: str, text: str, n: int = 1) -> None:
        if action in ACTIONS or action in ("rejoin", "pod-delete"):
            self.actions[action] += n
        self.recent.append({"time": self.clock.seconds(), "action": action, "text": text})
        log.info("churn: {text}", text=text)

    async def leave(self, runners: list[Any], rejoin_after: float | None = None) -> list[str]:
        """Delete clusters in Rancher now; each is re-imported under its name `rejoin_after` s later."""
        delay = self.config.rejoin_after if rejoin_after is None else rejoin_after
        if not delay > 0:
            raise ChurnError("rejoin_after: expected seconds > 0")
        agent = self.agent
        gone = []
        for runner in runners:
            if agent.runners.get(runner.index) is runner:
                del agent.runners[runner.index]
                gone.append(runner)
        if not gone:
            return []
        self._record("leave", f"leave: {len(gone)} clusters deleted in Rancher, back in {delay:g}s: "
                     f"{_names(gone)}", len(gone))
        results = await defer.DeferredList(
            [defer.ensureDeferred(r.remove(delete=True)) for r in gone], consumeErrors=True
        )
        for (ok, _), runner in zip(results, gone):
            if not ok:
                self.failures["leave"] += 1
            if self.running:
                self.away[runner.index] = self.clock.callLater(delay, self._rejoin, runner.index)
        return [r.name for r in gone]

    def _rejoin(self, index: int) -> None:
        self.away.pop(index, None)
        agent = self.agent
        if agent.stopping or index >= agent.count or index in agent.runners:
            return
        self._record("rejoin", f"rejoin: {agent.config.clusters.name(index)} re-imported")
        agent._enqueue([index])

    def drop(self, runners: list[Any], kinds: Iterable[str] = TUNNEL_KINDS) -> list[str]:
        """Cut tunnels without a close handshake (a network failure); the agent reconnects."""
        kinds = tuple(kinds)
        for kind in kinds:
            if kind not in TUNNEL_KINDS:
                raise ChurnError(f"tunnel {kind!r}: expected main or steve")
        cut = []
        for runner in runners:
            did = False
            for kind in kinds:
                protocol = runner.tunnels[kind].protocol
                if protocol is not None:
                    protocol.dropConnection(abort=True)
                    did = True
            if did:
                cut.append(runner)
        if cut:
            text = f"drop: {'+'.join(kinds)} tunnels cut for {len(cut)} clusters: {_names(cut)}"
            self._record("drop", text, len(cut))
        return [r.name for r in cut]

    def unhealthy(self, runners: list[Any], seconds: float | None = None) -> list[str]:
        """/readyz answers 500 for `seconds` on each cluster's apiserver."""
        seconds = self.config.unhealthy_for if seconds is None else seconds
        if not seconds > 0:
            raise ChurnError("seconds: expected a number > 0")
        hit = [r for r in runners if r.cluster is not None]
        for runner in hit:
            faults_of(runner.cluster.api, create=True).make_unready(seconds)
        if hit:
            self._record("unhealthy", f"unhealthy: /readyz failing for {seconds:g}s on {len(hit)} clusters: "
                         f"{_names(hit)}", len(hit))
        return [r.name for r in hit]

    def slow(
        self, runners: list[Any], seconds: float | None = None, latency: float | None = None
    ) -> list[str]:
        """Every apiserver answer of each cluster `latency` seconds late, for `seconds`."""
        seconds = self.config.slow_for if seconds is None else seconds
        latency = self.config.slow_latency if latency is None else latency
        if not seconds > 0 or not latency > 0:
            raise ChurnError("seconds and latency: expected numbers > 0")
        hit = [r for r in runners if r.cluster is not None]
        for runner in hit:
            faults_of(runner.cluster.api, create=True).make_slow(seconds, latency)
        if hit:
            self._record("slow", f"slow: +{latency:g}s per request for {seconds:g}s on {len(hit)} clusters: "
                         f"{_names(hit)}", len(hit))
        return [r.name for r in hit]

    def pods(self, runners: list[Any], per_cluster: int = 1, lifetime: float | None = None) -> list[str]:
        """Create `per_cluster` pods in each cluster, each deleted `lifetime` seconds later."""
        lifetime = self.config.pod_lifetime if lifetime is None else lifetime
        if not lifetime > 0:
            raise ChurnError("lifetime: expected seconds > 0")
        if not 1 <= per_cluster <= 1000:
            raise ChurnError("per_cluster: expected a whole number between 1 and 1000")
        created: list[str] = []
        for runner in runners:
            if runner.cluster is None:
                continue
            for _ in range(per_cluster):
                name = self._create_pod(runner)
                if name is None:
                    break
                created.append(f"{runner.name}/{name}")
                self._pods[(runner.index, name)] = self.clock.callLater(
                    lifetime, self._expire_pod, runner.index, name
                )
        if created:
            self._record("pods", f"pods: {len(created)} created, deleted in {lifetime:g}s: "
                         f"{', '.join(created[:LOG_NAMES])}{' ...' if len(created) > LOG_NAMES else ''}",
                         len(created))
        return created

    def _sweep(self, runner: Any) -> None:
        """Delete churn pods a stopped run saved into this cluster's state (their timers died with it)."""
        self._swept.add(runner.index)
        store = runner.cluster.store
        rt = store.kinds.by_resource("", "v1", "pods")
        listed = store.list(rt, namespace=CHURN_NAMESPACE, label_selector=f"{CHURN_LABEL}=true")
        for obj in listed.objects():
            name = obj["metadata"]["name"]
            if (runner.index, name) not in self._pods:
                self._delete_pod(runner.index, name)

    def _create_pod(self, runner: Any) -> str | None:
        if runner.index not in self._swept:
            self._sweep(runner)
        store = runner.cluster.store
        rt = store.kinds.by_resource("", "v1", "pods")
        try:
            obj = store.create(rt, churn_pod(runner.name), namespace=CHURN_NAMESPACE)
        except Exception as error:  # a Status from the store: count, never crash the loop
            self.failures["pods"] += 1
            log.warn("churn: creating a pod in {name} failed: {error}", name=runner.name, error=str(error))
            return None
        return obj["metadata"]["name"]

    def _expire_pod(self, index: int, name: str) -> None:
        self._pods.pop((index, name), None)
        if self._delete_pod(index, name):
            self.actions["pod-delete"] += 1
            log.debug("churn: pod {name} deleted", name=name)

    def _delete_pod(self, index: int, name: str) -> bool:
        runner = self.agent.runners.get(index)
        cluster = getattr(runner, "cluster", None)
        if cluster is None or not getattr(cluster, "materialized", True):
            return False
        store = cluster.store
        try:
            store.delete(store.kinds.by_resource("", "v1", "pods"), CHURN_NAMESPACE, name)
        except Exception:
            return False  # already gone (deleted by someone else)
        return True

    # -- steady rates --------------------------------------------------------------------------------

    def _due(self, key: str, per_minute: float) -> int:
        if per_minute <= 0:
            self._credit[key] = 0
            return 0
        credit = self._credit[key] + per_minute * TICK / 60.0
        due = int(credit)
        self._credit[key] = credit - due
        return due

    def _tick(self) -> None:
        if not self.running or self.agent.stopping:
            return
        cfg = self.config
        try:
            n = self._due("leave", cfg.leave_per_minute)
            if n:
                self._track(defer.ensureDeferred(self.leave(self.targets(count=n, connected=False))))
            n = self._due("unhealthy", cfg.unhealthy_per_minute)
            if n:
                self.unhealthy(self.targets(count=n))
            n = self._due("slow", cfg.slow_per_minute)
            if n:
                self.slow(self.targets(count=n))
            n = self._due("pods", cfg.pods_per_minute)
            if n:
                self.pods(self.targets(count=n))
            now = self.clock.seconds()
            if cfg.drop_fraction > 0 and now >= self._next_drop:
                self._next_drop = now + cfg.drop_interval
                self.drop(self.targets(fraction=cfg.drop_fraction))
        except Exception:
            log.failure("churn: a scheduled action failed")

    def _track(self, d: defer.Deferred[Any]) -> None:
        self._pending.add(d)

        def done(result: Any) -> None:
            self._pending.discard(d)
            if isinstance(result, Failure) and not result.check(defer.CancelledError):
                log.failure("churn: action failed", result)

        d.addBoth(done)

    # -- views ---------------------------------------------------------------------------------------

    def fault_counts(self) -> dict[str, int]:
        unready = slow = 0
        for runner in self.agent.runners.values():
            cluster = runner.cluster
            if cluster is None or not getattr(cluster, "materialized", True):
                continue
            faults = faults_of(cluster.api)
            if faults is not None:
                unready += faults.unready
                slow += faults.latency > 0
        return {"away": len(self.away), "unhealthy": unready, "slow": slow, "churn_pods": len(self._pods)}

    def to_json(self) -> dict[str, Any]:
        return {
            "rates": asdict(self.config),
            "actions": {a: self.actions.get(a, 0) for a in (*ACTIONS, "rejoin", "pod-delete")},
            "failures": dict(self.failures),
            "now": self.fault_counts(),
            "recent": list(self.recent)[-10:],
        }

    async def request(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """One admin-API action: `{"clusters": [names]}` or `{"count": n}` / `{"fraction": f}`, plus
        `seconds`, `latency` (slow), `rejoin_after` (leave), `tunnels` (drop), `per_cluster`,
        `lifetime` (pods)."""
        if action not in ACTIONS:
            raise ChurnError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        allowed = {"clusters", "count", "fraction", "seconds", "latency", "rejoin_after", "tunnels",
                   "per_cluster", "lifetime"}
        unknown = set(body) - allowed
        if unknown:
            raise ChurnError(f"unknown field(s) {', '.join(sorted(unknown))}")
        names = body.get("clusters")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise ChurnError("clusters: expected a list of cluster names")
        count = _opt_int(body, "count")
        fraction = _opt_number(body, "fraction")
        runners = self.targets(names, count, fraction, connected=action != "leave")
        if action == "leave":
            done = await self.leave(runners, _opt_number(body, "rejoin_after"))
        elif action == "drop":
            tunnels = body.get("tunnels", "both")
            kinds = TUNNEL_KINDS if tunnels == "both" else (tunnels,)
            done = self.drop(runners, kinds)
        elif action == "unhealthy":
            done = self.unhealthy(runners, _opt_number(body, "seconds"))
        elif action == "slow":
            done = self.slow(runners, _opt_number(body, "seconds"), _opt_number(body, "latency"))
        else:
            done = self.pods(runners, _opt_int(body, "per_cluster") or 1, _opt_number(body, "lifetime"))
        return {"action": action, "clusters" if action != "pods" else "pods": done}


def _opt_number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChurnError(f"{key}: expected a number")
    return float(value)


def _opt_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChurnError(f"{key}: expected a whole number")
    return value


def churn_pod(cluster_name: str) -> dict[str, Any]:
    """A running pod on the cluster's first node (template naming `<cluster>-node-0`)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "churn-",
            "namespace": CHURN_NAMESPACE,
            "labels": {"app": "churn", CHURN_LABEL: "true"},
        },
        "spec": {
            "nodeName": f"{cluster_name}-node-0",
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def churn_of(agent: Any, clock: Any = None, config: ChurnConfig | None = None) -> ChurnEngine:
    """The agent's churn engine (child service "churn"), made and attached on first use."""
    try:
        return agent.getServiceNamed(NAME)
    except KeyError:
        pass
    engine = ChurnEngine(agent, clock if clock is not None else agent.clock,
                         config if config is not None else agent.config.churn)
    engine.setServiceParent(agent)
    return engine


class ChurnCollector:
    """Prometheus: actions by kind, and clusters currently away / unhealthy / slow."""

    def __init__(self, agent: Any) -> None:
        self._agent = agent

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        try:
            engine = self._agent.getServiceNamed(NAME)
        except (KeyError, AttributeError):
            return
        actions = CounterMetricFamily(
            "scaleagent_churn_actions", "Churn and fault actions carried out, by action.", labels=["action"]
        )
        for action in (*ACTIONS, "rejoin", "pod-delete"):
            actions.add_metric([action], engine.actions.get(action, 0))
        yield actions
        now = GaugeMetricFamily(
            "scaleagent_churn_clusters", "Clusters currently away, unhealthy or slow.", labels=["fault"]
        )
        for key, value in engine.fault_counts().items():
            now.add_metric([key], value)
        yield now


__all__ = ["ChurnCollector", "ChurnEngine", "ChurnError", "churn_of", "churn_pod"]
