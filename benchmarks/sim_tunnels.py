"""How fast and how lean the Rancher stand-in accepts clusters: import N clusters through its API, open
both tunnels of each, wait until all are `active`; report the time and the stand-in's memory.

    python benchmarks/sim_tunnels.py --clusters 200 [--concurrency 50] [--out figures.json]

The stand-in runs as `twistd -n ranchersim` from this checkout in a child process (so its memory is its
own, read from /proc); this process is the client: treq for the API, the remotedialer client for the
tunnels (no pings beyond the default 5 s, no virtual connections).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scalelib.procs import BOOTSTRAP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARAMS = base64.b64encode(
    json.dumps({"cluster": {"address": "10.43.0.1:443", "token": "sa", "caCert": "Y2E="}}).encode()
).decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def run(reactor, clusters: int, concurrency: int) -> dict:
    from treq.client import HTTPClient
    from twisted.internet import defer, protocol
    from twisted.internet.ssl import Certificate, optionsForClientTLS
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.iweb import IPolicyForHTTPS
    from zope.interface import implementer

    from scaleagent.remotedialer.websocket import connect_tunnel

    workdir = Path(tempfile.mkdtemp(prefix="simbench-"))
    child = protocol.ProcessProtocol()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [
        sys.executable,
        "-c",
        BOOTSTRAP,
        str(ROOT),
        "-n",
        "--pidfile=",
        "--logfile=sim.log",
        "ranchersim",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--url-file",
        "url",
        "--profile",
        "none",  # bare tunnels here (no apiserver behind them): both tunnels up is Active
    ]
    process = reactor.spawnProcess(child, sys.executable, args, env=env, path=str(workdir))
    for _ in range(600):
        if (workdir / "url").exists() and (workdir / "url").read_text().strip():
            break
        await deferLater(reactor, 0.05, lambda: None)
    url = (workdir / "url").read_text().strip()
    token = (workdir / "ranchersim.token").read_text().strip()
    ca = (workdir / "ranchersim-ca.pem").read_text()

    @implementer(IPolicyForHTTPS)
    class Pinned:
        def creatorForNetloc(self, hostname, port):
            return optionsForClientTLS(hostname.decode(), trustRoot=Certificate.loadPEM(ca.encode()))

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = concurrency
    http = HTTPClient(Agent(reactor, contextFactory=Pinned(), pool=pool))
    auth = {"Authorization": [f"Bearer {token}"]}
    rss_idle = rss_kib(process.pid)
    tunnels = []
    semaphore = defer.DeferredSemaphore(concurrency)

    async def one(index: int) -> None:
        response = await http.post(
            url + "/v3/clusters", json={"type": "cluster", "name": f"b-{index:05d}"}, headers=auth
        )
        cluster = await response.json()
        response = await http.get(
            f"{url}/v3/clusterregistrationtokens?clusterId={cluster['id']}", headers=auth
        )
        crt = (await response.json())["data"][0]["token"]
        wss = "wss" + url[len("https") :]
        options = {"ca_pem": ca.encode(), "name": f"b-{index:05d}"}
        main = await connect_tunnel(
            reactor,
            wss + "/v3/connect/register",
            {"X-API-Tunnel-Token": crt, "X-API-Tunnel-Params": PARAMS},
            lambda p, a: None,
            **options,
        )
        steve = await connect_tunnel(
            reactor,
            wss + "/v3/connect",
            {"Authorization": f"Bearer stv-cluster-{crt}"},
            lambda p, a: None,
            **options,
        )
        tunnels.extend([main, steve])

    cpu_before = cpu_seconds(process.pid)
    own_before = time.process_time()
    start = time.perf_counter()
    await defer.gatherResults(
        [semaphore.run(lambda i=i: defer.ensureDeferred(one(i))) for i in range(clusters)], consumeErrors=True
    )
    opened = time.perf_counter() - start
    for _ in range(3000):
        response = await http.get(url + "/sim/clusters", headers=auth)
        status = await response.json()
        if status["counts"]["active"] == clusters:
            break
        await deferLater(reactor, 0.02, lambda: None)
    all_active = time.perf_counter() - start
    standin_cpu = cpu_seconds(process.pid) - cpu_before
    client_cpu = time.process_time() - own_before
    await deferLater(reactor, 6, lambda: None)  # a round of pings
    rss_loaded = rss_kib(process.pid)
    for tunnel in tunnels:
        tunnel.disconnect()
    await pool.closeCachedConnections()
    ended = defer.Deferred()
    child.processEnded = lambda reason: ended.callback(None)
    os.kill(process.pid, signal.SIGTERM)
    await ended
    return {
        "clusters": clusters,
        "concurrency": concurrency,
        "active": status["counts"]["active"],
        "seconds_to_open_all_tunnels": round(opened, 3),
        "seconds_until_all_active": round(all_active, 3),
        "clusters_per_second": round(clusters / all_active, 1),
        "standin_cpu_seconds_during_ramp": round(standin_cpu, 2),
        "client_cpu_seconds_during_ramp": round(client_cpu, 2),
        "standin_rss_idle_mib": round(rss_idle / 1024, 1),
        "standin_rss_loaded_mib": round(rss_loaded / 1024, 1),
        "standin_kib_per_cluster": round((rss_loaded - rss_idle) / clusters, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()

    from twisted.internet import defer, task

    def go(reactor):
        return defer.ensureDeferred(run(reactor, options.clusters, options.concurrency))

    def report(figures):
        text = json.dumps(figures, indent=2)
        print(text)
        if options.out:
            options.out.write_text(text + "\n")

    task.react(lambda reactor: go(reactor).addCallback(report))


if __name__ == "__main__":
    main()
