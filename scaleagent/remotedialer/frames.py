"""remotedialer messages as bytes and back, exactly as Rancher's Go library writes them.

A message is one binary WebSocket message: signed zigzag varints (Go's `binary.PutVarint`) for the
message id, the connection id and the type; on DATA and CONNECT a legacy deadline varint (Go writes
15000 and every reader discards it); then the payload up to the end of the WebSocket message.

`decode` checks structure only and raises `FrameError` for anything malformed, never another
exception, so a session can drop one bad message and go on.  Payload meanings (a CONNECT's
`proto/address`, a SYNC_CONNECTIONS id list) are read by separate helpers that raise `FrameError` too,
so a session can refuse just the one connection.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CONNECT_PAYLOAD_LIMIT",
    "ERROR_PAYLOAD_LIMIT",
    "LEGACY_DEADLINE_MS",
    "FrameError",
    "Message",
    "MessageType",
    "connect_payload",
    "decode",
    "decode_connection_ids",
    "encode",
    "encode_connection_ids",
    "error_text",
    "next_message_id",
    "parse_connect",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_MAX_VARINT_LEN = 10

LEGACY_DEADLINE_MS = 15000
"""What Go writes in the deadline field of DATA and CONNECT; readers ignore the value."""

CONNECT_PAYLOAD_LIMIT = 266
"""Go reads at most this many bytes of a CONNECT payload."""

ERROR_PAYLOAD_LIMIT = 100
"""Go reads at most this many bytes of an ERROR payload."""


class MessageType(IntEnum):
    """The remotedialer message types (a Go `iota` starting at 1)."""

    DATA = 1
    CONNECT = 2
    ERROR = 3
    ADD_CLIENT = 4
    REMOVE_CLIENT = 5
    PAUSE = 6
    RESUME = 7
    SYNC_CONNECTIONS = 8


_WITH_DEADLINE = frozenset((MessageType.DATA, MessageType.CONNECT))


class FrameError(ValueError):
    """A message or payload that does not follow the remotedialer wire format."""


@dataclass(frozen=True, slots=True)
class Message:
    """One remotedialer message.  `type` stays a plain int after decode: unknown types survive."""

    id: int
    conn_id: int
    type: int
    payload: bytes = b""


def _put_varint(out: bytearray, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise FrameError(f"value {value} is outside the int64 range")
    u = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Read one Go varint at `pos`; return (value, next position)."""
    u = 0
    shift = 0
    end = len(data)
    for i in range(_MAX_VARINT_LEN):
        if pos >= end:
            if i == 0:
                raise FrameError(f"missing {what} varint")
            raise FrameError(f"truncated {what} varint")
        b = data[pos]
        pos += 1
        if b < 0x80:
            if i == _MAX_VARINT_LEN - 1 and b > 1:
                raise FrameError(f"over-long {what} varint (overflows 64 bits)")
            u |= b << shift
            value = (u >> 1) ^ -(u & 1)
            return value, pos
        u |= (b & 0x7F) << shift
        shift += 7
    raise FrameError(f"over-long {what} varint (more than {_MAX_VARINT_LEN} bytes)")


def encode(message: Message) -> bytes:
    """The bytes of one binary WebSocket message carrying `message`.

    Raises `FrameError` when an id or the type is outside the int64 range.
    """
    out = bytearray()
    _put_varint(out, message.id)
    _put_varint(out, message.conn_id)
    _put_varint(out, message.type)
    if message.type in _WITH_DEADLINE:
        out += b"\xb0\xea\x01"  # zigzag varint of LEGACY_DEADLINE_MS
    return bytes(out) + message.payload  # the payload is copied once, not into the header and again


def decode(data: bytes) -> Message:
    """Parse one binary WebSocket message.  Raises `FrameError` (only) when it is malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FrameError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise FrameError("empty message")
    msg_id, pos = _read_varint(data, 0, "message id")
    conn_id, pos = _read_varint(data, pos, "connection id")
    mtype, pos = _read_varint(data, pos, "message type")
    if mtype in _WITH_DEADLINE:
        _, pos = _read_varint(data, pos, "deadline")
    return Message(msg_id, conn_id, mtype, data[pos:])


_ids = itertools.count(random.getrandbits(62))


def next_message_id() -> int:
    """A process-wide message counter, starting at a random value as Go's does; receivers ignore it."""
    value = next(_ids)
    # Go's atomic int64 wraps; stay in range the same way.
    return ((value - INT64_MIN) % (1 << 64)) + INT64_MIN


def connect_payload(proto: str, address: str) -> bytes:
    """The payload of a CONNECT for `proto` (e.g. "tcp") and `address` (e.g. "10.43.0.1:443")."""
    if not proto or "/" in proto:
        raise FrameError(f"invalid protocol {proto!r}")
    try:
        payload = f"{proto}/{address}".encode()
    except UnicodeEncodeError as exc:
        raise FrameError(f"connect target {address!r} is not encodable as UTF-8") from exc
    if len(payload) > CONNECT_PAYLOAD_LIMIT:
        raise FrameError(f"connect target longer than {CONNECT_PAYLOAD_LIMIT} bytes")
    return payload


def parse_connect(payload: bytes) -> tuple[str, str]:
    """Split a CONNECT payload into (proto, address) at the first "/"; `FrameError` if it cannot."""
    if len(payload) > CONNECT_PAYLOAD_LIMIT:
        raise FrameError(f"connect target longer than {CONNECT_PAYLOAD_LIMIT} bytes")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("connect target is not UTF-8") from exc
    proto, sep, address = text.partition("/")
    if not sep:
        raise FrameError(f"failed to parse connect address {text!r}: no '/'")
    if not proto or not address:
        raise FrameError(f"failed to parse connect address {text!r}: empty protocol or address")
    return proto, address


def error_text(payload: bytes) -> str:
    """The text of an ERROR payload, read as Go does (at most 100 bytes); "EOF" means a clean close."""
    return bytes(payload[:ERROR_PAYLOAD_LIMIT]).decode("utf-8", "replace")


def encode_connection_ids(ids: Iterable[int]) -> bytes:
    """A SYNC_CONNECTIONS payload: the ids sorted ascending (Go's receiver merges sorted lists),
    each as a little-endian 64-bit integer."""
    ordered = sorted(ids)
    for value in ordered:
        if not INT64_MIN <= value <= INT64_MAX:
            raise FrameError(f"connection id {value} is outside the int64 range")
    return struct.pack(f"<{len(ordered)}q", *ordered)


def decode_connection_ids(payload: bytes) -> list[int]:
    """The ids of a SYNC_CONNECTIONS payload, in the order sent; `FrameError` unless a multiple of 8."""
    if len(payload) % 8:
        raise FrameError(f"incorrect data format: {len(payload)} bytes is not a multiple of 8")
    return list(struct.unpack(f"<{len(payload) // 8}q", payload))
