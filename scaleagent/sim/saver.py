"""Save the stand-in's durable state periodically and on a clean stop (`twistd ranchersim --state-dir`).

The document is encoded in the reactor thread (a consistent view of the store, no locking) and written
and fsynced in the reactor's thread pool, so a save of 10,000 clusters does not stall the tunnels for
the length of an fsync. One write is in flight at a time; a change during it is saved on the next tick.
A failed write is logged with its cause (once per distinct cause) and retried on the next tick: the
stand-in keeps running, the previous file stays intact (`scaleagent.state.atomic_write`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task, threads

from scaleagent.redact import logger
from scaleagent.state import PRIVATE, StateDir, StateWriteError, atomic_write

log = logger()

DEFAULT_INTERVAL = 10.0


class StateSaver:
    """Write `encode()` to `state_dir/name` whenever `revision()` moved since the last good write."""

    def __init__(
        self,
        reactor: Any,
        state_dir: StateDir,
        name: str,
        encode: Callable[[], bytes],
        revision: Callable[[], int],
        *,
        interval: float = DEFAULT_INTERVAL,
        saved_revision: int | None = None,
        threaded: bool = True,
    ) -> None:
        self.reactor = reactor
        self.path = state_dir.file(name)
        self._encode = encode
        self._revision = revision
        self.interval = interval
        # None: nothing on disk matches the store yet, so the first tick writes.
        self.saved_revision = saved_revision
        self.threaded = threaded
        self._loop: task.LoopingCall | None = None
        self._inflight: defer.Deferred[None] | None = None
        self._last_error = ""
        self.saves = 0
        self.failures = 0
        self.last_encode_s = 0.0
        self.last_write_s = 0.0
        self.last_bytes = 0

    @property
    def dirty(self) -> bool:
        return self.saved_revision != self._revision()

    def start(self) -> None:
        if self._loop is None and self.interval > 0:
            self._loop = task.LoopingCall(self.tick)
            self._loop.clock = self.reactor
            self._loop.start(self.interval, now=False)

    def tick(self) -> defer.Deferred[None] | None:
        """Start a save if something changed and none is in flight; the Deferred fires when written."""
        if self._inflight is not None or not self.dirty:
            return None
        revision = self._revision()
        data = self._encoded()
        if not self.threaded:
            self._write(data, revision)
            return defer.succeed(None)
        started = time.perf_counter()
        pool = self.reactor.getThreadPool()
        d = threads.deferToThreadPool(self.reactor, pool, atomic_write, self.path, data, mode=PRIVATE)
        self._inflight = d

        def written(_: Any) -> None:
            self._succeeded(revision, time.perf_counter() - started)

        def failed(failure: Any) -> None:
            if failure.check(StateWriteError):
                self._failed(failure.value)
            else:
                self.failures += 1
                log.failure("ranchersim: saving the state to {path} failed", failure, path=str(self.path))

        def done(result: Any) -> None:
            self._inflight = None
            return None

        d.addCallbacks(written, failed)
        d.addBoth(done)
        return d

    def _encoded(self) -> bytes:
        started = time.perf_counter()
        data = self._encode()
        self.last_encode_s = time.perf_counter() - started
        self.last_bytes = len(data)
        return data

    def _write(self, data: bytes, revision: int) -> bool:
        started = time.perf_counter()
        try:
            atomic_write(self.path, data, mode=PRIVATE)
        except StateWriteError as error:
            self._failed(error)
            return False
        self._succeeded(revision, time.perf_counter() - started)
        return True

    def _succeeded(self, revision: int, seconds: float) -> None:
        self.saved_revision = revision
        self.saves += 1
        self.last_write_s = seconds
        if self._last_error:
            log.info("ranchersim: state saved to {path} again", path=str(self.path))
            self._last_error = ""
        log.debug(
            "ranchersim: state saved ({size} bytes; encode {encode_ms:.1f} ms, write {write_ms:.1f} ms)",
            size=self.last_bytes,
            encode_ms=self.last_encode_s * 1000,
            write_ms=seconds * 1000,
        )

    def _failed(self, error: StateWriteError) -> None:
        self.failures += 1
        message = str(error)
        if message != self._last_error:
            self._last_error = message
            log.error("ranchersim: {message}; the stand-in keeps running and retries", message=message)

    def save_now(self) -> bool:
        """Write at once in this thread if something changed (used on stop); True if on disk now."""
        if not self.dirty:
            return True
        return self._write(self._encoded(), self._revision())

    async def stop(self) -> None:
        """Stop the loop, let a write in flight finish, then save what changed since (in this thread)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._inflight is not None:
            await self._inflight
        self.save_now()


__all__ = ["DEFAULT_INTERVAL", "StateSaver"]
