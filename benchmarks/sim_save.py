"""What saving and loading the stand-in's state (`twistd ranchersim --state-dir`) costs at N clusters.

    python benchmarks/sim_save.py --clusters 10000

A store with N imported clusters (params with a CA of real size, labels) and their default tokens, a
tenth of them rotated. Prints the time the reactor thread is blocked per save (encoding the document),
the write+fsync time (done in the reactor's thread pool by the saver), the file size, and the time a
start spends loading and restoring it. Median and max of --repeat runs. The first save encodes every
cluster; later ones only the clusters changed since (`persist.Encoder`), here --changed of them.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaleagent.sim import persist  # noqa: E402
from scaleagent.sim import store as st  # noqa: E402
from scaleagent.state import PRIVATE, StateDir, atomic_write  # noqa: E402


class Clock:
    def seconds(self) -> float:
        return time.time()


def build(n: int) -> st.SimStore:
    store = st.SimStore(Clock(), rng=random.Random(1), with_local=True)
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n" + b"A" * 1100 + b"\n-----END CERTIFICATE-----\n")
    for i in range(n):
        cluster = store.create_cluster(f"scale-{i:05d}", labels={"scaleagent.io/index": str(i)})
        store.record_params(cluster, st.ClusterParams("10.43.0.1:443", "x" * 900, ca.decode()))
        cluster.ever_active = True
        store.record_agent_image(cluster, "rancher/rancher-agent:v2.14.0")
        if i % 10 == 0:
            store.rotate_token(cluster.id)
    return store


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=10000)
    parser.add_argument("--changed", type=int, default=500, help="clusters changed between saves")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="state directory (default: a temporary one)")
    args = parser.parse_args()
    store = build(args.clusters)
    clusters = store.clusters()
    full, incremental, write, load = [], [], [], []
    kwargs = {"api_token": "token-abcde:" + "s" * 54, "creator_id": "user-x", "saved": 0.0}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        state = StateDir(tmp)
        path = state.file(persist.STATE_FILE)
        for round_ in range(args.repeat):
            encoder = persist.Encoder()
            started = time.perf_counter()
            data = encoder.encode(store, **kwargs)
            full.append(time.perf_counter() - started)
            for cluster in clusters[round_ * args.changed : (round_ + 1) * args.changed]:
                store.rotate_token(cluster.id)
            started = time.perf_counter()
            data = encoder.encode(store, **kwargs)
            incremental.append(time.perf_counter() - started)
            started = time.perf_counter()
            atomic_write(path, data, mode=PRIVATE)
            write.append(time.perf_counter() - started)
            started = time.perf_counter()
            snapshot = persist.load(state)
            assert snapshot is not None
            fresh = st.SimStore(Clock(), with_local=True)
            fresh.restore(snapshot.clusters, snapshot.tokens)
            load.append(time.perf_counter() - started)
        size = len(data)

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"

    print(f"clusters: {args.clusters}, tokens: {len(store.tokens())}, file: {size / 1e6:.1f} MB")
    print(f"first save, full encode (reactor thread):          {ms(full)}")
    print(f"later save, {args.changed} changed clusters (reactor thread): {ms(incremental)}")
    print(f"write + fsync (the reactor's thread pool):         {ms(write)}")
    print(f"load + decode + restore (once at start):           {ms(load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
