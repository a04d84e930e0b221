"""steve's list processing: `filter`, `sort`, `page`/`pagesize` and `projectsornamespaces`.

Applied, as steve's listprocessor does without its SQL cache, to the chunk read from the store
(`limit`/`continue`/`labelSelector` go to the store itself).  Pure functions over object dicts.

- `filter=a.b=value`: the field contains `value` (quoted in `'...'`: equals it exactly); a list field
  matches when any item does; `a=x,b=y` ORs, repeated `filter=` params AND; `!=` negates.
  `metadata.labels[key]` reaches keys with dots or slashes.
- `sort=a,-b`: by each field in turn, `-` descending; strings compare as text, numbers as numbers.
- `pagesize=N&page=P`: pages are 1-indexed; a page past the end is empty; `pages` = ceil(count/N).
- `projectsornamespaces=p1,ns1` (or `!=`): keep objects whose namespace is listed or whose namespace
  belongs to a listed Rancher project (label `field.cattle.io/projectId`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = Mapping[str, Any]
PROJECT_LABEL = "field.cattle.io/projectId"
_PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


class QueryError(ValueError):
    """A malformed list parameter (answered with 400)."""


def split_path(path: str) -> list[str]:
    """`metadata.labels[app.kubernetes.io/name]` → ["metadata", "labels", "app.kubernetes.io/name"]."""
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _PART.finditer(path)]


def values_at(obj: Any, parts: Sequence[str]) -> list[Any]:
    """Every value at `parts`, descending into lists (steve searches arrays for matching items)."""
    current = [obj]
    for part in parts:
        following = []
        for value in current:
            if isinstance(value, list):
                value_items = value
            else:
                value_items = [value]
            for item in value_items:
                if isinstance(item, Mapping) and part in item:
                    following.append(item[part])
        current = following
        if not current:
            return []
    out: list[Any] = []
    for value in current:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Filter:
    """One `filter=` parameter: alternatives (ORed), negated as a whole with `!=`."""

    alternatives: tuple[tuple[tuple[str, ...], str, bool], ...]  # (path, value, exact)
    negate: bool = False

    def matches(self, obj: Obj) -> bool:
        hit = any(_matches(obj, path, value, exact) for path, value, exact in self.alternatives)
        return hit != self.negate


def _matches(obj: Obj, path: Sequence[str], value: str, exact: bool) -> bool:
    for found in values_at(obj, path):
        text = _text(found)
        if text == value if exact else value in text:
            return True
    return False


def parse_filter(text: str) -> Filter:
    negate = False
    alternatives = []
    for part in text.split(","):
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            negate = True
        elif "=" in part:
            key, value = part.split("=", 1)
        else:
            raise QueryError(f"invalid filter {text!r}: expected field=value")
        exact = len(value) >= 2 and value[0] == value[-1] == "'"
        if exact or (len(value) >= 2 and value[0] == value[-1] == '"'):
            value = value[1:-1]
        path = tuple(split_path(key.strip()))
        if not path:
            raise QueryError(f"invalid filter {text!r}: empty field")
        alternatives.append((path, value, exact))
    if not alternatives:
        raise QueryError(f"invalid filter {text!r}")
    return Filter(tuple(alternatives), negate)


@dataclass(frozen=True, slots=True)
class SortField:
    path: tuple[str, ...]
    descending: bool


def parse_sort(text: str) -> list[SortField]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        path = tuple(split_path(part.lstrip("-")))
        if path:
            out.append(SortField(path, descending))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, str(value).lower())
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, _text(value))


def sort_objects(objects: list[Obj], fields: Sequence[SortField]) -> list[Obj]:
    """Stable multi-key sort: apply the least significant key first."""
    out = list(objects)
    for f in reversed(fields):
        def key(obj: Obj, f: SortField = f) -> tuple[int, Any]:
            found = values_at(obj, f.path)
            return _sort_key(found[0]) if found else (-1, "")

        out.sort(key=key, reverse=f.descending)
    return out


def _int_param(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise QueryError(f"invalid {name} {value!r}: expected an integer") from None


@dataclass(slots=True)
class ListOptions:
    filters: list[Filter] = field(default_factory=list)
    sort: list[SortField] = field(default_factory=list)
    page: int = 1
    pagesize: int = 0
    projects_or_namespaces: frozenset[str] = frozenset()
    pon_negate: bool = False

    @classmethod
    def parse(cls, query: Mapping[str, list[str]]) -> ListOptions:
        """From all values of each query parameter (steve reads `filter` repeatedly)."""
        opts = cls()
        for text in query.get("filter", []):
            opts.filters.append(parse_filter(text))
        for text in query.get("sort", [])[:1]:
            opts.sort = parse_sort(text)
        if query.get("pagesize"):
            opts.pagesize = max(0, _int_param(query["pagesize"][0], "pagesize"))
        if query.get("page"):
            opts.page = _int_param(query["page"][0], "page")
        pon = query.get("projectsornamespaces")
        if pon:
            opts.projects_or_namespaces = frozenset(p for p in pon[0].split(",") if p)
        negated = query.get("projectsornamespaces!")
        if negated:
            opts.projects_or_namespaces = frozenset(p for p in negated[0].split(",") if p)
            opts.pon_negate = True
        return opts


@dataclass(slots=True)
class Page:
    items: list[Obj]
    count: int
    pages: int


def process(
    objects: Iterable[Obj],
    opts: ListOptions,
    namespace_project: Callable[[str], str] | None = None,
) -> Page:
    """Filter, scope to projects/namespaces, sort, then page; `count` is before paging."""
    items = [o for o in objects if all(f.matches(o) for f in opts.filters)]
    if opts.projects_or_namespaces:
        wanted = opts.projects_or_namespaces

        def keep(obj: Obj) -> bool:
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace") or ""
            if not ns and obj.get("kind") == "Namespace":
                ns = meta.get("name", "")
            project = namespace_project(ns) if namespace_project is not None and ns else ""
            hit = ns in wanted or (bool(project) and project in wanted)
            return hit != opts.pon_negate

        items = [o for o in items if keep(o)]
    if opts.sort:
        items = sort_objects(items, opts.sort)
    count = len(items)
    pages = 0
    if opts.pagesize > 0:
        pages = -(-count // opts.pagesize)
        start = (opts.page - 1) * opts.pagesize if opts.page >= 1 else count
        items = items[start : start + opts.pagesize] if start < count else []
    return Page(items, count, pages)
