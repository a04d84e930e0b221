"""The state directory: atomic writes, corrupted files moved aside and reported, a full disk survived."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from scaleagent import state
from scaleagent.state import CorruptStateFile, StateDir, StateWriteError

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def test_round_trip_and_missing(tmp_path):
    d = StateDir(tmp_path / "new" / "dir")
    assert d.read_json("clusters/a.json") is None
    d.write_json("clusters/a.json", {"rv": 7, "objects": [1, 2]})
    assert d.read_json("clusters/a.json") == {"rv": 7, "objects": [1, 2]}
    assert d.names("clusters", ".json") == ["clusters/a.json"]
    assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o700


def test_private_files_are_0600_from_the_start(tmp_path, monkeypatch):
    d = StateDir(tmp_path)
    seen = []
    real_open = os.open

    def spying_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            seen.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spying_open)
    d.write_bytes("secret.key", b"k", private=True)
    assert seen == [0o600]
    assert stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode) == 0o600
    d.write_bytes("public.txt", b"p")
    assert stat.S_IMODE(os.stat(tmp_path / "public.txt").st_mode) in (0o644, 0o640, 0o600)


def test_overwrite_replaces_whole_and_leaves_no_temporary(tmp_path):
    d = StateDir(tmp_path)
    d.write_bytes("f", b"x" * 10000)
    d.write_bytes("f", b"short")
    assert (tmp_path / "f").read_bytes() == b"short"
    assert sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"rv": 12, "objects": [{"kind": "Deploy', "not valid JSON"),  # truncated mid-write
        (b"\x00\x17garbage\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, found array"),
    ],
)
def test_corrupted_file_is_reported_and_moved_aside(tmp_path, content, reason):
    d = StateDir(tmp_path, clock=lambda: NOW)
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "scale-00001.json").write_bytes(content)
    with pytest.raises(CorruptStateFile) as caught:
        d.read_json("clusters/scale-00001.json")
    error = caught.value
    assert "clusters/scale-00001.json" in str(error)
    assert reason in str(error)
    assert error.moved_to == tmp_path / "clusters" / "scale-00001.json.corrupt-20260921T141320Z"
    assert error.moved_to.read_bytes() == content  # kept, byte for byte
    assert not (tmp_path / "clusters" / "scale-00001.json").exists()
    # the next start sees no file (the caller starts afresh) and the aside copy is not listed
    assert d.read_json("clusters/scale-00001.json") is None
    assert d.names("clusters", ".json") == []


def test_second_corruption_in_the_same_second_does_not_overwrite_the_first(tmp_path):
    d = StateDir(tmp_path, clock=lambda: NOW)
    for content in (b"{", b"}"):
        (tmp_path / "f.json").write_bytes(content)
        with pytest.raises(CorruptStateFile):
            d.read_json("f.json")
    aside = sorted(name for name in os.listdir(tmp_path) if ".corrupt-" in name)
    assert len(aside) == 2
    assert {(tmp_path / name).read_bytes() for name in aside} == {b"{", b"}"}


def test_corruption_is_logged_naming_the_file(tmp_path):
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        (tmp_path / "x.json").write_bytes(b"nope")
        with pytest.raises(CorruptStateFile):
            StateDir(tmp_path).read_json("x.json")
    finally:
        globalLogPublisher.removeObserver(events.append)
    texts = [e.get("message", "") for e in events if e.get("log_namespace") == "scaleagent.state"]
    assert any("x.json" in text and "moved aside" in text for text in texts)


def test_full_disk_keeps_previous_file_and_reports(tmp_path, monkeypatch):
    d = StateDir(tmp_path)
    d.write_json("c.json", {"rv": 1})
    real_write = os.write
    calls = []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))  # a partial write first, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StateWriteError) as caught:
        d.write_json("c.json", {"rv": 2, "padding": "x" * 100})
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert "c.json" in str(caught.value) and "disk is full" in str(caught.value)
    assert d.read_json("c.json") == {"rv": 1}
    assert sorted(os.listdir(tmp_path)) == ["c.json"]  # the temporary is gone


def test_fsync_failure_is_a_write_error_too(tmp_path, monkeypatch):
    d = StateDir(tmp_path)
    d.write_bytes("f", b"old")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StateWriteError, match="Input/output error"):
        d.write_bytes("f", b"new")
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"old"


def test_names_outside_the_directory_are_refused(tmp_path):
    d = StateDir(tmp_path)
    for bad in ("../x", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="relative path"):
            d.file(bad)


def test_cleanup_temporaries_after_a_crash(tmp_path):
    d = StateDir(tmp_path)
    d.write_bytes("a", b"1")
    (tmp_path / ".tmp-a.99999999.456").write_bytes(b"half")  # no such pid: its writer crashed
    assert d.names() == ["a"]
    assert d.cleanup_temporaries() == 1
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_cleanup_keeps_the_temporary_of_a_live_neighbour(tmp_path):
    d = StateDir(tmp_path)
    live = f".tmp-b.{os.getppid()}.789"  # another shard, mid-write
    (tmp_path / live).write_bytes(b"half")
    (tmp_path / f".tmp-c.{os.getpid()}.1").write_bytes(b"ours")  # our own (no write in progress now)
    assert d.cleanup_temporaries() == 1
    assert os.listdir(tmp_path) == [live]


def test_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(state.StateError, match="state file .*f"):
        StateDir(tmp_path / "f")


def test_lock_is_reentrant_across_calls(tmp_path):
    d = StateDir(tmp_path)
    with d.lock():
        pass
    with d.lock():
        d.write_bytes("x", b"1")
    assert (tmp_path / "x").read_bytes() == b"1"
