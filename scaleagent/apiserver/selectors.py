"""Label and field selectors: parsed once (cached by text), then matched against objects.

Label selectors support every operator of the Kubernetes grammar (`=`, `==`, `!=`, `in`, `notin`,
exists, `!` not-exists, `>` and `<`); field selectors support `=`, `==`, `!=` on the fields each type
declares in `kinds.ResourceType.field_labels`, plus `metadata.name` and `metadata.namespace`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from scaleagent.apiserver.status import ApiError, bad_request

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_SET_RE = re.compile(r"^(?P<key>[^\s!=<>()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_CMP_RE = re.compile(r"^(?P<key>[^\s!=<>]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<value>.*)$")

# A requirement is (key, op, values); ops: "in", "notin", "exists", "!", "gt", "lt".
Requirement = tuple[str, str, tuple[str, ...]]


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _bad(requirement: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {requirement!r}: {why}")


def _check_key(key: str, requirement: str) -> None:
    if len(key) > 316 or not _KEY_RE.match(key):
        raise _bad(requirement, f"invalid label key {key!r}")


def _check_value(value: str, requirement: str) -> None:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _bad(requirement, f"invalid label value {value!r}")


@lru_cache(maxsize=4096)
def parse_labels(text: str) -> tuple[Requirement, ...]:
    """Parse a label selector; raises a 400 BadRequest ApiError on bad syntax."""
    text = text.strip()
    if not text:
        return ()
    out: list[Requirement] = []
    for part in _split(text):
        if not part:
            raise _bad(text, "empty requirement")
        m = _SET_RE.match(part)
        if m:
            key = m["key"]
            values = tuple(v.strip() for v in m["values"].split(",")) if m["values"].strip() else ()
            if not values:
                raise _bad(part, "for 'in', 'notin' operators, values set can't be empty")
            _check_key(key, part)
            for value in values:
                _check_value(value, part)
            out.append((key, m["op"], tuple(sorted(values))))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key, part)
            out.append((key, "!", ()))
            continue
        m = _CMP_RE.match(part)
        if m:
            key, op, value = m["key"], m["op"], m["value"].strip()
            _check_key(key, part)
            if op in (">", "<"):
                try:
                    int(value)
                except ValueError:
                    raise _bad(
                        part, f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                    ) from None
                out.append((key, "gt" if op == ">" else "lt", (value,)))
                continue
            _check_value(value, part)
            out.append((key, "notin" if op == "!=" else "in", (value,)))
            continue
        if " " in part or "(" in part or ")" in part:
            raise _bad(part, "found unexpected token")
        _check_key(part, part)
        out.append((part, "exists", ()))
    return tuple(out)


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """True when `labels` satisfy every requirement."""
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        if op == "in":
            if not present or labels[key] not in values:
                return False
        elif op == "notin":
            if present and labels[key] in values:
                return False
        elif op == "exists":
            if not present:
                return False
        elif op == "!":
            if present:
                return False
        else:  # gt / lt: both need an integer label value
            if not present:
                return False
            try:
                have = int(labels[key])
            except ValueError:
                return False
            want = int(values[0])
            if (op == "gt" and not have > want) or (op == "lt" and not have < want):
                return False
    return True


# -- field selectors --------------------------------------------------------------------------------

FieldRequirement = tuple[str, bool, str]  # (field, equal?, value)

COMMON_FIELDS = ("metadata.name", "metadata.namespace")

# Fields whose value does not sit at the dotted path of the same name.
_ALIASES = {"source": ("source", "component")}


def _unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")


@lru_cache(maxsize=4096)
def parse_fields(text: str, supported: tuple[str, ...]) -> tuple[FieldRequirement, ...]:
    """Parse a field selector, allowing only `supported` fields plus metadata.name/namespace."""
    text = text.strip()
    if not text:
        return ()
    out: list[FieldRequirement] = []
    for part in re.split(r"(?<!\\),", text):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^!=]+)(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3).strip())
        if field not in COMMON_FIELDS and field not in supported:
            raise bad_request(f"field label not supported: {field}")
        out.append((field, op != "!=", value))
    return tuple(out)


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """The string a field selector compares for `field` of `obj` ("" when absent)."""
    path = _ALIASES.get(field) or tuple(field.split("."))
    value: Any = obj
    for step in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(step)
        if value is None:
            return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if value and isinstance(value[0], Mapping):
            return str(value[0].get("ip", ""))
        return ",".join(str(v) for v in value)
    return str(value)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    for field, equal, value in requirements:
        if (field_value(obj, field) == value) != equal:
            return False
    return True


def format_label_selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as Go's `LabelSelectorAsSelector(...).String()` (what kubectl prints, what
    Scale.status.selector and steve carry): requirements sorted by key, comma-joined; "" for everything.
    A map without `matchLabels`/`matchExpressions` is plain labels (a Service, an RC, a nodeSelector)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((str(key), f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, Mapping):
            continue
        key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
        values = sorted(str(v) for v in expr.get("values") or [])
        if op == "In":
            parts.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            parts.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            parts.append((key, key))
        elif op == "DoesNotExist":
            parts.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))


def matcher(
    label_selector: str, field_selector: str, supported_fields: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], bool] | None:
    """One predicate for both selectors, or None when neither restricts anything."""
    labels = parse_labels(label_selector or "")
    fields = parse_fields(field_selector or "", supported_fields)
    if not labels and not fields:
        return None

    def match(obj: Mapping[str, Any]) -> bool:
        if labels and not labels_match(labels, obj.get("metadata", {}).get("labels")):
            return False
        return not fields or fields_match(fields, obj)

    return match
