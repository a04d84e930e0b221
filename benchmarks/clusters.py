"""Memory per simulated cluster, as the agent holds them (no tunnels): 1,000 and 10,000 clusters.

    python benchmarks/clusters.py --clusters 1000 --clusters 10000 [--out figures.json]

Each count runs in a fresh child process (so resident memory is its own) through the real
`ClusterSet` with the built-in template:

* idle: N clusters created and their tunnel params computed (what the agent does before Rancher
  dials anything): nothing else is built yet;
* seeded: every cluster's store built (seed from the template, shared entries by reference, token
  controller running): RSS growth per cluster, and the process total;
* marginal: 200 more seeded clusters traced by tracemalloc after the N: the per-cluster cost beyond
  everything shared (the shared seed objects are all built by then), then the same with the
  apiserver Site and TLS factory a first main-tunnel connect adds, and the steve mount;
* save: time to write 200 changed clusters' files (atomic: temp file, fsync, rename, fsync dir) in
  a state directory under --state-parent (default: the system temp dir; pick the real disk).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MARGINAL = 200


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def name(index: int) -> str:
    return f"scale-{index:05d}"


def save_ms(parent: str | None) -> float:
    """Milliseconds to save one changed cluster (its agent Deployment patched), averaged over 200."""
    import copy
    import shutil
    import tempfile

    from twisted.internet.task import Clock

    from scaleagent.cluster.cluster import ClusterSet

    clock = Clock()
    clock.advance(time.time())
    directory = tempfile.mkdtemp(prefix="clusters-bench-", dir=parent)
    try:
        clusters = ClusterSet(clock, state_dir=directory, save_interval=0)
        for index in range(MARGINAL):
            cluster = clusters.cluster(index, name(index))
            deployments = cluster.api.kinds.by_resource("apps", "v1", "deployments")
            agent = copy.deepcopy(cluster.store.get(deployments, "cattle-system", "cattle-cluster-agent"))
            agent["metadata"].setdefault("labels", {})["patched"] = "yes"
            cluster.store.replace(deployments, agent)
        started = time.perf_counter()
        written = clusters.save()
        return (time.perf_counter() - started) / written * 1000
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def one(count: int, parent: str | None = None) -> dict:
    """Measure `count` clusters in this process (run in a child)."""
    from twisted.internet.task import Clock

    from scaleagent.cluster.cluster import ClusterSet
    from scaleagent.cluster.template import RancherInfo

    clock = Clock()
    clock.advance(time.time())
    rancher = RancherInfo(server_url="https://rancher.example", ca_checksum="0" * 64)
    clusters = ClusterSet(clock, rancher=rancher, save_interval=0)
    gc.collect()
    base = rss_kib()

    tracemalloc.start()
    kept = [clusters.cluster(i, name(i), rancher_token="t" * 54) for i in range(count)]
    for cluster in kept:
        cluster.tunnel_params()
    gc.collect()
    idle_traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    idle = rss_kib()

    started = time.perf_counter()
    for cluster in kept:
        cluster.api  # noqa: B018 -- builds the store
    build_seconds = time.perf_counter() - started
    gc.collect()
    seeded = rss_kib()
    objects = sum(len(c.store) for c in kept)

    extra = [clusters.cluster(i, name(i), rancher_token="t" * 54) for i in range(count, count + MARGINAL)]
    kept[0].main_resolver("tcp", "10.43.0.1:443")  # one-time costs (imports, shared TLS context) first
    kept[0].steve_root  # noqa: B018
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for cluster in extra:
        cluster.api  # noqa: B018
    gc.collect()
    after_store = tracemalloc.get_traced_memory()[0]
    for cluster in extra:
        cluster.main_resolver("tcp", "10.43.0.1:443")
    gc.collect()
    after_site = tracemalloc.get_traced_memory()[0]
    for cluster in extra:
        cluster.steve_root  # noqa: B018
    gc.collect()
    after_steve = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    return {
        "clusters": count,
        "objects_per_cluster": round(objects / count, 1),
        "process_rss_kib_base": base,
        "process_rss_kib_seeded": seeded,
        "idle_kib_per_cluster_rss": round((idle - base) / count, 2),
        "idle_bytes_per_cluster_traced": round(idle_traced / count),
        "seeded_kib_per_cluster_rss": round((seeded - base) / count, 1),
        "build_ms_per_cluster": round(build_seconds / count * 1000, 2),
        "marginal_kib_per_seeded_cluster": round((after_store - before) / MARGINAL / 1024, 1),
        "marginal_kib_apiserver_site_and_tls": round((after_site - after_store) / MARGINAL / 1024, 1),
        "marginal_kib_steve_root": round((after_steve - after_site) / MARGINAL / 1024, 1),
        "shared_objects_in_builder": clusters.builder.shared_objects,
        "save_ms_per_changed_cluster": round(save_ms(parent), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, action="append", help="cluster count (repeatable)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--state-parent", help="where the save measurement makes its state directory")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.state_parent)))
        return
    counts = args.clusters or [1000, 10000]
    results = []
    for count in counts:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(count)]
            + (["--state-parent", args.state_parent] if args.state_parent else []),
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"{count} clusters: child failed:\n{child.stderr}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(figures)
        print(
            f"{count} clusters ({figures['objects_per_cluster']} objects each): "
            f"seeded {figures['seeded_kib_per_cluster_rss']} KiB/cluster RSS "
            f"(process {figures['process_rss_kib_seeded'] / 1024:.0f} MiB, base "
            f"{figures['process_rss_kib_base'] / 1024:.0f} MiB); "
            f"idle {figures['idle_bytes_per_cluster_traced']} bytes/cluster; "
            f"marginal {figures['marginal_kib_per_seeded_cluster']} KiB/cluster beyond the "
            f"shared seed (+{figures['marginal_kib_apiserver_site_and_tls']} KiB apiserver Site/TLS, "
            f"+{figures['marginal_kib_steve_root']} KiB steve root); "
            f"build {figures['build_ms_per_cluster']} ms/cluster; "
            f"save {figures['save_ms_per_changed_cluster']} ms per changed cluster",
            flush=True,
        )
    report = {
        "benchmark": "clusters",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
