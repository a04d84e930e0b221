"""TLS connections that keep OpenSSL's memory buffers small.

Twisted's `TLSMemoryBIOProtocol` talks to OpenSSL through two memory BIOs.  A memory BIO grows to the
largest amount ever held at once and never gives that memory back: a 64 KiB socket read written in
one go, or one 16 KiB TLS record, leaves every connection that once saw it 16–64 KiB bigger for good.
With three long-lived TLS connections per simulated cluster (both tunnels, and Rancher's kept-alive
connection to the cluster's apiserver inside the main tunnel) that was ~30 KiB per cluster
(`benchmarks/scale.py --clusters 1000 --profile idle`: 314 → 286 KiB per cluster).

`SmallBufferTLSFactory` feeds received bytes to OpenSSL and hands it application bytes in pieces of
`PIECE` bytes, so neither BIO ever holds more than about one piece.  The price is more, smaller TLS
records on bulk transfers, which a simulated cluster rarely makes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

__all__ = ["PIECE", "SmallBufferTLSFactory", "SmallBufferTLSProtocol", "wrap_client_tls"]

#: bytes handed to OpenSSL at once, either way (a TLS record holds up to 16 KiB)
PIECE = 4096


class SmallBufferTLSProtocol(BufferingTLSTransport):
    """`BufferingTLSTransport` that moves data through OpenSSL in `PIECE`-sized steps."""

    def dataReceived(self, data: bytes) -> None:
        if not self._handshakeDone or len(data) <= PIECE:
            # During the handshake everything must reach the BIO before the handshake is retried.
            super().dataReceived(data)
            return
        for start in range(0, len(data), PIECE):
            if self._lostTLSConnection or self._aborted:
                return
            super().dataReceived(data[start : start + PIECE])

    def _write(self, data: bytes) -> None:
        if len(data) <= PIECE:
            super()._write(data)
            return
        for start in range(0, len(data), PIECE):
            waiting = len(self._appSendBuffer)
            super()._write(data[start : start + PIECE])
            if self._lostTLSConnection or self._aborted:
                return
            if len(self._appSendBuffer) > waiting:
                # OpenSSL could not take this piece (it waits for the peer): the rest queues behind it.
                rest = data[start + PIECE :]
                if rest:
                    self._appSendBuffer.append(rest)
                return


class SmallBufferTLSFactory(TLSMemoryBIOFactory):
    """`TLSMemoryBIOFactory` whose connections are `SmallBufferTLSProtocol`s."""

    protocol = SmallBufferTLSProtocol


@implementer(IStreamClientEndpoint)
class _SmallBufferTLSEndpoint:
    def __init__(self, creator: Any, wrapped: IStreamClientEndpoint, clock: Any) -> None:
        self._creator = creator
        self._wrapped = wrapped
        self._clock = clock

    def connect(self, factory: IProtocolFactory) -> Any:
        d = self._wrapped.connect(SmallBufferTLSFactory(self._creator, True, factory, clock=self._clock))
        d.addCallback(lambda tls: tls.wrappedProtocol)
        return d


def wrap_client_tls(creator: Any, wrapped: IStreamClientEndpoint, clock: Any = None) -> IStreamClientEndpoint:
    """Like `twisted.internet.endpoints.wrapClientTLS`, with small-buffer TLS connections.

    `clock` schedules the TLS layer's write flushes (default: the global reactor, as Twisted's)."""
    return _SmallBufferTLSEndpoint(creator, wrapped, clock)
