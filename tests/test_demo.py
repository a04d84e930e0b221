"""`python -m scaleagent.demo` (what `tox -e demo` runs), as a child process, start to summary."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet import defer, protocol

ROOT = Path(__file__).resolve().parent.parent


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out += data

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err += data

    def processEnded(self, reason) -> None:  # noqa: N802
        self.ended.callback(reason.value.exitCode)


async def run_demo(reactor, tmp_path, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = Collect()
    reactor.spawnProcess(
        child, sys.executable, [sys.executable, "-m", "scaleagent.demo", *args], env=env, path=str(tmp_path)
    )
    child.ended.addTimeout(timeout, reactor)
    code = await child.ended
    return code, child.out.decode(), child.err.decode()


def write_config(tmp_path: Path, count: int) -> Path:
    ini = tmp_path / "demo.ini"
    ini.write_text(
        "[rancher]\nurl = embedded\nembedded_profile = rancher-2.14\n"
        f"[clusters]\ncount = {count}\nname_prefix = demo-\nramp_per_second = 50\n"
        "[state]\ndir = state\n"
    )
    return ini


@pytest_twisted.ensureDeferred
async def test_demo_shows_progress_and_a_summary_with_zero_failures(reactor, tmp_path):
    ini = write_config(tmp_path, 4)
    code, out, err = await run_demo(
        reactor, tmp_path, "--config", str(ini), "--duration", "8", "--interval", "1"
    )
    assert code == 0, (out, err)
    assert "scaleagent demo: 4 simulated clusters, embedded Rancher stand-in (rancher-2.14 traffic)" in out
    assert re.search(r"\] registered \d+/4, tunnels \d+/4, active \d+/4", out)
    match = re.search(r"all clusters Active in:\s+([0-9.]+) s", out)
    assert match and 0 < float(match.group(1)) < 8, out
    assert re.search(r"requests served:\s+[1-9]\d* through the tunnels", out)
    assert re.search(r"latency, all requests:\s+p50 [0-9.]+ ms, p99 [0-9.]+ ms", out)
    assert re.search(r"latency, health and ping: p50 [0-9.]+ ms, p99 [0-9.]+ ms", out)
    assert "failures:                 0 unexpected answers, 0 transport errors" in out
    # The log went to the state directory, not the terminal; no token in either.
    log = (tmp_path / "state" / "demo.log").read_text()
    assert "ranchersim" in log and "token-" not in out + err


@pytest_twisted.ensureDeferred
async def test_demo_with_a_bad_config_is_one_line(reactor, tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[clusters]\ncount = many\n")
    code, out, err = await run_demo(reactor, tmp_path, "--config", str(ini), "--duration", "5")
    assert code == 2
    assert err.strip().count("\n") == 0 and "[clusters] count = 'many'" in err
