"""Session: one tunnel's connection table and the remotedialer protocol rules, for either end.

No sockets here: the WebSocket layer hands each binary message to `message_received`, tells us about
pings/pongs (`keepalive_received`) and its own send buffer (`pause_writing`/`resume_writing`), and we
talk back through callbacks (`send`, `ping`, `disconnect`).  Time comes from the clock passed in, so
every rule is tested with `task.Clock`.

Rules (rancher-protocol.md §3.3-§3.6, checked against rancher/remotedialer):
- Every CONNECT is accepted into the table first, so DATA right behind it is kept in order; the
  resolver then names a protocol factory, or the connection gets its own ERROR and the session lives on.
- ERROR "EOF" closes a connection cleanly, any other text loses it with that text; an ERROR for an
  unknown id is ignored (the peer's echo of our own close), DATA for an unknown id is answered with ERROR.
- A message that does not decode is dropped and counted; the next one is served.
- PAUSE/RESUME from the peer hold and release our DATA on that id; we send PAUSE when more than 2 MiB
  waits for a paused protocol and RESUME below 256 KiB (see transport.py).
- Client end: a WebSocket ping every 5 s and SYNC_CONNECTIONS (sorted ids) every 60 s; the session ends
  when no pong came for 60 s.  Server end: connection ids from 2, connections missing from a
  SYNC_CONNECTIONS dropped silently, the session ends when no ping came for 60 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from scaleagent.redact import logger
from scaleagent.remotedialer import frames
from scaleagent.remotedialer.frames import FrameError, Message, MessageType
from scaleagent.remotedialer.transport import VirtualTransport, target_address

__all__ = [
    "KEEPALIVE_TIMEOUT",
    "PING_INTERVAL",
    "SYNC_GRACE",
    "SYNC_INTERVAL",
    "Resolver",
    "Session",
    "SessionClosed",
    "SessionStats",
]

log = logger()

PING_INTERVAL = 5.0
"""Client: seconds between WebSocket pings (Go's `PingWriteInterval`)."""

SYNC_INTERVAL = 60.0
"""Client: seconds between SYNC_CONNECTIONS messages (Go's `SyncConnectionsInterval`)."""

KEEPALIVE_TIMEOUT = 60.0
"""Seconds without a ping (server) or pong (client) after which the session ends (`PingWaitDuration`)."""

SYNC_GRACE = 5.0
"""Server: a connection dialled this recently survives a SYNC_CONNECTIONS that omits it, because the
client may have written the list before our CONNECT reached it (Go has that race; we avoid it)."""

BAD_MESSAGE_LOG_INTERVAL = 10.0

Resolver = Callable[[str, str], "IProtocolFactory | None | defer.Deferred[IProtocolFactory | None]"]
"""(proto, address) of a CONNECT -> the factory to serve it, or None to refuse (may be a Deferred)."""


class SessionClosed(ConnectionError):
    """The session (its WebSocket) is gone; nothing can be dialled through it."""


@dataclass
class SessionStats:
    """Counters for tests, logs and metrics."""

    messages_received: int = 0
    messages_sent: int = 0
    bad_messages: int = 0
    unknown_messages: int = 0
    connects_accepted: int = 0
    connects_refused: int = 0
    pauses_sent: int = 0
    resumes_sent: int = 0
    pauses_received: int = 0
    resumes_received: int = 0
    errors_for_unknown_ids: int = 0
    data_for_unknown_ids: int = 0
    synced_away: int = 0
    syncs_sent: int = 0
    syncs_received: int = 0
    pings_sent: int = 0
    keepalives_received: int = 0


def _refusal_text(proto: str, address: str) -> str:
    return f"dial {proto} {address}: connection refused"


class Session:
    """The connection table of one tunnel, for the client (agent) or the server (Rancher) end."""

    def __init__(
        self,
        *,
        client: bool,
        send: Callable[[bytes], None],
        clock: IReactorTime,
        resolver: Resolver | None = None,
        ping: Callable[[], None] | None = None,
        disconnect: Callable[[str], None] | None = None,
        name: str = "",
        local_address: IAddress | None = None,
        remote_address: IAddress | None = None,
        ping_interval: float = PING_INTERVAL,
        sync_interval: float = SYNC_INTERVAL,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        sync_grace: float = SYNC_GRACE,
    ) -> None:
        """`send` writes one binary WebSocket message; `ping` sends an empty WebSocket ping;
        `disconnect(why)` drops the WebSocket (which must then call `close`).  `name` labels logs
        and the "connection not found" errors (the client key on the server end)."""
        self.client = client
        self.name = name
        self.stats = SessionStats()
        self.closed = False
        self._send_raw = send
        self._clock = clock
        self._resolver = resolver
        self._ping = ping
        self._disconnect = disconnect
        self._local = local_address or IPv4Address("TCP", "127.0.0.1", 0)
        self._remote = remote_address or IPv4Address("TCP", "127.0.0.1", 0)
        self._ping_interval = ping_interval
        self._sync_interval = sync_interval
        self._keepalive_timeout = keepalive_timeout
        self._sync_grace = sync_grace
        self._conns: dict[int, VirtualTransport] = {}
        self._next_conn_id = 1  # incremented before use: the first id is 2, as in Go
        self._write_paused = False
        self._timers: list[LoopingCall] = []
        self._watchdog: IDelayedCall | None = None
        self._bad_logged_at: float | None = None
        self._bad_since_log = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the timers: the keepalive watchdog, and on the client the ping and sync loops."""
        if self.closed:
            return
        self._arm_watchdog()
        if self.client:
            for interval, tick in ((self._ping_interval, self._send_ping), (self._sync_interval, self.sync)):
                loop = LoopingCall(tick)
                loop.clock = self._clock
                loop.start(interval, now=False)
                self._timers.append(loop)

    def close(self, reason: Failure | str = "tunnel disconnect", notify_peer: bool = False) -> None:
        """End the session: every connection sees `connectionLost(reason)`.

        With `notify_peer` (a deliberate stop while the WebSocket still works) each connection's
        peer also gets ERROR "tunnel disconnect", as Go's `Session.Close` sends.
        """
        if self.closed:
            return
        if not isinstance(reason, Failure):
            reason = Failure(ConnectionLost(reason))
        if notify_peer:
            for conn_id in sorted(self._conns):
                self.send_error(conn_id, "tunnel disconnect")
        self.closed = True
        self._stop_timers()
        conns, self._conns = self._conns, {}
        for transport in conns.values():
            transport.tunnel_closed(reason)

    def _stop_timers(self) -> None:
        for loop in self._timers:
            if loop.running:
                loop.stop()
        self._timers = []
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    # ------------------------------------------------------------------ keepalive

    def keepalive_received(self) -> None:
        """A ping (server end) or pong (client end) arrived: the peer is alive for another 60 s."""
        self.stats.keepalives_received += 1
        if not self.closed:
            self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self._keepalive_timeout)
        else:
            self._watchdog = self._clock.callLater(self._keepalive_timeout, self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        self._watchdog = None
        what = "pong" if self.client else "ping"
        why = f"no {what} for {self._keepalive_timeout:g} s"
        log.warn("tunnel {name}: {why}, ending the session", name=self.name, why=why)
        if self._disconnect is not None:
            self._disconnect(why)
        self.close(why)

    def _send_ping(self) -> None:
        if self._ping is not None and not self.closed:
            self.stats.pings_sent += 1
            self._ping()

    def sync(self) -> None:
        """Send SYNC_CONNECTIONS with the ids of every open connection, sorted ascending."""
        if self.closed:
            return
        payload = frames.encode_connection_ids(self._conns)
        self.stats.syncs_sent += 1
        self._send(Message(frames.next_message_id(), 0, MessageType.SYNC_CONNECTIONS, payload))

    # ------------------------------------------------------------------ backpressure from the WebSocket

    def pause_writing(self) -> None:
        """The WebSocket's send buffer is full: pause every connection's producer."""
        if self._write_paused:
            return
        self._write_paused = True
        for transport in list(self._conns.values()):
            transport.tunnel_paused(True)

    def resume_writing(self) -> None:
        if not self._write_paused:
            return
        self._write_paused = False
        for transport in list(self._conns.values()):
            transport.tunnel_paused(False)

    # ------------------------------------------------------------------ the table

    @property
    def connections(self) -> dict[int, VirtualTransport]:
        """Open connections by id (a copy)."""
        return dict(self._conns)

    def connection_ids(self) -> list[int]:
        return sorted(self._conns)

    def dial(self, proto: str, address: str, factory: IProtocolFactory) -> IProtocol:
        """Server end: open a connection to `proto/address` at the client and connect a protocol
        from `factory` to it.  Like Go's Dial there is no acknowledgement: a refusal arrives later as
        `connectionLost` with the peer's error text.  Raises `SessionClosed` after the tunnel ended."""
        if self.client:
            raise RuntimeError("only the server end of a tunnel dials")
        if self.closed:
            raise SessionClosed(f"tunnel {self.name} is closed")
        payload = frames.connect_payload(proto, address)
        self._next_conn_id += 1
        conn_id = self._next_conn_id
        local = IPv4Address("TCP", getattr(self._local, "host", "127.0.0.1"), 32768 + conn_id % 28000)
        transport = self._new_transport(conn_id, host=local, peer=target_address(address))
        self._send(Message(frames.next_message_id(), conn_id, MessageType.CONNECT, payload))
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            transport.abortConnection()
            raise ConnectionError(f"{factory!r} built no protocol for {proto}/{address}")
        transport.attach(protocol)
        return protocol

    def _new_transport(self, conn_id: int, host: IAddress, peer: IAddress) -> VirtualTransport:
        transport = VirtualTransport(self, conn_id, host, peer, self._clock)
        if self._write_paused:
            transport.tunnel_paused(True)
        self._conns[conn_id] = transport
        return transport

    # ------------------------------------------------------------------ Link (used by VirtualTransport)

    def send_data(self, conn_id: int, data: bytes) -> None:
        self._send(Message(frames.next_message_id(), conn_id, MessageType.DATA, data))

    def send_error(self, conn_id: int, text: str) -> None:
        self._send(Message(frames.next_message_id(), conn_id, MessageType.ERROR, text.encode()))

    def send_pause(self, conn_id: int) -> None:
        self.stats.pauses_sent += 1
        self._send(Message(frames.next_message_id(), conn_id, MessageType.PAUSE, b""))

    def send_resume(self, conn_id: int) -> None:
        self.stats.resumes_sent += 1
        self._send(Message(frames.next_message_id(), conn_id, MessageType.RESUME, b""))

    def forget(self, conn_id: int, transport: VirtualTransport) -> None:
        if self._conns.get(conn_id) is transport:
            del self._conns[conn_id]

    def _send(self, message: Message) -> None:
        if self.closed:
            return
        self.stats.messages_sent += 1
        self._send_raw(frames.encode(message))

    # ------------------------------------------------------------------ inbound

    def message_received(self, data: bytes) -> None:
        """One binary WebSocket message from the peer."""
        if self.closed:
            return
        self.stats.messages_received += 1
        try:
            message = frames.decode(data)
        except FrameError as exc:
            self._bad_message(str(exc))
            return
        handler = self._HANDLERS.get(message.type)
        if handler is None:
            self.stats.unknown_messages += 1
            return
        try:
            handler(self, message)
        except Exception:
            # A local protocol's bug must not end the tunnel for every other connection.
            log.failure("tunnel {name}: failed to handle message type {type} for connection {conn_id}",
                        name=self.name, type=message.type, conn_id=message.conn_id)

    def _bad_message(self, why: str) -> None:
        self.stats.bad_messages += 1
        self._bad_since_log += 1
        now = self._clock.seconds()
        if self._bad_logged_at is None or now - self._bad_logged_at >= BAD_MESSAGE_LOG_INTERVAL:
            log.warn(
                "tunnel {name}: dropped {count} malformed message(s), latest: {why}",
                name=self.name,
                count=self._bad_since_log,
                why=why,
            )
            self._bad_logged_at = now
            self._bad_since_log = 0

    def _on_data(self, message: Message) -> None:
        transport = self._conns.get(message.conn_id)
        if transport is None:
            self.stats.data_for_unknown_ids += 1
            self.send_error(message.conn_id, f"connection not found {self.name}/{message.conn_id}")
            return
        transport.data_from_peer(message.payload)

    def _on_connect(self, message: Message) -> None:
        conn_id = message.conn_id
        old = self._conns.pop(conn_id, None)
        if old is not None:
            old.closed_by_peer(Failure(ConnectionLost(f"connection id {conn_id} reused by the peer")))
        try:
            proto, address = frames.parse_connect(message.payload)
        except FrameError as exc:
            self.stats.connects_refused += 1
            self.send_error(conn_id, str(exc))
            return
        peer_host = getattr(self._remote, "host", "127.0.0.1")
        peer = IPv4Address("TCP", peer_host, 32768 + conn_id % 28000)
        transport = self._new_transport(conn_id, host=target_address(address), peer=peer)
        if self._resolver is None:
            self._refuse(transport, "connect not allowed")
            return
        try:
            result: Any = self._resolver(proto, address)
        except Exception:
            log.failure("tunnel {name}: resolver failed for {proto}/{address}", name=self.name,
                        proto=proto, address=address)
            self._refuse(transport, _refusal_text(proto, address))
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(
                lambda factory: self._connect(transport, factory, proto, address),
                lambda failure: self._resolver_failed(failure, transport, proto, address),
            )
        else:
            self._connect(transport, result, proto, address)

    def _resolver_failed(
        self, failure: Failure, transport: VirtualTransport, proto: str, address: str
    ) -> None:
        log.failure("tunnel {name}: resolver failed for {proto}/{address}", failure, name=self.name,
                    proto=proto, address=address)
        self._refuse(transport, _refusal_text(proto, address))

    def _connect(self, transport: VirtualTransport, factory: Any, proto: str, address: str) -> None:
        if factory is None:
            self._refuse(transport, _refusal_text(proto, address))
            return
        if not transport.attachable:
            return  # closed (ERROR, sync, tunnel end) while the resolver was thinking
        try:
            protocol = factory.buildProtocol(transport.getPeer())
        except Exception:
            log.failure("tunnel {name}: {factory} failed to build a protocol", name=self.name,
                        factory=factory)
            protocol = None
        if protocol is None:
            self._refuse(transport, _refusal_text(proto, address))
            return
        self.stats.connects_accepted += 1
        transport.attach(protocol)

    def _refuse(self, transport: VirtualTransport, text: str) -> None:
        self.stats.connects_refused += 1
        if self._conns.get(transport.conn_id) is transport:
            del self._conns[transport.conn_id]
            self.send_error(transport.conn_id, text)
        transport.refused()

    def _on_error(self, message: Message) -> None:
        transport = self._conns.pop(message.conn_id, None)
        if transport is None:
            self.stats.errors_for_unknown_ids += 1
            return
        text = frames.error_text(message.payload)
        if text == "EOF":
            reason = Failure(ConnectionDone("closed by the peer"))
        else:
            reason = Failure(ConnectionLost(text))
        transport.closed_by_peer(reason)

    def _on_pause(self, message: Message) -> None:
        self.stats.pauses_received += 1
        transport = self._conns.get(message.conn_id)
        if transport is not None:
            transport.peer_paused(True)

    def _on_resume(self, message: Message) -> None:
        self.stats.resumes_received += 1
        transport = self._conns.get(message.conn_id)
        if transport is not None:
            transport.peer_paused(False)

    def _on_sync(self, message: Message) -> None:
        if self.client:
            return  # only clients send it
        self.stats.syncs_received += 1
        try:
            alive = frames.decode_connection_ids(message.payload)
        except FrameError as exc:
            self._bad_message(str(exc))
            return
        self.drop_missing(alive)

    def drop_missing(self, alive: Iterable[int]) -> None:
        """Server end: silently lose every connection the client no longer has (except fresh ones)."""
        keep = set(alive)
        cutoff = self._clock.seconds() - self._sync_grace
        for conn_id, transport in list(self._conns.items()):
            if conn_id in keep or transport.opened_at > cutoff:
                continue
            del self._conns[conn_id]
            self.stats.synced_away += 1
            transport.closed_by_peer(Failure(ConnectionLost("sync from client")))

    def _ignore(self, message: Message) -> None:
        """ADD_CLIENT/REMOVE_CLIENT are for Rancher peers; an agent has none."""

    _HANDLERS: dict[int, Callable[[Session, Message], None]] = {
        MessageType.DATA: _on_data,
        MessageType.CONNECT: _on_connect,
        MessageType.ERROR: _on_error,
        MessageType.ADD_CLIENT: _ignore,
        MessageType.REMOVE_CLIENT: _ignore,
        MessageType.PAUSE: _on_pause,
        MessageType.RESUME: _on_resume,
        MessageType.SYNC_CONNECTIONS: _on_sync,
    }
