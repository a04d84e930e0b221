"""Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) to and from JSON dicts.

Typed Go clients (client-go ≥ 0.32: kubectl's `create …`/`auth …`, Rancher's downstream K8sClient) send
protobuf and never fall back to JSON, so the simulated apiserver must read it.  A body is the magic
`k8s\\0` followed by a `runtime.Unknown` {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding,
4 contentType}; `raw` is the object's own message.  `decode` turns a body into the same dict a JSON
client would have sent; `encode` is its inverse and writes what Go's generated marshallers write
(fields in number order, value fields always, map entries sorted by key), so for a body Go produced,
`encode(decode(body)) == body`.  The field maps are data in `protofields.py`.

Errors are `ApiError`s: a malformed body is 400 BadRequest, a kind we have no map for is 415
UnsupportedMediaType naming the kind.  Nothing here raises anything else on bad input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from scaleagent.apiserver.protofields import ANY_VERSION_KINDS, KINDS, MESSAGES, Field
from scaleagent.apiserver.status import ApiError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

_BY_NUMBER: dict[str, dict[int, Field]] = {
    name: {f.number: f for f in fields} for name, fields in MESSAGES.items()
}
_VARINT_TYPES = frozenset({"int32", "int64", "bool"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The syntax resource.ParseQuantity accepts (apimachinery's own check, as a regular expression).
_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE]|)$")
_MASK64 = (1 << 64) - 1


class ProtobufDecodeError(ApiError):
    """A body that is not a well-formed Kubernetes protobuf message: 400 BadRequest."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, "BadRequest", f"unable to decode protobuf request body: {detail}")


