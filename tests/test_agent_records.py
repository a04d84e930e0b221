"""The agent's per-cluster records are written off the reactor thread (`scaleagent.records`): newest
content wins, writes and removals of one file never reorder, errors are counted, a stop flushes."""

from __future__ import annotations

import json
import threading

import pytest_twisted
from twisted.internet import defer, task

from scaleagent.agent import AgentService, ClusterRecord
from scaleagent.config import AgentConfig, ClustersConfig, RancherConfig, StateConfig
from scaleagent.records import RecordWriter, reactor_threads, run_inline
from scaleagent.redact import Secret
from scaleagent.state import StateDir


class ManualThreads:
    """A `ThreadRunner` whose jobs run only when the test says so (in the test's thread)."""

    def __init__(self):
        self.jobs: list[tuple[object, tuple, defer.Deferred]] = []
        self.ran = 0

    def __call__(self, function, *args):
        d = defer.Deferred()
        self.jobs.append((function, args, d))
        return d

    def run_one(self):
        function, args, d = self.jobs.pop(0)
        self.ran += 1
        try:
            result = function(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def run_all(self, limit: int = 1000):
        for _ in range(limit):
            if not self.jobs:
                return
            self.run_one()
        raise AssertionError("jobs keep coming")


def read(state: StateDir, name: str):
    data = state.read_bytes(name)
    return None if data is None else data.decode()


def test_one_file_is_written_in_order_and_only_its_newest_content(tmp_path):
    state = StateDir(tmp_path)
    threads = ManualThreads()
    errors = []
    writer = RecordWriter(state, errors.append, threads)
    writer.write("r/a.json", b"v1")
    assert len(threads.jobs) == 1 and read(state, "r/a.json") is None  # nothing in the caller's thread
    writer.write("r/a.json", b"v2")
    writer.write("r/a.json", b"v3")  # v2 never needs writing
    writer.write("r/b.json", b"b1")
    assert writer.coalesced == 1 and writer.pending("r/a.json") == (True, b"v3")
    # a.json v1 is in flight: its next write waits for it, b.json goes in a second job meanwhile.
    assert len(threads.jobs) == 2 and threads.jobs[1][1][0] == [("r/b.json", b"b1")]
    threads.run_one()
    assert read(state, "r/a.json") == "v1" and writer.pending("r/a.json") == (True, b"v3")
    threads.run_all()
    assert read(state, "r/a.json") == "v3" and read(state, "r/b.json") == "b1"
    assert threads.ran == 3 and writer.done == 3 and writer.requested == 4
    assert writer.pending("r/a.json") == (False, None) and writer.backlog == 0 and errors == []


def test_a_removal_is_ordered_with_writes_of_the_same_file(tmp_path):
    state = StateDir(tmp_path)
    threads = ManualThreads()
    writer = RecordWriter(state, lambda message: None, threads)
    writer.write("a.json", b"old")
    threads.run_all()
    writer.write("a.json", b"new")  # in flight when the removal comes
    writer.remove("a.json")
    assert writer.pending("a.json") == (True, None)
    threads.run_one()
    assert read(state, "a.json") == "new"
    threads.run_all()
    assert read(state, "a.json") is None
    writer.remove("a.json")
    writer.write("a.json", b"again")  # after the removal in flight
    writer.write("a.json", b"again!")
    threads.run_all()
    assert read(state, "a.json") == "again!" and writer.coalesced == 1 and threads.ran == 5


def test_batches_are_bounded_and_at_most_two_run_at_once(tmp_path):
    state = StateDir(tmp_path)
    threads = ManualThreads()
    writer = RecordWriter(state, lambda message: None, threads, batch=4, jobs=2)
    for i in range(20):
        writer.write(f"f{i:02d}", b"x")
    # The first two went at once; the other 18 wait for a free job and then go 4 at a time.
    assert [len(job[1][0]) for job in threads.jobs] == [1, 1] and writer.backlog == 20
    threads.run_one()
    assert [len(job[1][0]) for job in threads.jobs] == [1, 4]
    threads.run_all()
    assert threads.ran == 2 + 5 and sorted(state.names()) == [f"f{i:02d}" for i in range(20)]


def test_errors_are_handed_over_and_nothing_raises(tmp_path):
    state = StateDir(tmp_path)
    (tmp_path / "r").write_text("a file where the subdirectory should be")
    errors = []
    writer = RecordWriter(state, errors.append, run_inline)
    writer.write("r/a.json", b"x")
    writer.write("ok.json", b"y")
    assert len(errors) == 1 and "r/a.json" in errors[0] and read(state, "ok.json") == "y"
    assert writer.failed == 1 and writer.done == 1 and writer.pending("r/a.json") == (False, None)

    def broken(function, *args):
        raise RuntimeError("the pool is gone")

    failing = RecordWriter(state, errors.append, broken)
    failing.write("z.json", b"z")
    assert "the pool is gone" in errors[-1] and failing.backlog == 0
    assert failing.flush().called


def agent(tmp_path, threads) -> AgentService:
    config = AgentConfig(
        rancher=RancherConfig(url="https://rancher.test", token=Secret("token-abcde:xyz")),
        clusters=ClustersConfig(count=3),
        state=StateConfig(dir=tmp_path / "state"),
    )
    return AgentService(
        config, task.Clock(), raise_limit=False, cluster_set_factory=lambda info: None,
        rancher=NeverReady(), run_in_thread=threads,
    )


class NeverReady:
    """A Rancher that never answers the server check (the agent stays before its ramp)."""

    url = "https://rancher.test"

    def check_server(self):
        return defer.Deferred()

    async def close(self):
        return None


def test_agent_records_go_through_the_writer_and_failures_are_counted(tmp_path):
    threads = ManualThreads()
    a = agent(tmp_path, threads)
    record = ClusterRecord("scale-00001", 1, "https://rancher.test", "c-1", False)
    a.save_record(record)
    record.connected_once = True
    a.save_record(record)  # queued behind the first one
    state_file = tmp_path / "state" / "rancher" / "scale-00001.json"
    assert not state_file.exists()
    assert a.load_record(1, "scale-00001") == record  # what is queued counts
    threads.run_all()
    assert json.loads(state_file.read_text())["connected_once"] is True
    a.forget_record("scale-00001")
    assert a.load_record(1, "scale-00001") == ClusterRecord("scale-00001", 1)
    threads.run_all()
    assert not state_file.exists()

    (tmp_path / "state" / "rancher").rmdir()
    (tmp_path / "state" / "rancher").write_text("not a directory")
    a.save_record(ClusterRecord("scale-00002", 2))
    threads.run_all()
    line = a.errors.drain()
    assert line.startswith("1× state write: state file") and "scale-00002.json" in line


def test_stop_waits_for_queued_records(tmp_path):
    threads = ManualThreads()
    a = agent(tmp_path, threads)
    a.startService()
    for i in range(3):
        a.save_record(ClusterRecord(f"scale-{i:05d}", i, "https://rancher.test", f"c-{i}", True))
    stopped = a.stopService()
    assert not stopped.called  # the records are not on disk yet
    threads.run_all()
    assert stopped.called
    names = sorted(p.name for p in (tmp_path / "state" / "rancher").iterdir())
    assert names == ["scale-00000.json", "scale-00001.json", "scale-00002.json"]


@pytest_twisted.ensureDeferred
async def test_writes_run_in_the_reactors_thread_pool(reactor, tmp_path):
    writers: set[int] = set()

    class Watched(StateDir):
        def write_bytes(self, name, data, *, private=False):
            writers.add(threading.get_ident())
            return super().write_bytes(name, data, private=private)

    state = Watched(tmp_path)
    writer = RecordWriter(state, lambda message: None, reactor_threads(reactor))
    for round_ in range(3):
        for i in range(40):
            writer.write(f"r/{i}.json", f"{round_}".encode())
    await writer.flush()
    assert threading.get_ident() not in writers and writers
    assert all(read(state, f"r/{i}.json") == "2" for i in range(40))
    assert writer.done + writer.coalesced == 120 and writer.done < 120
