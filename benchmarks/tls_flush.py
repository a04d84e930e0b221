"""Cost of the in-tunnel TLS connections' zero-delay write flushes with a big reactor timer heap.

    python benchmarks/tls_flush.py [--timers 70000] [--connections 5000] [--rounds 20]

Twisted's BufferingTLSTransport flushes each connection's gathered writes with `clock.callLater(0)`.
The agent at 5,000 clusters under Rancher's informers holds ~70,000 timers (pings, HTTP timeouts, watch
bookmarks). This schedules one zero-delay flush per connection per round on the real reactor, with
that many idle timers present, directly (before) and through `scaleagent.cluster.turns.TurnBatcher`
(after), and prints the CPU time per flush.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timers", type=int, default=70000)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from twisted.internet import reactor  # noqa: TID251 -- a benchmark process of its own

    from scaleagent.cluster.turns import TurnBatcher

    idle = [reactor.callLater(3600 + i * 1e-3, lambda: None) for i in range(args.timers)]
    done = [0]

    def flush() -> None:
        done[0] += 1

    def measure(clock) -> float:
        started = time.process_time()
        for _ in range(args.rounds):
            done[0] = 0
            for _ in range(args.connections):
                clock.callLater(0, flush)
            for _ in range(1000):
                if done[0] >= args.connections:
                    break
                reactor.iterate(0)
        return (time.process_time() - started) / (args.rounds * args.connections)

    reactor.iterate(0)  # let the idle timers into the heap
    direct = measure(reactor)
    batched = measure(TurnBatcher(reactor))
    for call in idle:
        call.cancel()
    print(
        f"{args.timers} idle timers, {args.connections} flushes per turn: callLater(0) per connection "
        f"{direct * 1e6:.1f} µs per flush; TurnBatcher {batched * 1e6:.1f} µs per flush "
        f"({direct / batched:.1f}×)"
    )


if __name__ == "__main__":
    main()
