"""The installed `twistd scaleagent` plugin: listed, lazy, clean start and stop, one-line config errors."""

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, protocol

from scaleagent.tap import Options

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).with_name("twistd"))


class Collect(protocol.ProcessProtocol):
    """Collects a child's output; `ended` fires with its exit code, `seen(text)` when text appears."""

    def __init__(self):
        self.out = b""
        self.ended = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred]] = []

    def outReceived(self, data):
        self._add(data)

    def errReceived(self, data):
        self._add(data)

    def _add(self, data):
        self.out += data
        for text, waiter in list(self._waiting):
            if text in self.out:
                self._waiting.remove((text, waiter))
                waiter.callback(None)

    def seen(self, text: bytes) -> defer.Deferred:
        waiter = defer.Deferred()
        if text in self.out:
            waiter.callback(None)
        else:
            self._waiting.append((text, waiter))
        return waiter

    def processEnded(self, reason):
        self.signal = reason.value.signal
        self.ended.callback(reason.value.exitCode)


def child_env(tmp_path, source):
    """The child's environment; `source` puts this checkout first, else only the installed package."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCALEAGENT_RANCHER_TOKEN")}
    env["HOME"] = str(tmp_path)
    if source:
        env["PYTHONPATH"] = str(ROOT)
    return env


def spawn(reactor, tmp_path, *args, source=True):
    proto = Collect()
    env = child_env(tmp_path, source)
    reactor.spawnProcess(proto, TWISTD, [TWISTD, *args], env=env, path=str(tmp_path))
    return proto


def with_timeout(reactor, d, seconds=60):
    return d.addTimeout(seconds, reactor)


def test_plugin_module_is_lazy_and_provides_service_makers():
    """Importing the plugin must not import scaleagent's code (so errors are not 'Unknown command')."""
    from twisted.application.service import IServiceMaker

    from twisted.plugins import scaleagent_plugin

    assert IServiceMaker.providedBy(scaleagent_plugin.scaleagent)
    assert scaleagent_plugin.scaleagent.tapname == "scaleagent"
    source = Path(scaleagent_plugin.__file__).read_text()
    assert "import scaleagent" not in source and "from scaleagent" not in source


def test_options_refuse_bad_shard_and_duration():
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError, match=r"--shard '5/2': expected i/n"):
        Options().parseOptions(["--shard", "5/2"])
    with pytest.raises(UsageError, match=r"--duration 'soon': expected seconds"):
        Options().parseOptions(["--duration", "soon"])
    options = Options()
    options.parseOptions(["--config", "x.ini", "--shard", "1/2", "--duration", "3"])
    assert (options["config"], options["shard"], options["duration"]) == ("x.ini", "1/2", 3.0)


@pytest_twisted.inlineCallbacks
def test_twistd_help_lists_the_installed_plugin(reactor, tmp_path):
    """Run from an empty directory, so only the installed package can provide the plugin."""
    proto = spawn(reactor, tmp_path, "--help", source=False)
    code = yield with_timeout(reactor, proto.ended)
    assert code == 0, proto.out.decode()
    assert b"scaleagent" in proto.out
    assert b"Simulated downstream Kubernetes clusters" in proto.out


@pytest_twisted.inlineCallbacks
def test_missing_config_is_one_clear_line(reactor, tmp_path):
    proto = spawn(reactor, tmp_path, "-n", "--pidfile=", "scaleagent", "--config", "missing.ini")
    code = yield with_timeout(reactor, proto.ended)
    assert code != 0
    lines = proto.out.decode().strip().splitlines()
    assert lines == ["scaleagent: missing.ini: config file not found"]


@pytest_twisted.inlineCallbacks
def test_bad_value_is_one_clear_line(reactor, tmp_path):
    (tmp_path / "bad.ini").write_text("[clusters]\ncount = many\n")
    proto = spawn(reactor, tmp_path, "-n", "--pidfile=", "scaleagent", "--config", "bad.ini")
    code = yield with_timeout(reactor, proto.ended)
    assert code != 0
    assert proto.out.decode().strip().splitlines() == [
        "scaleagent: bad.ini: [clusters] count = 'many': expected a whole number >= 0 and <= 100000"
    ]


@pytest_twisted.inlineCallbacks
def test_starts_with_shipped_config_and_stops_on_sigterm(reactor, tmp_path):
    (tmp_path / "etc").mkdir()
    shutil.copy(ROOT / "etc" / "agent.ini", tmp_path / "etc" / "agent.ini")
    proto = spawn(reactor, tmp_path, "-n", "--pidfile=", "scaleagent", "--config", "etc/agent.ini")
    yield with_timeout(reactor, proto.seen(b"scaleagent started: 50 clusters in all"))
    os.kill(proto_pid(proto), signal.SIGTERM)
    code = yield with_timeout(reactor, proto.ended)
    output = proto.out.decode()
    # twistd re-raises the signal after a clean shutdown, so systemd sees "killed by SIGTERM" (clean).
    assert (code, proto.signal) in ((0, None), (None, signal.SIGTERM)), output
    assert "Received SIGTERM, shutting down." in output, output
    assert "Server Shut Down." in output, output
    assert "Traceback" not in output, output


def proto_pid(proto):
    return proto.transport.pid
