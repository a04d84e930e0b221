"""`python -m scaleagent.cleanup --config etc/agent.ini [--yes]`: delete leftover clusters by name prefix.

After a crashed run (or one without `cleanup_on_stop`), Rancher still lists the clusters the agent
imported. This lists every cluster whose name is `<name_prefix>` followed by five digits (exactly what
the agent creates, so a prefix like `scale-` never matches `scale-prod`) and, with `--yes`, deletes them,
along with the agent's per-cluster records in the state directory. All shards' clusters are matched:
run it once, not once per shard.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer

from scaleagent.config import NAME_DIGITS, AgentConfig, ConfigError, load_config
from scaleagent.rancher.client import ClusterInfo, RancherClient, RancherError
from scaleagent.state import StateDir, StateError

STATE_SUBDIR = "rancher"
CONCURRENCY = 8


def agent_names(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"\d{" + str(NAME_DIGITS) + r"}$")


async def find_leftovers(rancher: RancherClient, prefix: str) -> list[ClusterInfo]:
    pattern = agent_names(prefix)
    return sorted(
        (c for c in await rancher.list_clusters(prefix) if pattern.match(c.name)), key=lambda c: c.name
    )


async def run(
    reactor: Any,
    config: AgentConfig,
    *,
    yes: bool,
    out: Any = sys.stdout,
    rancher: RancherClient | None = None,
) -> int:
    """List (and with `yes` delete) the leftovers; returns the process exit code."""
    if config.rancher.embedded:
        print("cleanup: [rancher] url = embedded: the stand-in forgets its clusters when it stops", file=out)
        return 0
    assert config.rancher.token is not None
    rancher = rancher or RancherClient(
        reactor,
        config.rancher.url,
        config.rancher.token,
        ca_checksum=config.rancher.ca_checksum,
        insecure=config.rancher.insecure,
    )
    try:
        await rancher.check_server()
        leftovers = await find_leftovers(rancher, config.clusters.name_prefix)
        print(
            f"cleanup: {len(leftovers)} clusters named {config.clusters.name_prefix}{'N' * NAME_DIGITS} "
            f"in Rancher {rancher.url}",
            file=out,
        )
        for cluster in leftovers:
            print(f"  {cluster.name}  {cluster.id}  {cluster.state or '-'}", file=out)
        if not leftovers:
            return 0
        if not yes:
            print("cleanup: nothing deleted; run again with --yes to delete them", file=out)
            return 0
        failures = await delete_all(rancher, config, leftovers, out)
        print(f"cleanup: deleted {len(leftovers) - failures} of {len(leftovers)}", file=out)
        return 1 if failures else 0
    except RancherError as failure:
        print(f"cleanup: {failure}", file=out)
        return 1
    finally:
        await rancher.close()


async def delete_all(
    rancher: RancherClient, config: AgentConfig, clusters: list[ClusterInfo], out: Any
) -> int:
    state = None
    try:
        state = StateDir(config.state.dir) if config.state.dir.exists() else None
    except StateError:
        state = None
    failures = 0
    semaphore = defer.DeferredSemaphore(CONCURRENCY)

    async def delete(cluster: ClusterInfo) -> None:
        nonlocal failures
        try:
            await rancher.delete_cluster(cluster.id)
        except RancherError as failure:
            failures += 1
            print(f"  {cluster.name}: not deleted: {failure}", file=out)
            return
        if state is not None:
            try:
                state.remove(f"{STATE_SUBDIR}/{cluster.name}.json")
            except (StateError, OSError):
                pass

    await defer.DeferredList(
        [semaphore.run(lambda c=c: defer.ensureDeferred(delete(c))) for c in clusters], consumeErrors=True
    )
    return failures


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scaleagent.cleanup", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("--config", "-c", default="etc/agent.ini", help="the agent's INI configuration")
    parser.add_argument("--yes", action="store_true", help="delete them (default: only list)")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"cleanup: {error}", file=sys.stderr)
        return 2
    from twisted.internet import reactor  # noqa: TID251 -- a command-line entry point
    from twisted.internet.task import react

    del reactor
    code: list[int] = []

    async def go(reactor: Any) -> None:
        code.append(await run(reactor, config, yes=args.yes))

    try:
        react(lambda r: defer.ensureDeferred(go(r)))
    except SystemExit as done:
        if done.code not in (0, None):
            return int(done.code)
    return code[0] if code else 1


if __name__ == "__main__":
    sys.exit(main())
