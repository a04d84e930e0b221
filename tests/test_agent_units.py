"""AgentService's pure parts: shard ownership, open-files limit, error aggregation, the prepared endpoint,
state records and the progress line."""

from __future__ import annotations

import pytest
from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher

from scaleagent.agent import (
    AgentService,
    ClusterRecord,
    ErrorTally,
    PreparedEndpoint,
    clusters_allowed,
    raise_open_files_limit,
)
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, Shard, StateConfig
from scaleagent.redact import Secret


def agent(tmp_path, **clusters) -> AgentService:
    config = AgentConfig(
        rancher=RancherConfig(url="https://rancher.test", token=Secret("token-abcde:xyz")),
        clusters=ClustersConfig(**clusters),
        state=StateConfig(dir=tmp_path / "state"),
    )
    return AgentService(config, task.Clock(), raise_limit=False, cluster_set_factory=lambda info: None)


def test_names_and_shard_ownership(tmp_path):
    a = agent(tmp_path, count=10, name_prefix="x-", shard=Shard(1, 3))
    assert a.owned() == [1, 4, 7]
    assert a.owned(14) == [1, 4, 7, 10, 13]
    assert a.config.clusters.name(7) == "x-00007"
    assert a.runner_by_name("x-00007") is None  # not running yet
    assert a.runner_by_name("y-00007") is None and a.runner_by_name("x-abc") is None


def test_state_records_round_trip_and_survive_garbage(tmp_path):
    a = agent(tmp_path)
    record = ClusterRecord("scale-00003", 3, "https://rancher.test", "c-abcde", True)
    a.save_record(record)
    assert a.load_record(3, "scale-00003") == record
    (tmp_path / "state" / "rancher" / "scale-00004.json").write_text("{not json")
    assert a.load_record(4, "scale-00004") == ClusterRecord("scale-00004", 4)
    a.forget_record("scale-00003")
    assert a.load_record(3, "scale-00003").rancher_id == ""


class FakeResource:
    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft, hard, refuse=False):
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


def test_open_files_limit_is_raised_to_hard():
    fake = FakeResource(1024, 524288)
    assert raise_open_files_limit(fake) == (1024, 524288, 524288)
    assert fake.limits == (524288, 524288)
    assert raise_open_files_limit(FakeResource(1024, 1024)) == (1024, 1024, 1024)
    assert raise_open_files_limit(FakeResource(1024, 4096, refuse=True)) == (1024, 1024, 4096)
    assert clusters_allowed(1024) == 480 and clusters_allowed(10) == 0


def test_errors_are_aggregated_per_kind():
    tally = ErrorTally()
    assert tally.drain() == ""
    for i in range(1000):
        tally.note("auth (HTTP 401)", f"cluster {i}: refused")
    tally.note("timeout", "slow")
    line = tally.drain()
    assert line.startswith("1000× auth (HTTP 401): cluster 0: refused; 1× timeout: slow")
    assert tally.drain() == "" and tally.total == 1001


class Endpoint:
    def __init__(self):
        self.connected = []

    def connect(self, factory):
        self.connected.append(factory)
        return defer.succeed("protocol")


def test_prepared_endpoint_runs_prepare_first_and_fails_with_it():
    inner = Endpoint()
    gate = defer.Deferred()
    endpoint = PreparedEndpoint(inner, lambda: gate)
    d = endpoint.connect("f")
    assert not d.called and inner.connected == []
    gate.callback(None)
    assert d.result == "protocol" and inner.connected == ["f"]

    failing = PreparedEndpoint(inner, lambda: defer.fail(RuntimeError("no token")))
    with pytest.raises(RuntimeError):
        _result(failing.connect("g"))
    assert inner.connected == ["f"]
    assert PreparedEndpoint(inner, lambda: None).connect("h").result == "protocol"


def _result(d):
    box = []
    d.addBoth(box.append)
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def test_progress_line_while_ramping(tmp_path):
    a = agent(tmp_path, count=4)
    lines = []
    observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        a.errors.note("auth (HTTP 401)", "Rancher: the API token was refused")
        a._progress()
        a._progress()  # nothing changed, no errors: no second line within a minute
    finally:
        globalLogPublisher.removeObserver(observer)
    progress = [line for line in lines if line.startswith("progress:")]
    assert len(progress) == 1
    assert "0/4 registered" in progress[0] and "errors: 1× auth (HTTP 401)" in progress[0]
