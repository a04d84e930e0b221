"""What a cluster's store costs, and how fast it lists and fans out watch events.

    python benchmarks/store.py --stores 1000 --stores 10000 [--out figures.json]

* memory per store: N stores over ONE shared seed (the template's cluster 0), traced by tracemalloc,
  for the store alone and for the whole per-cluster API (store + ApiContext + token + Site);
* memory per cluster when every cluster has its own seed from the template (the realistic case),
  for the first 1,000 clusters;
* LIST throughput: objects listed per second from the seed, with and without JSON encoding;
* watch throughput: change events delivered per second to 1 and to 10 watchers, with the JSON line
  each event would put on the wire.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from scaleagent.apiserver.kinds import Registry  # noqa: E402
from scaleagent.apiserver.request import ApiContext  # noqa: E402
from scaleagent.apiserver.resource import make_site  # noqa: E402
from scaleagent.apiserver.store import Seed, Store  # noqa: E402
from scaleagent.cluster.template import ClusterTemplate, RancherInfo, SeedBuilder  # noqa: E402

CA = "-----BEGIN CERTIFICATE-----\n" + "A" * 560 + "\n-----END CERTIFICATE-----\n"
KINDS = Registry()


def builder() -> SeedBuilder:
    return SeedBuilder(
        ClusterTemplate.default(),
        ca_pem=CA,
        rancher=RancherInfo(server_url="https://rancher.example", ca_checksum="0" * 64),
    )


def traced(build) -> tuple[object, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, after - before


def memory_shared_seed(seed: Seed, count: int) -> dict[str, float]:
    _, store_bytes = traced(lambda: [Store(seed) for _ in range(count)])
    clock = Clock()

    def apis():
        out = []
        for _ in range(count):
            api = ApiContext(Store(seed), clock)
            api.issue_admin_token()
            out.append(make_site(api))
        return out

    _, api_bytes = traced(apis)
    return {
        "stores": count,
        "store_bytes_per_cluster": store_bytes / count,
        "api_bytes_per_cluster": api_bytes / count,
    }


def memory_own_seeds(count: int) -> dict[str, float]:
    """Clusters with their own template seed: the template's objects, the store's share, cached JSON."""
    b = builder()
    b.seed(0, "warm-00000")
    clusters, template_bytes = traced(lambda: [list(b.seed(i, f"c-{i:05d}").objects()) for i in range(count)])
    start = time.perf_counter()
    stores, store_bytes = traced(lambda: [Store(Seed.from_objects(objects)) for objects in clusters])
    elapsed = time.perf_counter() - start

    def encode_everything() -> None:
        for store in stores:
            for group, plural in store._seed.buckets:
                rt = KINDS.preferred(group, plural)
                if rt is not None:
                    _encode_list(store, rt)

    _, json_bytes = traced(encode_everything)
    stores.clear()
    # The same clusters with objects already complete (a resourceVersion added, as a template could):
    # Seed.from_objects then stores them as they are.
    prepared = [
        [dict(o, metadata=dict(o["metadata"], resourceVersion=str(n + 1))) for n, o in enumerate(objects)]
        for objects in clusters
    ]
    _, prepared_bytes = traced(lambda: [Store(Seed.from_objects(objects)) for objects in prepared])
    return {
        "store_bytes_per_cluster_prepared_objects": prepared_bytes / count,
        "clusters": count,
        "template_bytes_per_cluster": template_bytes / count,
        "store_bytes_per_cluster": store_bytes / count,
        "cached_json_bytes_per_cluster": json_bytes / count,
        "seed_seconds_per_cluster": elapsed / count,
    }


def _encode_list(store: Store, rt) -> bytes:
    """The items part of a LIST body, as the resource tree builds it."""
    return b",".join(entry.json() for entry in store.list(rt).items)


def list_throughput(seed: Seed, seconds: float = 2.0) -> dict[str, float]:
    store = Store(seed)
    types = [t for t in (KINDS.preferred(group, plural) for group, plural in seed.buckets) if t is not None]
    total_objects = sum(len(store.list(t).items) for t in types)

    def rate(work) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for t in types:
                done += work(t)
        return done / (time.perf_counter() - start)

    listed = rate(lambda t: len(store.list(t).items))
    # Cold: a new seed whose entries are encoded on every list (the default for per-cluster seeds).
    objects = [entry.obj for bucket in seed.buckets.values() for entry in bucket.values()]
    fresh = Store(Seed.from_objects(objects))
    start = time.perf_counter()
    cold_bytes = sum(len(_encode_list(fresh, t)) for t in types)
    cold = time.perf_counter() - start

    def list_and_encode(t) -> int:
        items = store.list(t).items
        b",".join(entry.json() for entry in items)
        return len(items)

    warm = rate(list_and_encode)
    return {
        "objects_in_seed": total_objects,
        "types": len(types),
        "objects_listed_per_second": listed,
        "uncached_encode_objects_per_second": total_objects / cold,
        "cold_encoded_bytes": cold_bytes,
        "warm_list_and_encode_objects_per_second": warm,
    }


def watch_throughput(watchers: int, changes: int = 20000) -> dict[str, float]:
    store = Store()
    cms = KINDS.by_resource("", "v1", "configmaps")
    delivered = [0]

    def sink(kind, entry):
        line = b'{"type":"' + kind.encode() + b'","object":' + entry.json() + b"}\n"
        delivered[0] += len(line) > 0

    for _ in range(watchers):
        store.watch(cms, sink, resource_version=str(store.resource_version))
    start = time.perf_counter()
    for i in range(changes):
        store.put(cms, {"metadata": {"name": f"cm-{i % 100}", "namespace": "default"}, "data": {"i": str(i)}})
    elapsed = time.perf_counter() - start
    return {
        "watchers": watchers,
        "changes_per_second": changes / elapsed,
        "events_delivered_per_second": delivered[0] / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, action="append", help="store counts (default 1000 and 10000)")
    parser.add_argument("--own-seeds", type=int, default=1000, help="clusters with their own seed (0: skip)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    seed_objects = list(builder().seed(0, "c-00000").objects())
    seed, seed_bytes = traced(lambda: Seed.from_objects(seed_objects, cache_json=True))
    print(f"seed: {len(seed)} objects of {len(seed.buckets)} types, {seed_bytes / 1024:.0f} KiB traced once")
    shared = [memory_shared_seed(seed, n) for n in (args.stores or [1000, 10000])]
    for row in shared:
        print(
            f"{row['stores']:>6} stores over one seed: {row['store_bytes_per_cluster']:.0f} B/store, "
            f"{row['api_bytes_per_cluster']:.0f} B/cluster with ApiContext+token+Site"
        )
    own = memory_own_seeds(args.own_seeds) if args.own_seeds else None
    if own:
        print(
            f"{own['clusters']:>6} clusters with their own template seed, per cluster: template objects "
            f"{own['template_bytes_per_cluster'] / 1024:.1f} KiB, "
            f"store {own['store_bytes_per_cluster'] / 1024:.1f} KiB, "
            f"JSON cached by listing everything {own['cached_json_bytes_per_cluster'] / 1024:.1f} KiB; "
            f"store with complete objects {own['store_bytes_per_cluster_prepared_objects'] / 1024:.1f} KiB"
        )
    listing = list_throughput(seed)
    print(
        f"LIST: {listing['objects_listed_per_second']:.0f} objects/s without encoding; "
        f"with JSON {listing['warm_list_and_encode_objects_per_second']:.0f} objects/s (encoding cached), "
        f"{listing['uncached_encode_objects_per_second']:.0f} objects/s (encoding each time)"
    )
    watching = [watch_throughput(w) for w in (1, 10)]
    for row in watching:
        print(
            f"WATCH: {row['watchers']:>2} watchers: {row['changes_per_second']:.0f} changes/s, "
            f"{row['events_delivered_per_second']:.0f} encoded events/s"
        )
    if args.out:
        figures = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "seed_objects": len(seed),
            "seed_bytes": seed_bytes,
            "shared_seed": shared,
            "own_seeds": own,
            "list": listing,
            "watch": watching,
        }
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
