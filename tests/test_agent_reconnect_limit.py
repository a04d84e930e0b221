"""`reconnect_per_second` bounds every tunnel attempt the agent makes (jittered mode), on task.Clock.

The storm of issue 11: Rancher restarts and forgets every cluster, every tunnel drops; reconnects are
refused (401), the token goes stale, the next attempt re-reads it and finds the cluster gone, so it is
re-imported (a few slow API calls), then the tunnels connect. Attempts are counted both by the agent
(`reconnects`) and by the in-memory endpoint (what Rancher would see), per 1 s window.
"""

from __future__ import annotations

import random
from collections import Counter

from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from scaleagent.agent import MAIN, STEVE, AgentService
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.rancher.client import ClusterInfo, RancherError, ServerInfo
from scaleagent.redact import Secret
from scaleagent.remotedialer.websocket import TunnelEnded
from scaleagent.retry import REAL_AGENT

STEP = 1 / 16  # exact in binary: step times add up without rounding


class FakeRancher:
    """Rancher's management API as the agent uses it; every call answers after a random latency."""

    url = "https://rancher.test"

    def __init__(self, clock, rng, latency=(0.05, 1.5)):
        self.clock = clock
        self.rng = rng
        self.latency = latency
        self.clusters: dict[str, str] = {}  # id -> name
        self.tokens: dict[str, str] = {}  # token -> id
        self.serial = 0
        self.imports = 0
        self.down_until = 0.0
        self.failed = 0

    async def _answer(self, value):
        await task.deferLater(self.clock, self.rng.uniform(*self.latency), lambda: None)
        if self.clock.seconds() < self.down_until:
            self.failed += 1
            raise RancherError("unreachable", "Rancher is restarting", 503)
        return value

    async def check_server(self):
        return ServerInfo(version="v2.14.0", cacerts="", checksum="")

    async def get_cluster(self, cluster_id):
        name = self.clusters.get(cluster_id)
        return await self._answer(None if name is None else ClusterInfo(cluster_id, name, "active"))

    async def import_cluster(self, name):
        await self._answer(None)
        self.serial += 1
        self.imports += 1
        cluster_id = f"c-{self.serial:05d}"
        self.clusters[cluster_id] = name
        self.tokens[f"token-{cluster_id}"] = cluster_id
        return ClusterInfo(cluster_id, name, "pending"), False

    async def registration_token(self, cluster_id, *, attempts=30, **_):
        return await self._answer(Secret(f"token-{cluster_id}"))

    async def list_clusters(self, prefix=""):
        return [ClusterInfo(i, n, "active") for i, n in self.clusters.items()]

    async def delete_cluster(self, cluster_id):
        return self.clusters.pop(cluster_id, None) is not None

    async def close(self):
        return None

    def restart(self, down_for=0.0):
        """Forget every cluster and token, as the stand-in does when it restarts; its API answers
        503 for `down_for` seconds."""
        self.clusters.clear()
        self.tokens.clear()
        self.down_until = self.clock.seconds() + down_for

    def accepts(self, factory) -> bool:
        headers = factory.headers
        steve = headers.get("Authorization", "").removeprefix("Bearer stv-cluster-")
        return (headers.get("X-API-Tunnel-Token") or steve) in self.tokens


class FakeCluster:
    def __init__(self, index, name):
        self.index = index
        self.name = name

    def params_header(self):
        return "e30="

    def main_resolver(self, proto, address):
        return None

    def steve_resolver(self, proto, address):
        return None


class FakeClusterSet:
    def cluster(self, index, name, *, rancher_token=""):
        return FakeCluster(index, name)

    def start(self):
        pass

    def stop(self):
        pass


class FakeTunnel(Protocol):
    """Stands in for the WebSocket protocol: opens or is refused (401) one reactor turn after TCP."""

    ended: TunnelEnded | None = None

    def connectionMade(self):
        self.world.clock.callLater(0, self._handshake)

    def _handshake(self):
        if self.ended is not None:
            return
        if self.world.rancher.accepts(self.factory):
            self.factory.on_open(self)
            self.world.open[self] = None
        else:
            self.world.refused += 1
            self._end(TunnelEnded(opened=False, status=401, reason="refused", code=None, was_clean=False))

    def _end(self, ended):
        if self.ended is None:
            self.ended = ended
            self.proxy.connectionLost(Failure(ConnectionDone()))

    def connectionLost(self, reason):
        self.world.open.pop(self, None)
        self.factory.on_close(self, self.ended)

    def disconnect(self, reason=""):
        self._end(TunnelEnded(opened=True, status=None, reason=reason, code=1000, was_clean=True))

    def drop(self):
        self._end(TunnelEnded(opened=True, status=None, reason="dropped", code=1006, was_clean=False))


