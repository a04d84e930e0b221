"""Throughput, round trips and memory of remotedialer tunnels, both ends ours, over wss:// on loopback.

    python benchmarks/tunnel.py [--megabytes 128] [--rtt-seconds 3] [--tunnels 500] [--out figures.json]

Two processes, as in production: this one is the client (agent) end; a child process (this script
with --serve) is the server (Rancher) end, driven by commands on its stdin.  Figures:
- throughput through one tunnel and one virtual connection, both directions (MB/s = 10**6 bytes/s),
  with the client process's CPU seconds per 100 MB;
- round trips per second (64-byte ping-pong) on 1 connection and on 50 concurrent connections;
- memory per idle tunnel (RSS delta over N open tunnels, each with its own factory, pinging every 5 s)
  on the client and on the server end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, protocol, task  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from zope.interface import implementer  # noqa: E402

CHUNK = 64 * 1024
PING = b"p" * 64


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@implementer(IPushProducer)
class Writer(protocol.Protocol):
    """Writes `total` bytes as a push producer, then closes (or keeps open)."""

    def __init__(self, reactor, total: int, close: bool = True) -> None:
        self.reactor = reactor
        self.total = total
        self.close = close
        self.sent = 0
        self.paused = False
        self.scheduled = False

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled and not self.paused and self.sent < self.total:
            self.scheduled = True
            self.reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        self.scheduled = False
        block = b"x" * CHUNK
        for _ in range(32):
            if self.paused or self.sent >= self.total:
                break
            n = min(CHUNK, self.total - self.sent)
            self.sent += n
            self.transport.write(block[:n])
        if self.sent >= self.total:
            self.transport.unregisterProducer()
            if self.close:
                self.transport.loseConnection()
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.paused = True


class Counter(protocol.Protocol):
    def __init__(self, expect: int = 0) -> None:
        self.expect = expect
        self.got = 0
        self.started = 0.0
        self.cpu_started = 0.0
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = cpu_seconds()

    def dataReceived(self, data: bytes) -> None:
        self.got += len(data)
        if self.expect and self.got >= self.expect and not self.done.called:
            self.done.callback((time.perf_counter() - self.started, cpu_seconds() - self.cpu_started))

    def connectionLost(self, reason) -> None:
        if not self.done.called:
            self.done.callback((time.perf_counter() - self.started, cpu_seconds() - self.cpu_started))


class Echo(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class PingPong(protocol.Protocol):
    def __init__(self, reactor, seconds: float, size: int) -> None:
        self.reactor = reactor
        self.deadline = time.perf_counter() + seconds
        self.payload = b"p" * size
        self.pending = 0
        self.count = 0
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.pending += len(data)
        if self.pending < len(self.payload):
            return
        self.pending -= len(self.payload)
        self.count += 1
        if time.perf_counter() < self.deadline:
            self.transport.write(self.payload)
        elif not self.done.called:
            self.done.callback(self.count)
            self.transport.loseConnection()


# ------------------------------------------------------------------------------------------- server end


def serve(reactor, pki_dir: Path) -> defer.Deferred:
    """The child: a TunnelServer on a loopback TLS port, driven by stdin commands, results on stdout."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import endpoints, ssl, stdio
    from twisted.protocols.basic import LineReceiver
    from twisted.web.server import Site

    from scaleagent.remotedialer.server import Refusal, TunnelServer

    options = ssl.CertificateOptions(
        privateKey=serialization.load_pem_private_key((pki_dir / "key.pem").read_bytes(), None),
        certificate=x509.load_pem_x509_certificate((pki_dir / "cert.pem").read_bytes()),
    )

    def authorize(request):
        key = request.getHeader("x-bench-key")
        return key if key else Refusal(401, "failed authentication")

    server = TunnelServer(reactor, authorize)
    site = Site(server.resource)
    site.noisy = False
    site.log = lambda request: None
    finished: defer.Deferred = defer.Deferred()

    def say(**fields) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            d = defer.maybeDeferred(getattr(self, "do_" + words[0]), *words[1:])
            d.addErrback(lambda f: say(error=f.getErrorMessage()))

        def do_rss(self) -> None:
            gc.collect()
            say(op="rss", kib=rss_kib(), sessions=sum(len(server.sessions(k)) for k in server.client_keys()))

        def do_down(self, key: str, total: str) -> None:
            writer = Writer(reactor, int(total))
            server.dial(key, "tcp", f"sink:{total}", protocol.Factory.forProtocol(lambda: writer))
            say(op="down", started=True)

        @defer.inlineCallbacks
        def do_up(self, key: str, total: str):
            counter = Counter()
            server.dial(key, "tcp", f"source:{total}", protocol.Factory.forProtocol(lambda: counter))
            seconds, cpu = yield counter.done
            say(op="up", bytes=counter.got, seconds=seconds, server_cpu=cpu)

        @defer.inlineCallbacks
        def do_rtt(self, key: str, seconds: str, size: str, concurrency: str):
            players = [PingPong(reactor, float(seconds), int(size)) for _ in range(int(concurrency))]
            started = time.perf_counter()
            for player in players:
                server.dial(key, "tcp", "echo:1", protocol.Factory.forProtocol(lambda p=player: p))
            counts = yield defer.gatherResults([p.done for p in players])
            say(op="rtt", round_trips=sum(counts), seconds=time.perf_counter() - started)

        def do_quit(self) -> None:
            server.stop()
            reactor.callLater(0.1, finished.callback, None)

        def connectionLost(self, reason) -> None:
            if not finished.called:
                server.stop()
                finished.callback(None)

    @defer.inlineCallbacks
    def run():
        port = yield endpoints.SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(site)
        say(op="port", port=port.getHost().port)
        stdio.StandardIO(Commands(), reactor=reactor)
        yield finished

    return run()


