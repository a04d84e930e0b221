"""How long the agent's reactor stalls while the periodic save writes N changed clusters.

    python benchmarks/save_stall.py --clusters 1000 [--state-parent DIR]

Builds N clusters with the real ClusterSet on the real reactor, changes each one's store (as Rancher's
setup does), then runs one periodic save pass while a 5 ms LoopingCall measures the reactor's lag: the
longest stall and the p99 of the gaps, and how long the pass took. Each write fsyncs the file and
its directory, so the figures depend on the disk (`--state-parent` picks it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--state-parent", default=None)
    parser.add_argument("--inline", action="store_true", help="write in the reactor thread (as before)")
    args = parser.parse_args()

    from twisted.internet import reactor, task  # noqa: TID251 -- a benchmark process of its own

    from benchmarks.scalelib.stats import percentile
    from scaleagent.cluster.cluster import ClusterSet

    state = Path(tempfile.mkdtemp(prefix="save-stall-", dir=args.state_parent))
    clusters = ClusterSet(reactor, state_dir=state, save_interval=0)
    for index in range(args.clusters):
        cluster = clusters.cluster(index, f"bench-{index:05d}")
        kinds = cluster.api.kinds
        configmaps = kinds.by_resource("", "v1", "configmaps")
        cluster.store.create(configmaps, {"metadata": {"name": "rancher", "namespace": "default"}})
    clusters.started = True
    if args.inline:
        clusters._thread_pool = lambda: None  # type: ignore[method-assign]
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    lag = task.LoopingCall(tick)
    figures = {}

    def done() -> None:
        if any(c.dirty for c in clusters) and time.perf_counter() - figures["start"] < 600:
            reactor.callLater(0.05, done)
            return
        figures["pass_s"] = time.perf_counter() - figures["start"]
        lag.stop()
        reactor.stop()

    def go() -> None:
        lag.start(0.005)
        figures["start"] = time.perf_counter()
        clusters._save_pass()
        reactor.callLater(0.05, done)

    reactor.callWhenRunning(go)
    reactor.run()
    print(
        f"{'inline' if args.inline else 'thread pool'}: {args.clusters} changed clusters saved in "
        f"{figures['pass_s']:.1f} s; reactor lag (5 ms tick): "
        f"max {max(gaps) * 1000:.0f} ms, p99 {percentile(gaps, 99) * 1000:.0f} ms, "
        f"p50 {percentile(gaps, 50) * 1000:.1f} ms; state in {state}"
    )


if __name__ == "__main__":
    main()