class UnsupportedKindError(ApiError):
    """A well-formed envelope around a kind this server cannot read as protobuf: 415."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(
            415,
            "UnsupportedMediaType",
            f'the body of the request was in an unknown format: protobuf for kind "{kind}" '
            f'(apiVersion "{api_version}") is not supported; send application/json',
            kind=kind,
        )
        self.api_version = api_version


class ProtobufEncodeError(ValueError):
    """A dict that cannot be written as the message it claims to be (a caller's bug)."""


class _Malformed(Exception):
    pass


class Envelope(NamedTuple):
    api_version: str
    kind: str
    raw: bytes
    content_encoding: str
    content_type: str


def is_protobuf(content_type: str | None) -> bool:
    """Whether a Content-Type header names the Kubernetes protobuf encoding."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


def message_for(api_version: str, kind: str) -> str | None:
    """The message name for a top-level (apiVersion, kind), or None when there is no field map."""
    name = KINDS.get((api_version, kind))
    if name is None and api_version:
        name = ANY_VERSION_KINDS.get(kind)
    return name


def supported_kinds() -> list[tuple[str, str]]:
    """Every (apiVersion, kind) `decode` reads (DeleteOptions: under any apiVersion)."""
    return sorted(KINDS)


# --- wire format -------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise _Malformed("unexpected end of data in a varint")
        if shift >= 64:
            raise _Malformed("varint overflows 64 bits")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7


def _iter_fields(data: bytes):
    """Yield (field number, wire type, value); value is an int, or bytes for length-delimited."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number <= 0 or number > 0x1FFFFFFF:
            raise _Malformed(f"illegal field number {number}")
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if length > end - pos:
                raise _Malformed(f"field {number}: length {length} runs past the end")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            if end - pos < 8:
                raise _Malformed("unexpected end of data in a fixed64")
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            if end - pos < 4:
                raise _Malformed("unexpected end of data in a fixed32")
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        elif wire == 3:
            pos = _skip_group(data, pos, number)
            continue
        else:
            raise _Malformed(f"illegal wire type {wire} for field {number}")
        yield number, wire, value


def _skip_group(data: bytes, pos: int, number: int) -> int:
    """Skip a (deprecated) group up to its end tag, as Go's skip function does for unknown fields."""
    depth = 1
    end = len(data)
    while depth:
        if pos >= end:
            raise _Malformed("unexpected end of data in a group")
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire == 3:
            depth += 1
        elif wire == 4:
            depth -= 1
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed(f"illegal wire type {wire} inside group {number}")
        if pos > end:
            raise _Malformed("unexpected end of data in a group")
    return pos


def _varint(value: int) -> bytes:
    value &= _MASK64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _ld(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# --- envelope -----------------------------------------------------------------------------------


def decode_envelope(body: bytes) -> Envelope:
    """Split a protobuf body into its type meta and raw object bytes (400 if malformed)."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise ProtobufDecodeError("body is not bytes")
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise ProtobufDecodeError("the body does not start with the protobuf magic k8s\\0")
    api_version = kind = content_encoding = content_type = ""
    raw = b""
    try:
        for number, wire, value in _iter_fields(body[len(MAGIC) :]):
            if number in (1, 2, 3, 4) and wire != 2:
                raise _Malformed(f"wrong wire type {wire} for runtime.Unknown field {number}")
            if number == 1:
                for n, w, v in _iter_fields(value):
                    if n in (1, 2):
                        if w != 2:
                            raise _Malformed(f"wrong wire type {w} for TypeMeta field {n}")
                        if n == 1:
                            api_version = _text(v)
                        else:
                            kind = _text(v)
            elif number == 2:
                raw = value
            elif number == 3:
                content_encoding = _text(value)
            elif number == 4:
                content_type = _text(value)
    except _Malformed as e:
        raise ProtobufDecodeError(str(e)) from None
    return Envelope(api_version, kind, raw, content_encoding, content_type)


def encode_envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """The `k8s\\0` + runtime.Unknown bytes client-go writes around an object's message."""
    type_meta = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return MAGIC + _ld(1, type_meta) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"")


# --- decoding -----------------------------------------------------------------------------------


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON dict (kind, apiVersion, metadata, …) it stands for."""
    env = decode_envelope(body)
    if not env.kind:
        raise ProtobufDecodeError("Object 'Kind' is missing in the protobuf type meta")
    name = message_for(env.api_version, env.kind)
    if name is None:
        raise UnsupportedKindError(env.api_version, env.kind)
    if env.content_encoding or env.content_type not in ("", CONTENT_TYPE):
        raise UnsupportedKindError(env.api_version, env.kind)
    obj: dict[str, Any] = {"kind": env.kind, "apiVersion": env.api_version}
    obj.update(decode_message(name, env.raw))
    return obj


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """One message (by name in `protofields.MESSAGES`) as a JSON dict; 400 if malformed."""
    try:
        return _decode_message(name, bytes(data))
    except _Malformed as e:
        raise ProtobufDecodeError(f"{name}: {e}") from None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _decode_message(name: str, data: bytes) -> dict[str, Any]:
    fields = _BY_NUMBER[name]
    out: dict[str, Any] = {}
    for number, wire, value in _iter_fields(data):
        f = fields.get(number)
        if f is None:
            continue
        if f.mode == "map":
            _need(f, wire, 2)
            key, item = _decode_entry(f, value)
            out.setdefault(f.name, {})[key] = item
        elif f.mode == "*":
            items = out.setdefault(f.name, [])
            if wire == 2 and f.type in _VARINT_TYPES:
                items.extend(_decode_packed(f, value))
            else:
                items.append(_decode_value(f, wire, value))
        elif f.name == "-":
            _need(f, wire, 2)
            out.update(_decode_message(f.type, value))
        else:
            out[f.name] = _decode_value(f, wire, value)
    for f in fields.values():
        # Go writes value (non-pointer) fields even when empty; JSON leaves them out.
        if f.mode == "" and f.name in out and _is_empty_value(f.type, out[f.name]):
            del out[f.name]
    return out


def _is_empty_value(type_: str, value: Any) -> bool:
    if type_ in ("string", "bytes"):
        return value == ""
    if type_ in ("int32", "int64"):
        return value == 0
    if type_ == "bool":
        return value is False
    if type_ in ("time", "microtime"):
        return value is None
    if type_ == "intstr":
        return value == 0
    return False


def _need(f: Field, wire: int, expected: int) -> None:
    if wire != expected:
        raise _Malformed(f"wrong wire type {wire} for field {f.name or f.number}")


def _decode_packed(f: Field, data: bytes) -> list[Any]:
    out = []
    pos = 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        out.append(_from_varint(f.type, value))
    return out


def _from_varint(type_: str, value: int) -> Any:
    if type_ == "int32":
        return _signed(value, 32)
    if type_ == "int64":
        return _signed(value, 64)
    return value != 0


def _decode_value(f: Field, wire: int, value: Any) -> Any:
    type_ = f.type
    if type_ in _VARINT_TYPES:
        _need(f, wire, 0)
        return _from_varint(type_, value)
    _need(f, wire, 2)
    if type_ == "string":
        return _text(value)
    if type_ == "bytes":
        return base64.b64encode(value).decode("ascii")
    if type_ in ("time", "microtime"):
        return _decode_time(value, micro=type_ == "microtime")
    if type_ == "quantity":
        return _decode_quantity(value)
    if type_ == "intstr":
        return _decode_intstr(value)
    if type_ == "fieldsv1":
        return _decode_fieldsv1(value)
    if type_ == "extra":
        return _decode_extra(value)
    return _decode_message(type_, value)


def _decode_entry(f: Field, data: bytes) -> tuple[str, Any]:
    key = ""
    item: Any = _map_default(f.type)
    value_field = Field(2, f.name, f.type, "")
    for number, wire, value in _iter_fields(data):
        if number == 1:
            _need(f, wire, 2)
            key = _text(value)
        elif number == 2:
            item = _decode_value(value_field, wire, value)
    return key, item


def _map_default(type_: str) -> Any:
    if type_ in ("string", "bytes"):
        return ""
    if type_ == "quantity":
        return "0"
    if type_ == "extra":
        return []
    if type_ in ("time", "microtime"):
        return None
    return {}


def _decode_time(data: bytes, *, micro: bool) -> str | None:
    if not data:
        return None  # Go's zero time: unset
    seconds = nanos = 0
    for number, wire, value in _iter_fields(data):
        if number in (1, 2) and wire != 0:
            raise _Malformed(f"wrong wire type {wire} in a timestamp")
        if number == 1:
            seconds = _signed(value, 64)
        elif number == 2:
            nanos = _signed(value, 32)
    try:
        when = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise _Malformed(f"timestamp {seconds} is out of range") from None
    if not 1 <= when.year <= 9999:
        raise _Malformed(f"timestamp {seconds} is out of range")
    if micro:
        # metav1.MicroTime keeps the fraction; JSON shows it to the microsecond.
        if not 0 <= nanos <= 999_999_999:
            raise _Malformed(f"timestamp nanos {nanos} out of range")
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    # metav1.Time has second precision on the wire and in JSON (Go drops nanos when reading).
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode_quantity(data: bytes) -> str:
    text = "0"
    for number, wire, value in _iter_fields(data):
        if number == 1:
            if wire != 2:
                raise _Malformed(f"wrong wire type {wire} in a quantity")
            text = _text(value)
            if not _QUANTITY.match(text):
                raise _Malformed(f"quantity {text[:40]!r} is not a valid quantity")
    return text


def _decode_intstr(data: bytes) -> int | str:
    kind = int_val = 0
    str_val = ""
    for number, wire, value in _iter_fields(data):
        if number in (1, 2) and wire != 0 or number == 3 and wire != 2:
            raise _Malformed(f"wrong wire type {wire} in an IntOrString")
        if number == 1:
            kind = _signed(value, 64)
        elif number == 2:
            int_val = _signed(value, 32)
        elif number == 3:
            str_val = _text(value)
    return str_val if kind == 1 else int_val


def _decode_fieldsv1(data: bytes) -> Any:
    raw = b""
    for number, wire, value in _iter_fields(data):
        if number == 1:
            if wire != 2:
                raise _Malformed(f"wrong wire type {wire} in FieldsV1")
            raw = value
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise _Malformed("managedFields fieldsV1 is not valid JSON") from None


def _decode_extra(data: bytes) -> list[str]:
    items = []
    for number, wire, value in _iter_fields(data):
        if number == 1:
            if wire != 2:
                raise _Malformed(f"wrong wire type {wire} in an extra value")
            items.append(_text(value))
    return items


# --- encoding -----------------------------------------------------------------------------------


def encode(obj: dict[str, Any]) -> bytes:
    """The protobuf body (with envelope) for a JSON object dict with `apiVersion` and `kind`."""
    if not isinstance(obj, dict):
        raise ProtobufEncodeError("an object must be a dict")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        raise ProtobufEncodeError("the object needs string apiVersion and kind")
    name = message_for(api_version, kind)
    if name is None:
        raise ProtobufEncodeError(f"no protobuf field map for {api_version} {kind}")
    return encode_envelope(api_version, kind, encode_message(name, obj))


def encode_message(name: str, obj: dict[str, Any]) -> bytes:
    """One message's bytes, fields in number order as Go's generated marshallers write them."""
    if name not in MESSAGES:
        raise ProtobufEncodeError(f"unknown message {name}")
    return _encode_message(name, obj, name)


def _encode_message(name: str, obj: Any, path: str) -> bytes:
    if not isinstance(obj, dict):
        raise ProtobufEncodeError(f"{path}: expected an object, got {type(obj).__name__}")
    out = bytearray()
    for f in MESSAGES[name]:
        if f.name == "-":
            out += _ld(f.number, _encode_message(f.type, obj, path))
            continue
        value = obj.get(f.name)
        where = f"{path}.{f.name}"
        if f.mode == "*":
            if value is None:
                continue
            if not isinstance(value, list):
                raise ProtobufEncodeError(f"{where}: expected a list")
            for i, item in enumerate(value):
                out += _encode_value(f.number, f.type, item, f"{where}[{i}]")
        elif f.mode == "map":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ProtobufEncodeError(f"{where}: expected an object")
            for key in sorted(value):
                entry = _ld(1, str(key).encode()) + _encode_value(2, f.type, value[key], f"{where}.{key}")
                out += _ld(f.number, entry)
        elif f.mode == "?":
            if value is not None:
                out += _encode_value(f.number, f.type, value, where)
        else:
            out += _encode_value(f.number, f.type, _zero(f.type) if value is None else value, where)
    return bytes(out)


def _zero(type_: str) -> Any:
    if type_ in ("string", "bytes"):
        return ""
    if type_ in ("int32", "int64", "intstr"):
        return 0
    if type_ == "bool":
        return False
    if type_ == "quantity":
        return "0"
    if type_ in ("time", "microtime"):
        return None
    return {}


def _encode_value(number: int, type_: str, value: Any, where: str) -> bytes:
    if type_ == "string":
        if not isinstance(value, str):
            raise ProtobufEncodeError(f"{where}: expected a string")
        return _ld(number, value.encode())
    if type_ in ("int32", "int64"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtobufEncodeError(f"{where}: expected an integer")
        bits = 32 if type_ == "int32" else 64
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise ProtobufEncodeError(f"{where}: {value} does not fit {type_}")
        return _key(number, 0) + _varint(value)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise ProtobufEncodeError(f"{where}: expected a boolean")
        return _key(number, 0) + _varint(int(value))
    if type_ == "bytes":
        if not isinstance(value, str):
            raise ProtobufEncodeError(f"{where}: expected base64 text")
        try:
            return _ld(number, base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise ProtobufEncodeError(f"{where}: not valid base64") from None
    if type_ in ("time", "microtime"):
        return _ld(number, _encode_time(value, micro=type_ == "microtime", where=where))
    if type_ == "quantity":
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = format(value, "g")
        if not isinstance(value, str) or not _QUANTITY.match(value):
            raise ProtobufEncodeError(f"{where}: not a quantity")
        return _ld(number, _ld(1, value.encode()))
    if type_ == "intstr":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ProtobufEncodeError(f"{where}: expected an integer or a string")
        if isinstance(value, int):
            if not -(1 << 31) <= value < (1 << 31):
                raise ProtobufEncodeError(f"{where}: {value} does not fit int32")
            payload = _key(1, 0) + _varint(0) + _key(2, 0) + _varint(value) + _ld(3, b"")
        else:
            payload = _key(1, 0) + _varint(1) + _key(2, 0) + _varint(0) + _ld(3, value.encode())
        return _ld(number, payload)
    if type_ == "fieldsv1":
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return _ld(number, _ld(1, raw))
    if type_ == "extra":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProtobufEncodeError(f"{where}: expected a list of strings")
        return _ld(number, b"".join(_ld(1, v.encode()) for v in value))
    return _ld(number, _encode_message(type_, value, where))


def _encode_time(value: Any, *, micro: bool, where: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ProtobufEncodeError(f"{where}: expected an RFC 3339 time")
    seconds, nanos = parse_rfc3339(value, where)
    if not micro:
        nanos = 0
    return _key(1, 0) + _varint(seconds) + _key(2, 0) + _varint(nanos)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str, where: str = "time") -> tuple[int, int]:
    """Seconds since the epoch and nanoseconds of an RFC 3339 time (`2024-05-01T12:00:00Z`)."""
    m = _RFC3339.match(text)
    if not m:
        raise ProtobufEncodeError(f"{where}: {text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = (m.group(7) or "").ljust(9, "0")
    zone = m.group(8)
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ProtobufEncodeError(f"{where}: {text!r} is not a valid date") from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        when -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    delta = when - _EPOCH
    return delta.days * 86400 + delta.seconds, int(fraction)


def decode_body(body: bytes) -> dict[str, Any]:
    """The hook `bodies.decode_body` calls for `application/vnd.kubernetes.protobuf` request bodies."""
    return decode(body)