class Transport(StringTransport):
    def loseConnection(self):
        if not self.disconnecting:
            self.disconnecting = True
            self.tunnel.world.clock.callLater(0, self.tunnel.disconnect, "closed")


class World:
    """The in-memory network: every connect lands here; records when each one was made."""

    def __init__(self, clock, rancher):
        self.clock = clock
        self.rancher = rancher
        self.open: dict[FakeTunnel, None] = {}  # ordered: the test runs the same every time
        self.connects: list[float] = []
        self.refused = 0

    def endpoint(self, factory):
        factory.protocol = FakeTunnel
        return Endpoint(self)


class Endpoint:
    def __init__(self, world):
        self.world = world

    def connect(self, factory):
        self.world.connects.append(self.world.clock.seconds())
        proxy = factory.buildProtocol(None)
        tunnel = proxy._protocol
        tunnel.world, tunnel.proxy = self.world, proxy
        transport = Transport()
        transport.tunnel = tunnel
        proxy.makeConnection(transport)
        return defer.succeed(proxy)


def make_agent(tmp_path, count, limit, mode="jittered", seed=11):
    clock = task.Clock()
    rng = random.Random(seed)
    rancher = FakeRancher(clock, rng)
    world = World(clock, rancher)
    config = AgentConfig(
        rancher=RancherConfig(url=rancher.url, token=Secret("token-abcde:xyz")),
        clusters=ClustersConfig(
            count=count, name_prefix="s-", ramp_per_second=500.0, reconnect=mode, reconnect_per_second=limit
        ),
        state=StateConfig(dir=tmp_path / "state"),
    )
    agent = AgentService(
        config, clock, rancher=rancher, cluster_set_factory=lambda info: FakeClusterSet(), rng=rng,
        raise_limit=False, tunnel_endpoint=world.endpoint,
    )
    return clock, rancher, world, agent


def fully_connected(agent, count):
    return agent.counts()["fully_connected"] == count


def run_until(clock, done, seconds, samples=None, agent=None, step=STEP):
    """Advance in exact `step` increments until `done()`; sample (time, reconnects) after each step."""
    for _ in range(int(seconds / step)):
        if done():
            return
        clock.advance(step)
        if samples is not None:
            samples.append((clock.seconds(), agent.reconnects))
    assert done(), f"not done within {seconds}s"


def max_per_window(times, window_steps=16):
    """The most events in any `window_steps` consecutive steps (a sliding 1 s window)."""
    per_step = Counter(round(t / STEP) for t in times)
    if not per_step:
        return 0
    first, last = min(per_step), max(per_step)
    return max(
        sum(per_step.get(s, 0) for s in range(end - window_steps + 1, end + 1))
        for end in range(first, last + 1)
    )


def max_per_second(times):
    """The most events in any window (t - 1, t], for event times that are not on a step grid."""
    times = sorted(times)
    best = first = 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def storm(clock, rancher, world, agent, count, seconds, step=STEP, down_for=0.0):
    rancher.restart(down_for)
    start = clock.seconds()
    for tunnel in list(world.open):
        tunnel.drop()
    samples = [(start, agent.reconnects)]
    run_until(clock, lambda: fully_connected(agent, count) and agent.reimported == count, seconds,
              samples, agent, step)
    return start, samples


