"""What several integration tests share: bounded polling, and child processes that never outlive a test.

Every helper that waits returns a Deferred, so it serves `await` (ensureDeferred tests) and `yield`
(inlineCallbacks tests) alike.  A child is always reaped: `finish` KILLs it when it overruns, `stop`
sends TERM and then KILL, and `ClusterProcess.start` stops the server again when it never came up.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from twisted.internet import defer, task
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol

ROOT = Path(__file__).resolve().parent.parent

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _deferred(f: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, defer.Deferred[_T]]:
    @functools.wraps(f)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> defer.Deferred[_T]:
        return defer.ensureDeferred(f(*args, **kwargs))

    return wrapper


@_deferred
async def until(
    reactor,
    predicate: Callable[[], object],
    seconds: float = 10.0,
    what: str = "condition",
    step: float = 0.01,
) -> None:
    """Poll `predicate` every `step` s; AssertionError naming `what` when it still fails after `seconds`
    (counted in polls, so a loaded machine waits longer rather than failing sooner)."""
    for _ in range(max(1, int(seconds / step))):
        if predicate():
            return
        await task.deferLater(reactor, step, lambda: None)
    if not predicate():
        raise AssertionError(f"{what} not reached within {seconds:g} s")


class Collect(ProcessProtocol):
    """A child's stdout and stderr; `ended` fires with its exit code (-1 when a signal ended it)."""

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(code if code is not None else -1)

    def output(self) -> str:
        return (self.out + self.err).decode(errors="replace")


def spawn(
    reactor, executable: str, args: list[str], *, env: Mapping[str, str], path: str | None = None
) -> tuple[Collect, Any]:
    """Start `executable args` with the reactor (never a blocking subprocess); (protocol, transport)."""
    proto = Collect()
    transport = reactor.spawnProcess(proto, executable, [executable, *args], env=dict(env), path=path)
    return proto, transport


def _kill(proto: Collect, transport) -> None:
    if not proto.ended.called:
        try:
            transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass


@_deferred
async def finish(reactor, proto: Collect, transport, timeout: float) -> int:
    """The child's exit code; it is KILLed (code -1) when it has not ended within `timeout` seconds."""
    killer = reactor.callLater(timeout, _kill, proto, transport)
    try:
        return await proto.ended
    finally:
        if killer.active():
            killer.cancel()


@_deferred
async def stop(reactor, proto: Collect, transport, grace: float = 15.0) -> None:
    """TERM the child, and KILL it when it has not ended `grace` seconds later."""
    if not proto.ended.called:
        try:
            transport.signalProcess("TERM")
        except ProcessExitedAlready:
            pass
        await finish(reactor, proto, transport, grace)


@_deferred
async def run(
    reactor,
    executable: str,
    args: list[str],
    *,
    env: Mapping[str, str],
    path: str | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run a child to its end (KILLed after `timeout`); (exit code, stdout, stderr) as text."""
    proto, transport = spawn(reactor, executable, args, env=env, path=path)
    if stdin is not None:
        transport.write(stdin)
    transport.closeStdin()
    code = await finish(reactor, proto, transport, timeout)
    return code, proto.out.decode(errors="replace"), proto.err.decode(errors="replace")


class ClusterProcess:
    """`python -m scaleagent.cluster` on a loopback port of its own; ready once it has printed
    "listening on" (it writes the kubeconfig first: polling for the file alone races that line)."""

    def __init__(self, reactor, tmp_path: Path) -> None:
        self.reactor = reactor
        self.tmp = tmp_path
        self.kubeconfig = tmp_path / "kubeconfig"
        self.proto = Collect()
        self.transport: Any = None

    @_deferred
    async def start(self, *extra: str, env: Mapping[str, str] | None = None, seconds: float = 30.0) -> None:
        """Serve with `extra` arguments; AssertionError with the child's output when it did not come up
        within `seconds` (the child is stopped first)."""
        args = ["-m", "scaleagent.cluster", "--listen", "tcp:0:interface=127.0.0.1"]
        args += ["--kubeconfig", str(self.kubeconfig), *extra]
        child_env = dict(env if env is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        child_env["PYTHONPATH"] = str(ROOT)
        self.proto, self.transport = spawn(
            self.reactor, sys.executable, args, env=child_env, path=str(self.tmp)
        )
        try:
            await until(
                self.reactor,
                lambda: b"listening on " in self.proto.out or self.proto.ended.called,
                seconds,
                "the served cluster",
            )
        except AssertionError:
            pass
        if self.proto.ended.called or not self.kubeconfig.exists():
            await self.stop()
            raise AssertionError(self.proto.output())

    @_deferred
    async def stop(self, grace: float = 15.0) -> None:
        if self.transport is not None:
            await stop(self.reactor, self.proto, self.transport, grace)
