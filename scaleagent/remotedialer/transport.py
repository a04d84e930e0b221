"""VirtualTransport: the Twisted transport of one remotedialer connection id.

A protocol attached to it (a raw protocol, an HTTPChannel, or a TLSMemoryBIOProtocol wrapping a Site)
cannot tell it from TCP: it has the TCP knobs HTTPChannel pokes through the TLS wrapper, an
`abortConnection` TLS calls on verification failure, producer registration for the write side, and a
push-producer read side so a busy protocol can stop the inflow (which becomes a PAUSE to the peer once
2 MiB is waiting).  `connectionLost` is always delivered once, and never from inside a call the
protocol made.

The session owns the connection table; this class talks to it through the small `Link` protocol below.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from typing import Protocol as TypingProtocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from scaleagent.redact import logger

__all__ = ["MAX_BUFFER", "MAX_DATA", "RESUME_BELOW", "Link", "VirtualTransport", "target_address"]

log = logger()

MAX_BUFFER = 1 << 21
"""Inbound bytes waiting for a paused protocol above which we send PAUSE (Go's `MaxBuffer`)."""

RESUME_BELOW = MAX_BUFFER // 8
"""Once fewer bytes than this wait, a connection we paused gets RESUME (Go's `MaxBuffer/8`)."""

MAX_DATA = 32 * 1024
"""Largest DATA payload we send; bigger writes are split so one connection cannot hog the tunnel."""


class Link(TypingProtocol):
    """What a transport needs from its session."""

    def send_data(self, conn_id: int, data: bytes) -> None: ...

    def send_error(self, conn_id: int, text: str) -> None: ...

    def send_pause(self, conn_id: int) -> None: ...

    def send_resume(self, conn_id: int) -> None: ...

    def forget(self, conn_id: int, transport: VirtualTransport) -> None: ...


def target_address(address: str) -> IPv4Address | IPv6Address:
    """A Twisted address for a remotedialer `host:port` (IPv6 hosts bracketed); port 0 if absent."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        host, port_text = address, "0"
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return IPv6Address("TCP", host, port)
    except ValueError:
        pass
    return IPv4Address("TCP", host, port)


@implementer(ITCPTransport, IConsumer, IPushProducer)
class VirtualTransport:
    """One virtual TCP connection inside a tunnel."""

    def __init__(
        self, link: Link, conn_id: int, host: IAddress, peer: IAddress, clock: IReactorTime
    ) -> None:
        self.conn_id = conn_id
        self.protocol: IProtocol | None = None
        self.connected = True
        self.disconnecting = False
        self.opened_at = clock.seconds()
        self._link = link
        self._host = host
        self._peer = peer
        self._clock = clock
        # Write side.
        self._wbuf: deque[bytes] = deque()
        self._peer_paused = False
        self._tunnel_paused = False
        self._producer: object | None = None
        self._streaming = False
        self._producer_paused = False
        self._pull_call: IDelayedCall | None = None
        # Read side.
        self._rbuf: deque[bytes] = deque()
        self._rbuf_size = 0
        self._reading_paused = False
        self._sent_pause = False
        self._draining = False
        # Closing.
        self._closed = False  # no more traffic on the wire for this id
        self._pending_loss: Failure | None = None
        self._lost = False

    def __repr__(self) -> str:
        return f"<VirtualTransport {self.conn_id} {self._host} <- {self._peer}>"

    # ---------------------------------------------------------------- ITransport

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if self._peer_paused or self._wbuf:
            self._wbuf.append(bytes(data))
            return
        self._send(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close after anything the peer's PAUSE held back has been sent; the peer sees EOF."""
        if self._closed or self.disconnecting:
            return
        self.disconnecting = True
        if not self._wbuf:
            self._close_locally("EOF", Failure(ConnectionDone("connection closed")))

    def abortConnection(self) -> None:
        """Close now, dropping queued bytes both ways."""
        if self._closed:
            return
        self.disconnecting = True
        self._wbuf.clear()
        self._rbuf.clear()
        self._rbuf_size = 0
        self._close_locally("connection aborted", Failure(ConnectionAborted("connection aborted")))

    def loseWriteConnection(self) -> None:
        """remotedialer has no half-close, so this does nothing; the connection stays open both ways."""

    def getPeer(self) -> IAddress:
        return self._peer

    def getHost(self) -> IAddress:
        return self._host

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Meaningless in a tunnel; HTTPChannel calls it through the TLS wrapper."""

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """Meaningless in a tunnel; the WebSocket pings keep it alive."""

    def getTcpKeepAlive(self) -> bool:
        return False

    # ---------------------------------------------------------------- IConsumer

    def registerProducer(self, producer: object, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer!r}, because producer {self._producer!r} "
                "was never unregistered."
            )
        if self._closed:
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if streaming:
            self._update_producer()
        else:
            self._schedule_pull()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._producer_paused = False
        if self._pull_call is not None and self._pull_call.active():
            self._pull_call.cancel()
        self._pull_call = None

    def _schedule_pull(self) -> None:
        if self._pull_call is None or not self._pull_call.active():
            self._pull_call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        """Drive a pull producer: ask for more whenever the peer and the tunnel take data."""
        self._pull_call = None
        producer = self._producer
        if producer is None or self._streaming or self._closed:
            return
        if self._peer_paused or self._tunnel_paused:
            return  # _update_producer reschedules us
        producer.resumeProducing()  # type: ignore[attr-defined]
        if self._producer is producer:
            self._schedule_pull()

    def _update_producer(self) -> None:
        producer = self._producer
        if producer is None:
            return
        if not self._streaming:
            if not (self._peer_paused or self._tunnel_paused):
                self._schedule_pull()
            return
        should_pause = self._peer_paused or self._tunnel_paused or bool(self._wbuf)
        if should_pause and not self._producer_paused:
            self._producer_paused = True
            producer.pauseProducing()  # type: ignore[attr-defined]
        elif not should_pause and self._producer_paused:
            self._producer_paused = False
            producer.resumeProducing()  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- IPushProducer (read side)

    def pauseProducing(self) -> None:
        """Stop delivering inbound bytes; they wait here, and over 2 MiB the peer gets PAUSE."""
        self._reading_paused = True

    def resumeProducing(self) -> None:
        self._reading_paused = False
        self._drain()

    def stopProducing(self) -> None:
        self.abortConnection()

    # ---------------------------------------------------------------- session entry points

    @property
    def attachable(self) -> bool:
        """False once nothing could reach a protocol any more (closed, nothing left to hand over)."""
        return not self._lost and self.protocol is None

    def attach(self, protocol: IProtocol) -> None:
        """Connect `protocol` and hand it anything that arrived before it existed."""
        self.protocol = protocol
        try:
            protocol.makeConnection(self)
        except Exception:
            log.failure("connection {conn_id}: connectionMade failed", conn_id=self.conn_id)
            self.abortConnection()
            return
        self._drain()

    def data_from_peer(self, data: bytes) -> None:
        """A DATA message for this connection."""
        if self._lost or self._pending_loss is not None:
            return
        if self.protocol is None or self._reading_paused or self._rbuf or self._draining:
            self._rbuf.append(data)
            self._rbuf_size += len(data)
            if self._rbuf_size > MAX_BUFFER and not self._sent_pause and not self._closed:
                self._sent_pause = True
                self._link.send_pause(self.conn_id)
            if self.protocol is not None and not self._reading_paused:
                self._drain()
            return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        """dataReceived, with TCP's answer to a protocol that raises: the connection is aborted."""
        try:
            self.protocol.dataReceived(data)  # type: ignore[union-attr]
        except Exception:
            log.failure("connection {conn_id}: dataReceived failed, aborting", conn_id=self.conn_id)
            self.abortConnection()

    def closed_by_peer(self, reason: Failure) -> None:
        """The peer sent ERROR (EOF or not), or dropped this id: no reply goes out.

        Bytes already received still reach a paused protocol before `connectionLost`, as with TCP.
        """
        if self._lost or self._pending_loss is not None:
            return
        self._closed = True
        self.connected = False
        self._wbuf.clear()
        self._pending_loss = reason
        if not self._rbuf:
            self._schedule_loss()
        elif self.protocol is not None and not self._reading_paused:
            self._drain()
        # Otherwise the loss follows the last queued byte, in attach() or resumeProducing().

    def refused(self) -> None:
        """The connection never got a protocol (its target was refused): forget it silently."""
        self._closed = True
        self.connected = False
        self._lost = True
        self._rbuf.clear()
        self._rbuf_size = 0
        self._wbuf.clear()
        self._pending_loss = None

    def tunnel_closed(self, reason: Failure) -> None:
        """The WebSocket is gone: lose the connection now, whatever is still queued."""
        if self._lost:
            return
        self._rbuf.clear()
        self._rbuf_size = 0
        self._wbuf.clear()
        self._closed = True
        self.connected = False
        self._pending_loss = reason
        self._schedule_loss()

    def peer_paused(self, paused: bool) -> None:
        """PAUSE/RESUME from the peer: hold our DATA for this id, and pause our producer."""
        self._peer_paused = paused
        if not paused:
            self._flush_wbuf()
        self._update_producer()

    def tunnel_paused(self, paused: bool) -> None:
        """The WebSocket's send buffer is full (or drained): pause (or resume) our producer."""
        self._tunnel_paused = paused
        self._update_producer()

    # ---------------------------------------------------------------- internals

    def _send(self, data: bytes) -> None:
        if len(data) <= MAX_DATA:
            self._link.send_data(self.conn_id, bytes(data))
            return
        view = memoryview(data)
        for start in range(0, len(view), MAX_DATA):
            self._link.send_data(self.conn_id, bytes(view[start : start + MAX_DATA]))

    def _flush_wbuf(self) -> None:
        while self._wbuf and not self._peer_paused and not self._closed:
            self._send(self._wbuf.popleft())
        if not self._wbuf and self.disconnecting and not self._closed:
            self._close_locally("EOF", Failure(ConnectionDone("connection closed")))

    def _drain(self) -> None:
        if self._draining or self.protocol is None:
            return
        self._draining = True
        try:
            while self._rbuf and not self._reading_paused and not self._lost:
                chunk = self._rbuf.popleft()
                self._rbuf_size -= len(chunk)
                if self._sent_pause and self._rbuf_size < RESUME_BELOW and not self._closed:
                    self._sent_pause = False
                    self._link.send_resume(self.conn_id)
                self._deliver(chunk)
        finally:
            self._draining = False
        if not self._rbuf and self._pending_loss is not None:
            self._schedule_loss()

    def _close_locally(self, error_text: str, reason: Failure) -> None:
        """We end the connection: tell the peer, leave the table, then tell the protocol."""
        self._closed = True
        self.connected = False
        self._link.send_error(self.conn_id, error_text)
        self._link.forget(self.conn_id, self)
        self._rbuf.clear()
        self._rbuf_size = 0
        self._pending_loss = reason
        self._schedule_loss()

    def _schedule_loss(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._clock.callLater(0, self._deliver_loss)

    def _deliver_loss(self) -> None:
        reason = self._pending_loss or Failure(ConnectionDone("connection closed"))
        self._pending_loss = None
        producer, self._producer = self._producer, None
        if self._pull_call is not None and self._pull_call.active():
            self._pull_call.cancel()
        if producer is not None:
            try:
                producer.stopProducing()  # type: ignore[attr-defined]
            except Exception:
                log.failure("producer of connection {conn_id} failed to stop", conn_id=self.conn_id)
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(reason)
