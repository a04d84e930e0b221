"""Thresholds per cluster count, read from a TOML file, checked against a run's figures.

File shape (benchmarks/thresholds.toml):

    [count.200.any]                                   # every profile at 200 clusters
    "ramp.all_active_s" = { max = 120 }
    [count.200.idle]                                  # only under the idle profile
    "steady.agent_rss_kib_per_cluster" = { max = 256 }

A run with N clusters uses the entry with the largest count <= N (the smallest entry when N is below
all of them). A figure is a dotted path into the result JSON. A figure the run did not measure (null,
or absent) is reported as "not measured" and does not fail the run: only a measured miss does.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Table = dict[int, dict[str, dict[str, dict[str, float]]]]

ANY = "any"
PASS, FAIL, MISSING = "pass", "FAIL", "not measured"


class ThresholdError(ValueError):
    """A thresholds file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Check:
    figure: str
    value: float | None
    limit: float
    kind: str  # "max" or "min"
    status: str

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "value": self.value, self.kind: self.limit, "status": self.status}


def load(path: str | Path) -> Table:
    """{count: {profile or "any": {figure: {"max"|"min": limit}}}}, validated."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ThresholdError(f"{path}: {error}") from None
    return parse(data, str(path))


def parse(data: dict[str, Any], source: str = "thresholds") -> Table:
    counts = data.get("count")
    if not isinstance(counts, dict) or not counts:
        raise ThresholdError(f"{source}: expected [count.<N>.<profile>] tables")
    table: Table = {}
    for key, profiles in counts.items():
        try:
            count = int(key)
        except ValueError:
            raise ThresholdError(f"{source}: count.{key}: expected a cluster count") from None
        if count <= 0 or not isinstance(profiles, dict):
            raise ThresholdError(f"{source}: count.{key}: expected a positive count holding profile tables")
        entry: dict[str, dict[str, dict[str, float]]] = {}
        for profile, figures in profiles.items():
            if not isinstance(figures, dict):
                raise ThresholdError(f"{source}: count.{key}.{profile}: expected a table of figures")
            checks: dict[str, dict[str, float]] = {}
            for figure, bound in figures.items():
                where = f"{source}: count.{key}.{profile}.{figure}"
                if not isinstance(bound, dict) or not bound or set(bound) - {"max", "min"}:
                    raise ThresholdError(f"{where}: expected {{ max = X }} and/or {{ min = X }}")
                for kind, limit in bound.items():
                    if isinstance(limit, bool) or not isinstance(limit, int | float):
                        raise ThresholdError(f"{where}.{kind}: expected a number, got {limit!r}")
                checks[figure] = {k: float(v) for k, v in bound.items()}
            entry[profile] = checks
        table[count] = entry
    return table


def select(table: dict[int, dict[str, Any]], clusters: int) -> int:
    """The entry's count for a run of `clusters`: the largest <= clusters, else the smallest."""
    below = [count for count in table if count <= clusters]
    return max(below) if below else min(table)


def figure(result: dict[str, Any], dotted: str) -> float | None:
    """The number at a dotted path of the result; None when absent or not a number."""
    value: Any = result
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def evaluate(
    table: Table, clusters: int, profile: str, result: dict[str, Any]
) -> tuple[int, list[Check]]:
    """The checks of the entry for this run (its `any` table, then the profile's, which overrides)."""
    count = select(table, clusters)
    entry = table[count]
    merged: dict[str, dict[str, float]] = {}
    for name in (ANY, profile):
        for key, bound in entry.get(name, {}).items():
            merged[key] = bound
    checks = []
    for key in sorted(merged):
        value = figure(result, key)
        for kind, limit in sorted(merged[key].items()):
            if value is None:
                status = MISSING
            elif kind == "max":
                status = PASS if value <= limit else FAIL
            else:
                status = PASS if value >= limit else FAIL
            checks.append(Check(key, value, limit, kind, status))
    return count, checks


def passed(checks: list[Check]) -> bool:
    return all(check.status != FAIL for check in checks)


__all__ = ["ANY", "FAIL", "MISSING", "PASS", "Check", "ThresholdError", "evaluate", "figure", "load", "parse",
           "passed", "select"]
