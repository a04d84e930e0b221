"""The on-disk state directory: atomic writes, JSON helpers, and corruption that is never hidden.

What a restart must reproduce (the CA, each cluster's identity and its store changes) lives here.  A
write either replaces a file whole or leaves the previous one untouched: the bytes go to a temporary
file in the same directory, which is fsynced, renamed over the target, and the directory is fsynced.
A file that cannot be parsed is moved aside under a `.corrupt-<UTC timestamp>` suffix and reported
with an exception naming it, so a later write never silently destroys what a person may want back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from scaleagent.redact import logger

log = logger()

PRIVATE = 0o600
PUBLIC = 0o644
_DIR_MODE = 0o700
_TMP_PREFIX = ".tmp-"
CORRUPT_SUFFIX = ".corrupt-"


class StateError(Exception):
    """A problem with one state file; the message always names the file."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"state file {path}: {message}")
        self.path = path


class CorruptStateFile(StateError):
    """A file could not be parsed; it has been moved to `moved_to` and is no longer at `path`."""

    def __init__(self, path: Path, reason: str, moved_to: Path | None) -> None:
        where = f"moved aside to {moved_to}" if moved_to else "could not be moved aside"
        super().__init__(path, f"corrupted or truncated ({reason}); {where}")
        self.reason = reason
        self.moved_to = moved_to


class StateWriteError(StateError):
    """A write failed (a full disk, permissions); the previous version of the file is intact."""

    def __init__(self, path: Path, error: OSError) -> None:
        reason = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        super().__init__(path, f"not written, previous version kept: {reason}")
        self.errno = error.errno


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; some filesystems refuse to open a directory, which is then best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = PUBLIC) -> None:
    """Replace `path` with `data` whole, or raise `StateWriteError` leaving the old file as it was.

    The temporary file is created with `mode` from the start, so a private key is never readable by
    others, not even for an instant.
    """
    path = Path(path)
    directory = path.parent
    tmp = directory / f"{_TMP_PREFIX}{path.name}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as error:
        raise StateWriteError(path, error) from error
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widens beyond `mode`
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateWriteError(path, error) from error
    _fsync_dir(directory)


def encode_json(value: Any, *, indent: int | None = None) -> bytes:
    """The bytes `StateDir.write_json` writes: sorted keys, compact unless `indent`, a final newline."""
    if indent is None:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(value, indent=indent, sort_keys=True)
    return text.encode("utf-8") + b"\n"


def move_aside(path: Path, *, now: float | None = None) -> Path | None:
    """Rename `path` to `<path>.corrupt-<UTC timestamp>` (never overwriting one); None if it failed."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
    counter = 1
    while target.exists() and counter < 1000:
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}-{counter}")
        counter += 1
    try:
        os.replace(path, target)
    except OSError as error:
        log.error("could not move corrupted state file {path} aside: {error}", path=str(path), error=error)
        return None
    _fsync_dir(path.parent)
    return target


class StateDir:
    """One state directory; every name given to it is a relative path inside it.

    `clock` gives the wall time used in `.corrupt-` suffixes (injectable for tests).
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        except OSError as error:
            raise StateError(self.path, f"cannot create the state directory: {error.strerror}") from error
        if not self.path.is_dir():
            raise StateError(self.path, "is not a directory")

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of `name`, refusing anything that would leave the directory."""
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"state file name {name!r}: expected a relative path inside {self.path}")
        return self.path / relative

    def write_bytes(self, name: str, data: bytes, *, private: bool = False) -> Path:
        """Atomically write `data` to `name` (mode 0600 if `private`), creating subdirectories."""
        path = self.file(name)
        if path.parent != self.path:
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
            except OSError as error:
                raise StateWriteError(path, error) from error
        atomic_write(path, data, mode=PRIVATE if private else PUBLIC)
        return path

    def read_bytes(self, name: str) -> bytes | None:
        """The content of `name`, or None when it does not exist."""
        path = self.file(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StateError(path, f"cannot be read: {error.strerror}") from error

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def write_json(self, name: str, value: Any, *, private: bool = False, indent: int | None = None) -> Path:
        """Atomically write `value` as JSON (compact unless `indent`), ending with a newline."""
        return self.write_bytes(name, encode_json(value, indent=indent), private=private)

    def read_json(self, name: str, *, expect: type = dict) -> Any:
        """The JSON value in `name`, or None when it does not exist.

        A file that is not valid UTF-8 JSON of type `expect` (truncated, garbage, empty) is moved aside
        and `CorruptStateFile` is raised; the caller decides whether to start afresh.
        """
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            self.corrupt(name, f"not valid JSON: {error}")
        if not isinstance(value, expect):
            self.corrupt(name, f"expected a JSON {_json_type(expect)}, found {_json_type(type(value))}")
        return value

    def corrupt(self, name: str, reason: str) -> NoReturn:
        """Report `name` as corrupted: move it aside, log it, raise `CorruptStateFile` (never returns)."""
        path = self.file(name)
        moved = move_aside(path, now=self._clock())
        error = CorruptStateFile(path, reason, moved)
        log.error("{message}", message=str(error))
        raise error

    def remove(self, name: str) -> None:
        """Delete `name` if present."""
        path = self.file(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def names(self, subdir: str = "", suffix: str = "") -> list[str]:
        """Sorted relative names of the regular files in `subdir` ending in `suffix` (no temporaries)."""
        directory = self.file(subdir) if subdir else self.path
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        prefix = f"{subdir}/" if subdir else ""
        return [
            prefix + entry
            for entry in entries
            if entry.endswith(suffix)
            and not entry.startswith(_TMP_PREFIX)
            and CORRUPT_SUFFIX not in entry
            and (directory / entry).is_file()
        ]

    def cleanup_temporaries(self, subdir: str = "") -> int:
        """Delete temporaries left by a crash mid-write; returns how many were removed.

        A temporary of another live process (shards may share a directory) is its write in progress
        and stays."""
        directory = self.file(subdir) if subdir else self.path
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(directory):
                if entry.startswith(_TMP_PREFIX) and not _writer_alive(entry):
                    with contextlib.suppress(OSError):
                        os.unlink(directory / entry)
                        removed += 1
        return removed

    @contextlib.contextmanager
    def lock(self, name: str = ".lock") -> Iterator[None]:
        """Hold an exclusive advisory lock (flock) so two processes sharing the directory do not race."""
        import fcntl

        path = self.file(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _writer_alive(temporary: str) -> bool:
    """Whether the process named in a temporary's name (`.tmp-<name>.<pid>.<ns>`) is another live one."""
    try:
        pid = int(temporary.rsplit(".", 2)[-2])
    except (IndexError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _json_type(kind: type) -> str:
    return _JSON_TYPES.get(kind, "null" if kind is type(None) else kind.__name__)
