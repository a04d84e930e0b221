"""`RecordWriter`: small state files written in worker threads, newest content wins, never reordered.

Why: every state write fsyncs the file and its directory (12 ms each on a plain disk). The agent writes
each cluster's record at registration and again after its first connect; done in the reactor thread
that blocked every tunnel for about 2 minutes in all at 5,000 clusters (docs/performance.md, issue 11).

Callers hand over bytes encoded in the reactor thread; a worker thread writes them. Per file there is
at most one write (or removal) in flight, so writes of one file never overtake each other, and a file
asked for again while its earlier request still waits is written once, with the newest content. At
most `jobs` batches run at once: the reactor's pool also resolves host names for tunnel connects.
Errors are handed to `on_error` in the reactor thread; nothing raises to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from scaleagent.state import StateDir, StateError

#: Runs `function(*args)` somewhere (a worker thread) and returns a Deferred of its result.
ThreadRunner = Callable[..., defer.Deferred[Any]]

BATCH = 32
JOBS = 2


def run_inline(function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """A `ThreadRunner` that runs in the calling thread (a `task.Clock` has no thread pool)."""
    return defer.maybeDeferred(function, *args)


def reactor_threads(clock: Any) -> ThreadRunner:
    """The reactor's thread pool as a `ThreadRunner`, or `run_inline` when `clock` is not a reactor."""
    get_pool = getattr(clock, "getThreadPool", None)
    if get_pool is None or not hasattr(clock, "callFromThread"):
        return run_inline

    def run(function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return deferToThreadPool(clock, get_pool(), function, *args)

    return run


class RecordWriter:
    """Write (or remove) files of a `StateDir` off the reactor thread, coalesced and ordered per file."""

    def __init__(
        self,
        state: StateDir,
        on_error: Callable[[str], None],
        run_in_thread: ThreadRunner = run_inline,
        *,
        batch: int = BATCH,
        jobs: int = JOBS,
    ) -> None:
        self.state = state
        self._on_error = on_error
        self._run = run_in_thread
        self.batch = max(1, batch)
        self.jobs = max(1, jobs)
        # name -> bytes to write, or None to remove; insertion order is the order of first request.
        self._queue: dict[str, bytes | None] = {}
        # name -> the newest requested content not yet known to be on disk.
        self._wanted: dict[str, bytes | None] = {}
        self._busy: set[str] = set()  # names in a running batch
        self._running = 0
        self._kicking = False
        self._flush_waiters: list[defer.Deferred[None]] = []
        # counters
        self.requested = 0
        self.coalesced = 0
        self.done = 0
        self.failed = 0

    # -- requests (reactor thread) -------------------------------------------------------------------

    def write(self, name: str, data: bytes) -> None:
        """Have `data` end up in `name` (after any earlier request for it); returns at once."""
        self._request(name, data)

    def remove(self, name: str) -> None:
        """Have `name` deleted (after any earlier request for it); returns at once."""
        self._request(name, None)

    def _request(self, name: str, op: bytes | None) -> None:
        self.requested += 1
        if name in self._queue:
            self.coalesced += 1  # the older content was never written: only the newest matters
        self._queue[name] = op
        self._wanted[name] = op
        self._kick()

    def pending(self, name: str) -> tuple[bool, bytes | None]:
        """(True, content) when a request for `name` is not yet on disk (content None: removal)."""
        if name in self._wanted:
            return True, self._wanted[name]
        return False, None

    @property
    def backlog(self) -> int:
        """Requests waiting or being written."""
        return len(self._queue) + len(self._busy)

    def flush(self) -> defer.Deferred[None]:
        """Fires once every request made so far (and any made meanwhile) is done."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._flush_waiters.append(waiter)
        self._maybe_idle()
        return waiter

    # -- the work --------------------------------------------------------------------------------------

    def _take(self) -> list[tuple[str, bytes | None]]:
        batch: list[tuple[str, bytes | None]] = []
        for name in self._queue:
            if name not in self._busy:  # its earlier write still runs: this one waits for it
                batch.append((name, self._queue[name]))
                if len(batch) == self.batch:
                    break
        for name, _ in batch:
            del self._queue[name]
            self._busy.add(name)
        return batch

    def _kick(self) -> None:
        if self._kicking:  # a batch that finished inline, inside the loop below
            return
        self._kicking = True
        try:
            while self._running < self.jobs:
                batch = self._take()
                if not batch:
                    break
                self._running += 1
                try:
                    running = self._run(self._write_batch, batch)
                except Exception:
                    running = defer.fail()
                running.addBoth(self._batch_done, batch)
        finally:
            self._kicking = False
        self._maybe_idle()

    def _write_batch(self, batch: list[tuple[str, bytes | None]]) -> list[str | None]:
        """In a worker thread: each file in turn; an error message per file, or None."""
        errors: list[str | None] = []
        for name, op in batch:
            try:
                if op is None:
                    self.state.remove(name)
                else:
                    self.state.write_bytes(name, op)
            except (StateError, OSError, ValueError) as error:
                errors.append(str(error))
            else:
                errors.append(None)
        return errors

    def _batch_done(self, result: Any, batch: list[tuple[str, bytes | None]]) -> None:
        self._running -= 1
        if isinstance(result, Failure):
            errors: list[str | None] = [f"{name}: {result.getErrorMessage()}" for name, _ in batch]
        else:
            errors = list(result)
        for (name, op), error in zip(batch, errors, strict=True):
            self._busy.discard(name)
            if name not in self._queue and name in self._wanted and self._wanted[name] is op:
                del self._wanted[name]
            if error is None:
                self.done += 1
            else:
                self.failed += 1
                try:
                    self._on_error(error)
                except Exception:
                    pass
        self._kick()

    def _maybe_idle(self) -> None:
        if self._queue or self._running or not self._flush_waiters:
            return
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter.callback(None)


__all__ = ["RecordWriter", "ThreadRunner", "reactor_threads", "run_inline"]
