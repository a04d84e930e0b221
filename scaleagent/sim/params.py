"""Decode X-API-Tunnel-Params exactly as far as Rancher's authorizer does, with Go's error texts.

Rancher answers a bad params header with HTTP 400 and the Go error as the body (`readInput` in
`pkg/tunnelserver/mcmauthorizer/tunnel.go`: `base64.StdEncoding.DecodeString`, then `json.Unmarshal` into
`{node, cluster{address, token, caCert}, nodeVersion}`). An agent author reading the stand-in's refusal
should see the text a real Rancher would send, so the messages of Go's `encoding/base64` and
`encoding/json` are reproduced for the cases a client can plausibly hit.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

_B64 = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class ParamsError(ValueError):
    """The params cannot be used; `str()` is the body Rancher would send."""


@dataclass(frozen=True)
class TunnelInput:
    """The decoded params: `cluster` fields, whether a `node` was present, and `nodeVersion`."""

    cluster: dict[str, str] | None
    node: dict[str, Any] | None
    node_version: int = 0


def b64decode_go(text: str) -> bytes:
    """`base64.StdEncoding.DecodeString`: padded, CR/LF skipped, and Go's error offsets."""
    src = text.encode("latin-1", "replace")
    out = bytearray()
    si = 0
    size = len(src)
    skip = (0x0A, 0x0D)
    while si < size:
        quantum: list[int] = []
        done = False
        while len(quantum) < 4:
            if si == size:
                if not quantum:
                    return bytes(out)
                raise ParamsError(f"illegal base64 data at input byte {si - len(quantum)}")
            char = src[si]
            si += 1
            if char in _B64:
                quantum.append(char)
                continue
            if char in skip:
                continue
            if char != ord("="):
                raise ParamsError(f"illegal base64 data at input byte {si - 1}")
            # Padding: only after two or three characters of a quantum.
            if len(quantum) < 2:
                raise ParamsError(f"illegal base64 data at input byte {si - 1}")
            if len(quantum) == 2:
                while si < size and src[si] in skip:
                    si += 1
                if si == size:
                    raise ParamsError(f"illegal base64 data at input byte {size}")
                if src[si] != ord("="):
                    raise ParamsError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < size and src[si] in skip:
                si += 1
            if si < size:
                raise ParamsError(f"illegal base64 data at input byte {si}")
            done = True
            break
        out += base64.b64decode(bytes(quantum) + b"=" * (4 - len(quantum)))
        if done:
            break
    return bytes(out)


def _quote_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    quoted = json.dumps(char)[1:-1] if not char.isprintable() else char
    return f"'{quoted}'"


def _syntax_error(doc: str, error: json.JSONDecodeError) -> ParamsError:
    if error.pos >= len(doc) or not doc.strip():
        return ParamsError("unexpected end of JSON input")
    char = _quote_char(doc[error.pos])
    message = error.msg
    if message.startswith("Expecting value"):
        literal = {"n": "null", "t": "true", "f": "false"}.get(doc[error.pos])
        if literal:
            text = doc[error.pos : error.pos + len(literal)]
            for i, expected in enumerate(literal):
                if i >= len(text):
                    return ParamsError("unexpected end of JSON input")
                if text[i] != expected:
                    got = _quote_char(text[i])
                    return ParamsError(
                        f"invalid character {got} in literal {literal} (expecting '{expected}')"
                    )
        return ParamsError(f"invalid character {char} looking for beginning of value")
    if message.startswith("Expecting property name"):
        return ParamsError(f"invalid character {char} looking for beginning of object key string")
    if message.startswith("Expecting ':'"):
        return ParamsError(f"invalid character {char} after object key")
    if message.startswith("Expecting ',' delimiter"):
        # Python reports the same message inside objects and arrays; look back to tell them apart.
        depth_obj = doc.rfind("{", 0, error.pos)
        depth_arr = doc.rfind("[", 0, error.pos)
        where = "object key:value pair" if depth_obj > depth_arr else "array element"
        return ParamsError(f"invalid character {char} after {where}")
    if message.startswith("Extra data"):
        return ParamsError(f"invalid character {char} after top-level value")
    if message.startswith("Invalid control character"):
        return ParamsError(f"invalid character {char} in string literal")
    if message.startswith("Invalid \\escape") or message.startswith("Invalid \\u"):
        return ParamsError(f"invalid character {char} in string escape code")
    return ParamsError(f"invalid character {char} looking for beginning of value")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _field(obj: dict[str, Any], name: str) -> Any:
    """Go matches JSON keys to struct fields case-insensitively, preferring an exact match."""
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    return None


def decode_params(header: str) -> TunnelInput:
    """Decode and check the header; `ParamsError` with Rancher's body text when it cannot be used."""
    raw = b64decode_go(header)
    doc = raw.decode("utf-8", "replace")
    try:
        value = json.loads(doc)
    except json.JSONDecodeError as error:
        raise _syntax_error(doc, error) from None
    except RecursionError:
        # Go's decoder stops at nesting depth 10000 with this text; Python's stops earlier.
        raise ParamsError("exceeded max depth") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ParamsError(f"json: cannot unmarshal {_kind(value)} into Go value of type mcmauthorizer.input")
    type_error = ""

    def mismatch(text: str) -> None:
        nonlocal type_error
        type_error = type_error or text

    cluster_value = _field(value, "cluster")
    cluster: dict[str, str] | None = None
    if cluster_value is not None:
        if not isinstance(cluster_value, dict):
            mismatch(
                f"json: cannot unmarshal {_kind(cluster_value)} into Go struct field input.cluster"
                " of type mcmauthorizer.cluster"
            )
        else:
            cluster = {}
            for name in ("address", "token", "caCert"):
                item = _field(cluster_value, name)
                if item is None:
                    cluster[name] = ""
                elif isinstance(item, str):
                    cluster[name] = item
                else:
                    cluster[name] = ""
                    mismatch(
                        f"json: cannot unmarshal {_kind(item)} into Go struct field cluster.cluster.{name}"
                        " of type string"
                    )
    node_value = _field(value, "node")
    node: dict[str, Any] | None = None
    if node_value is not None:
        if not isinstance(node_value, dict):
            mismatch(
                f"json: cannot unmarshal {_kind(node_value)} into Go struct field input.node"
                " of type client.Node"
            )
        else:
            node = node_value
    node_version = _field(value, "nodeVersion")
    if node_version is not None and (isinstance(node_version, bool) or not isinstance(node_version, int)):
        shown = _kind(node_version) if not isinstance(node_version, float) else f"number {node_version}"
        mismatch(f"json: cannot unmarshal {shown} into Go struct field input.nodeVersion of type int")
        node_version = 0
    if type_error:
        raise ParamsError(type_error)
    result = TunnelInput(cluster=cluster, node=node, node_version=node_version or 0)
    check_input(result)
    return result


def check_input(data: TunnelInput) -> None:
    """Rancher's checks after decoding, in Rancher's order."""
    if data.node is None and data.cluster is None:
        raise ParamsError("missing node or cluster registration info")
    if data.node is not None and not _field(data.node, "requestedHostname"):
        raise ParamsError("invalid input, hostname empty")
    if data.cluster is not None:
        if data.cluster["address"] == "":
            raise ParamsError("invalid input, address empty")
        if data.cluster["token"] == "":
            raise ParamsError("invalid input, token empty")
        if data.cluster["caCert"] == "":
            raise ParamsError("invalid input, caCert empty")