def test_a_storm_of_re_imports_never_exceeds_the_limit(tmp_path):
    count, limit = 300, 20
    clock, rancher, world, agent = make_agent(tmp_path, count, limit)
    agent.startService()
    try:
        run_until(clock, lambda: fully_connected(agent, count), 60)
        assert agent.reconnects == 0 and len(world.connects) == 2 * count  # first attempts: the ramp
        clock.advance(60)  # long connected: every backoff starts afresh

        before = len(world.connects)
        start, samples = storm(clock, rancher, world, agent, count, 600, down_for=5.0)

        # The agent's counter, read after every step, in every sliding 1 s window.
        increments = []
        for (_, a), (t, b) in zip(samples, samples[1:]):
            increments.extend([t] * (b - a))
        assert max_per_window(increments) <= limit
        # What Rancher saw: every connect after the storm began, same bound, same count.
        connects = world.connects[before:]
        assert len(connects) == agent.reconnects == len(increments)
        assert max_per_window(connects) <= limit
        # Each cluster was refused, re-imported once, and both tunnels are up with the new token.
        assert agent.reimported == count and rancher.imports == 2 * count and world.refused >= count
        assert rancher.failed > 0 and agent.errors.total >= world.refused + rancher.failed
        assert all(r.tunnels[MAIN].connected and r.tunnels[STEVE].connected for r in agent.runners.values())
        # The limit was the bottleneck, and it was used: the storm ran near the limit, not far below.
        elapsed = clock.seconds() - start
        assert len(connects) / elapsed > limit / 3
        assert agent.limiter.admitted >= len(connects)
    finally:
        stopped = agent.stopService()
        run_until(clock, lambda: stopped.called, 30)


def test_timers_that_run_late_together_still_keep_the_limit(tmp_path):
    """A reactor busy for 2.5 s per turn runs every timer due meanwhile in one go: the slots they had
    are gone, so the limiter admits what the last second has room for and gives the rest new slots."""
    count, limit = 60, 10
    clock, rancher, world, agent = make_agent(tmp_path, count, limit, seed=5)
    agent.startService()
    try:
        run_until(clock, lambda: fully_connected(agent, count), 60)
        clock.advance(60)
        before = len(world.connects)
        storm(clock, rancher, world, agent, count, 900, step=2.5)
        connects = world.connects[before:]
        assert len(connects) == agent.reconnects and agent.reimported == count
        assert max_per_window(connects) <= limit
        assert agent.limiter.refused > 0  # late timers were held back, not let through together
    finally:
        stopped = agent.stopService()
        run_until(clock, lambda: stopped.called, 30)


def test_timers_a_few_milliseconds_late_keep_the_limit_and_the_pace(tmp_path):
    """A real reactor runs each timer a little late, by varying amounts: an attempt whose slot comes
    1/rate after the last one, but ran later than it, finds the last second full. It waits the few
    milliseconds for room instead of losing its turn, so the storm still runs at the limit."""
    count, limit = 200, 50
    clock, rancher, world, agent = make_agent(tmp_path, count, limit, seed=3)
    agent.startService()
    try:
        run_until(clock, lambda: fully_connected(agent, count), 60)
        clock.advance(60)
        before = len(world.connects)
        rancher.restart()
        for tunnel in list(world.open):
            tunnel.drop()
        start, lateness = clock.seconds(), random.Random(1)
        for _ in range(20000):
            if fully_connected(agent, count) and agent.reimported == count:
                break
            clock.advance(lateness.uniform(0.001, 0.009))
        assert fully_connected(agent, count) and agent.reimported == count
        connects = world.connects[before:]
        assert max_per_second(connects) <= limit and agent.limiter.refused > 0
        # 3 connects per cluster plus a refresh (re-import) slot for each: 800 turns at 50/s.
        assert clock.seconds() - start < 1.25 * (4 * count) / limit
    finally:
        stopped = agent.stopService()
        run_until(clock, lambda: stopped.called, 30)


def test_real_agent_mode_stays_uncapped(tmp_path):
    """The real agent's fixed 10 s sleeps, no limiter: the synchronized storm it reproduces on purpose."""
    count = 40
    clock, rancher, world, agent = make_agent(tmp_path, count, 5, mode=REAL_AGENT)
    agent.startService()
    try:
        run_until(clock, lambda: fully_connected(agent, count), 60)
        before = len(world.connects)
        for tunnel in list(world.open):
            tunnel.drop()
        run_until(clock, lambda: len(world.connects) - before >= 2 * count, 30)
        assert max_per_window(world.connects[before:]) == 2 * count  # all in the same instant
        assert agent.attempt_limiter is None
    finally:
        stopped = agent.stopService()
        run_until(clock, lambda: stopped.called, 30)
