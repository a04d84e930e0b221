"""Memory and time per seeded cluster: what the template costs beyond the objects all clusters share.

    python benchmarks/template.py --clusters 1000 --clusters 10000 [--store-seeds] [--out figures.json]

For each count it builds that many seeds from the built-in template (no store, no tunnels), and reports
the memory traced by tracemalloc per cluster (the per-cluster objects plus the tuples and parts shared
between clusters, amortised), the objects per cluster, and the build time per seed (measured in a
separate pass without tracemalloc).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaleagent.cluster.template import ClusterTemplate, RancherInfo, SeedBuilder  # noqa: E402

CA = "-----BEGIN CERTIFICATE-----\n" + "A" * 560 + "\n-----END CERTIFICATE-----\n"


def _builder() -> SeedBuilder:
    builder = SeedBuilder(
        ClusterTemplate.default(),
        ca_pem=CA,
        rancher=RancherInfo(server_url="https://rancher.example", ca_checksum="0" * 64),
    )
    builder.seed(0, "warm-00000")  # the process-wide shared objects exist before measuring
    return builder


def measure_store_seeds(count: int) -> dict[str, float]:
    """Seeds turned into the apiserver's `Seed` entries as an assembly would: one `Seed` per distinct
    shared tuple (clusters with equal knob draws share it), one per cluster for its own objects; the
    template's dicts are then dropped, so this is what stays in memory per cluster."""
    from scaleagent.apiserver.store import Seed

    builder = _builder()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    shared: dict[int, tuple[object, Seed]] = {}
    kept = []
    for index in range(1, count + 1):
        seed = builder.seed(index, f"scale-{index:05d}", rancher_token="x" * 54)
        entry = shared.get(id(seed.shared))
        if entry is None:
            entry = shared[id(seed.shared)] = (seed.shared, Seed.from_objects(list(seed.shared), now=0))
        kept.append((entry[1], Seed.from_objects(list(seed.own), now=0)))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "clusters": count,
        "kib_per_cluster_with_store_seeds": round((after - before) / count / 1024, 2),
        "distinct_shared_seeds": len(shared),
    }


def measure(count: int) -> dict[str, float]:
    builder = _builder()
    started = time.perf_counter()
    for index in range(1, count + 1):
        builder.seed(index, f"scale-{index:05d}", rancher_token="x" * 54)
    per_seed = (time.perf_counter() - started) / count
    builder = _builder()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seeds = [
        builder.seed(index, f"scale-{index:05d}", rancher_token="x" * 54) for index in range(1, count + 1)
    ]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "clusters": count,
        "kib_per_cluster": round((after - before) / count / 1024, 2),
        "own_objects_per_cluster": round(statistics.mean(len(s.own) for s in seeds), 1),
        "shared_objects_per_cluster": round(statistics.mean(len(s.shared) for s in seeds), 1),
        "distinct_shared_parts": builder.shared_objects,
        "ms_per_seed": round(per_seed * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, action="append", help="cluster count (repeatable)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--store-seeds", action="store_true", help="also measure with apiserver Seed entries")
    args = parser.parse_args()
    results = [measure(count) for count in (args.clusters or [1000, 10000])]
    if args.store_seeds:
        for row in results:
            row.update(measure_store_seeds(row["clusters"]))
    for row in results:
        print(
            f"{row['clusters']:>6} clusters: {row['kib_per_cluster']:7.2f} KiB/cluster beyond shared seed,"
            f" {row['own_objects_per_cluster']} own + {row['shared_objects_per_cluster']} shared objects,"
            f" {row['ms_per_seed']} ms/seed"
        )
        if "kib_per_cluster_with_store_seeds" in row:
            print(
                f"{'':>17}{row['kib_per_cluster_with_store_seeds']:7.2f} KiB/cluster as apiserver Seeds"
                f" ({row['distinct_shared_seeds']} distinct shared Seeds, amortised)"
            )
    if args.out:
        figures = {"python": platform.python_version(), "machine": platform.machine(), "results": results}
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
