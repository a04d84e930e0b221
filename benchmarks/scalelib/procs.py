"""Child processes of the benchmark and what /proc says about them (RSS, CPU seconds, load)."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")

# `twistd` from this checkout: its plugin file first on the plugin path, whatever copy of scaleagent
# the interpreter has installed (the same bootstrap the twistd tests use).
BOOTSTRAP = """
import sys
root = sys.argv.pop(1)
sys.path.insert(0, root)
import twisted.plugins
twisted.plugins.__path__.insert(0, root + "/twisted/plugins")
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""


def twistd_command(root: Path, logfile: Path, plugin: str, args: list[str]) -> list[str]:
    """`twistd -n --pidfile= --logfile=LOG <plugin> <args>` run from the checkout at `root`."""
    twistd = ["-n", "--pidfile=", f"--logfile={logfile}"]
    return [sys.executable, "-c", BOOTSTRAP, str(root), *twistd, plugin, *args]


def spawn(command: list[str], cwd: Path, output: Path) -> subprocess.Popen[bytes]:
    """Start a child with stdout/stderr to a file, in its own process group."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    handle = open(output, "ab")  # noqa: SIM115 -- kept open for the child's lifetime
    return subprocess.Popen(
        command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM, wait up to `timeout`, then SIGKILL: never leaves the child running."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of the process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "open_files_limit": _nofile(),
    }


def _nofile() -> list[int]:
    import resource

    return list(resource.getrlimit(resource.RLIMIT_NOFILE))


class CpuMeter:
    """CPU percent of one process between successive readings."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last: tuple[float, float] | None = None

    def read(self) -> float | None:
        cpu, now = cpu_seconds(self.pid), time.monotonic()
        if cpu is None:
            return None
        last, self._last = self._last, (now, cpu)
        if last is None or now <= last[0]:
            return None
        return 100 * (cpu - last[1]) / (now - last[0])


__all__ = ["CpuMeter", "cpu_seconds", "free_port", "loadavg", "machine", "rss_mib", "spawn", "stop",
           "twistd_command"]
