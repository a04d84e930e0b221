"""`python -m scaleagent.cleanup` against the stand-in: lists, deletes only with --yes, only the agent's
names, and the command line itself as a child process."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, protocol

from scaleagent.cleanup import run
from scaleagent.config import load_config
from scaleagent.sim.service import start_ranchersim

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(defer.ensureDeferred(start_ranchersim(reactor)))
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


def write_config(tmp_path, sim) -> Path:
    (tmp_path / "api.token").write_text(sim.api_token + "\n")
    path = tmp_path / "agent.ini"
    path.write_text(
        f"[rancher]\nurl = {sim.url}\ntoken_file = api.token\nca_checksum = {sim.ca_checksum}\n"
        "[clusters]\nname_prefix = t-\n[state]\ndir = state\n"
    )
    return path


@pytest_twisted.ensureDeferred
async def test_lists_then_deletes_only_the_agents_clusters(reactor, sim, tmp_path):
    for name in ("t-00000", "t-00001", "t-00007", "t-prod", "other-00001", "t-000001"):
        sim.store.create_cluster(name)
    config = load_config(write_config(tmp_path, sim))
    (tmp_path / "state" / "rancher").mkdir(parents=True)
    (tmp_path / "state" / "rancher" / "t-00001.json").write_text("{}")

    out = io.StringIO()
    assert await run(reactor, config, yes=False, out=out) == 0
    text = out.getvalue()
    assert "3 clusters named t-NNNNN" in text and "run again with --yes" in text
    assert "t-00007" in text and "t-prod" not in text and "other-00001" not in text
    assert len(sim.store.clusters()) == 6

    out = io.StringIO()
    assert await run(reactor, config, yes=True, out=out) == 0
    assert "deleted 3 of 3" in out.getvalue()
    assert sorted(c.name for c in sim.store.clusters()) == ["other-00001", "t-000001", "t-prod"]
    assert not (tmp_path / "state" / "rancher" / "t-00001.json").exists()

    out = io.StringIO()
    assert await run(reactor, config, yes=True, out=out) == 0
    assert "0 clusters" in out.getvalue()


@pytest_twisted.ensureDeferred
async def test_wrong_token_is_one_line_and_exit_1(reactor, sim, tmp_path):
    path = write_config(tmp_path, sim)
    (tmp_path / "api.token").write_text("token-wrong:abcdef\n")
    out = io.StringIO()
    assert await run(reactor, load_config(path), yes=True, out=out) == 1
    assert out.getvalue().count("\n") == 1 and "API token was refused" in out.getvalue()


class Collect(protocol.ProcessProtocol):
    def __init__(self):
        self.out = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.out += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def spawn(reactor, tmp_path, *args):
    proto = Collect()
    env = {k: v for k, v in os.environ.items() if k != "SCALEAGENT_RANCHER_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    reactor.spawnProcess(proto, sys.executable, [sys.executable, "-m", "scaleagent.cleanup", *args],
                         env=env, path=str(tmp_path))
    return proto


@pytest_twisted.ensureDeferred
async def test_command_line(reactor, sim, tmp_path):
    sim.store.create_cluster("t-00003")
    write_config(tmp_path, sim)
    proto = spawn(reactor, tmp_path, "--config", "agent.ini", "--yes")
    code = await proto.ended.addTimeout(60, reactor)
    assert code == 0, proto.out.decode()
    assert b"deleted 1 of 1" in proto.out and sim.store.clusters() == []

    proto = spawn(reactor, tmp_path, "--config", "missing.ini")
    code = await proto.ended.addTimeout(60, reactor)
    assert code == 2
    assert proto.out.decode().strip().splitlines() == ["cleanup: missing.ini: config file not found"]
