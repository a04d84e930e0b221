"""Request-body decoding: the one place a body becomes a Python value, whatever its media type.

JSON (and every `+json` patch type) and YAML are decoded here.  `application/vnd.kubernetes.protobuf`
is handed to `scaleagent.apiserver.protobuf.decode_body` (typed Go clients send protobuf and never fall
back); any other type is a 415 Status.  A missing Content-Type means JSON (the Python client omits it).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from scaleagent.apiserver import protobuf, status

PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON = "application/json"
YAML = "application/yaml"

JSON_TYPES = frozenset(
    {
        JSON,
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "text/json",
    }
)
YAML_TYPES = frozenset({YAML, "application/apply-patch+yaml", "application/x-yaml", "text/yaml"})
ACCEPTED = [JSON, YAML, PROTOBUF]

def media_type(content_type: str | bytes | None) -> str:
    """`application/json; charset=utf-8` → `application/json` (lower case, no parameters)."""
    if content_type is None:
        return ""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.split(";", 1)[0].strip().lower()


def decode_body(content_type: str | bytes | None, body: bytes) -> Any:
    """Decode a request body by its Content-Type.

    Raises ApiError: 400 BadRequest for a body that does not parse, 415 UnsupportedMediaType for a
    media type we do not read.
    """
    kind = media_type(content_type)
    if kind in ("", *JSON_TYPES):
        try:
            return json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError) as e:
            raise status.bad_request(f"the request body is not valid JSON: {e}") from None
    if kind in YAML_TYPES:
        try:
            return yaml.safe_load(body) if body.strip() else None
        except yaml.YAMLError as e:
            raise status.bad_request(f"the request body is not valid YAML: {e}") from None
    if kind == PROTOBUF:
        return protobuf.decode_body(body)
    raise status.unsupported_media_type(ACCEPTED)