# ------------------------------------------------------------------------------------------- client end


class Child(protocol.ProcessProtocol):
    """The server process: commands go to its stdin, JSON results come back a line at a time."""

    def __init__(self) -> None:
        self.buffer = b""
        self.results: defer.DeferredQueue = defer.DeferredQueue()
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.results.put(json.loads(line))

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def processEnded(self, reason) -> None:
        self.ended.callback(None)

    def ask(self, command: str) -> defer.Deferred:
        self.transport.write(command.encode() + b"\n")
        return self.results.get()


def client_resolver(reactor, sinks: list):
    def resolve(proto: str, address: str):
        host, _, arg = address.partition(":")
        if host == "sink":
            counter = Counter(int(arg))
            sinks.append(counter)
            return protocol.Factory.forProtocol(lambda: counter)
        if host == "source":
            return protocol.Factory.forProtocol(lambda: Writer(reactor, int(arg)))
        if host == "echo":
            return protocol.Factory.forProtocol(Echo)
        return None

    return resolve


@defer.inlineCallbacks
def bench(reactor, args) -> defer.Deferred:
    from scaleagent.cluster.pki import load_or_create
    from scaleagent.remotedialer.websocket import connect_tunnel

    pki = load_or_create(None, host="127.0.0.1")
    tmp = Path(tempfile.mkdtemp(prefix="tunnel-bench-"))
    (tmp / "cert.pem").write_bytes(pki.cert_pem)
    (tmp / "key.pem").write_bytes(pki.key_pem)
    os.chmod(tmp / "key.pem", 0o600)
    child = Child()
    reactor.spawnProcess(child, sys.executable, [sys.executable, __file__, "--serve", str(tmp)],
                         env=os.environ.copy())
    port = (yield child.results.get())["port"]
    url = f"wss://127.0.0.1:{port}/v3/connect"
    figures: dict = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "megabytes": args.megabytes,
    }
    try:
        sinks: list[Counter] = []
        resolver = client_resolver(reactor, sinks)
        tunnel = yield connect_tunnel(reactor, url, {"X-Bench-Key": "bench"}, resolver,
                                      ca_pem=pki.ca_cert_pem, name="bench")
        total = args.megabytes * 1024 * 1024

        # Warm up both directions once (TLS, code paths), then measure.
        for size, label in ((4 * 1024 * 1024, None), (total, "down")):
            count = len(sinks)
            yield child.ask(f"down bench {size}")
            for _ in range(2000):
                if len(sinks) > count:
                    break
                yield task.deferLater(reactor, 0.005, lambda: None)
            seconds, cpu = yield sinks[-1].done
            if label:
                figures["down_MBps"] = round(size / seconds / 1e6, 1)
                figures["down_client_cpu_s_per_100MB"] = round(cpu / (size / 1e8), 2)
        for size, label in ((4 * 1024 * 1024, None), (total, "up")):
            cpu0 = cpu_seconds()
            result = yield child.ask(f"up bench {size}")
            if label:
                figures["up_MBps"] = round(result["bytes"] / result["seconds"] / 1e6, 1)
                figures["up_client_cpu_s_per_100MB"] = round((cpu_seconds() - cpu0) / (size / 1e8), 2)
        stats = tunnel.session.stats
        figures["pauses"] = {"client_sent": stats.pauses_sent, "client_received": stats.pauses_received}

        for concurrency in (1, 50):
            result = yield child.ask(f"rtt bench {args.rtt_seconds} {len(PING)} {concurrency}")
            rate = result["round_trips"] / result["seconds"]
            figures[f"round_trips_per_s_{concurrency}_conn"] = round(rate)

        tunnel.dropConnection(abort=True)
        yield tunnel.ended

        # Memory per idle tunnel: N tunnels, one factory each, as the agent holds them.
        yield task.deferLater(reactor, 0.5, lambda: None)
        gc.collect()
        client_before = rss_kib()
        server_before = (yield child.ask("rss"))["kib"]
        tunnels = []
        for start in range(0, args.tunnels, 50):
            batch = [
                connect_tunnel(reactor, url, {"X-Bench-Key": f"idle-{i}"}, resolver,
                               ca_pem=pki.ca_cert_pem, name=f"idle-{i}")
                for i in range(start, min(start + 50, args.tunnels))
            ]
            tunnels += (yield defer.gatherResults(batch))
        yield task.deferLater(reactor, 6, lambda: None)  # past the first pings
        gc.collect()
        client_after = rss_kib()
        server = yield child.ask("rss")
        assert server["sessions"] == args.tunnels, server
        figures["idle_tunnels"] = args.tunnels
        figures["client_KiB_per_idle_tunnel"] = round((client_after - client_before) / args.tunnels, 1)
        figures["server_KiB_per_idle_tunnel"] = round((server["kib"] - server_before) / args.tunnels, 1)
        for tunnel in tunnels:
            tunnel.dropConnection(abort=True)
        yield defer.gatherResults([t.ended for t in tunnels])
    finally:
        try:
            child.transport.write(b"quit\n")
        except Exception:
            pass
        yield child.ended
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=128, help="MiB per throughput run")
    parser.add_argument("--rtt-seconds", type=float, default=3.0)
    parser.add_argument("--tunnels", type=int, default=500, help="idle tunnels for the memory figure")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        task.react(lambda reactor: serve(reactor, args.serve))
        return

    def run(reactor):
        d = bench(reactor, args)

        def report(figures):
            text = json.dumps(figures, indent=2)
            print(text)
            if args.out:
                args.out.write_text(text + "\n")

        d.addCallback(report)
        return d

    task.react(run)


if __name__ == "__main__":
    main()
