"""`python -m scaleagent.cluster`: serve one simulated cluster's apiserver on a local TLS port.

    python -m scaleagent.cluster --listen tcp:0:interface=127.0.0.1 --kubeconfig ./kubeconfig
    kubectl --kubeconfig ./kubeconfig get ns

A CA and serving certificate are made at start; the kubeconfig (real port, the CA, a server name the
certificate holds, an admin token inline) is written atomically only once the port listens, so a
script can wait for the file.  `--objects FILE` seeds the cluster from a YAML file (documents or Lists).
Users debug cluster templates with this; tests and benchmarks drive it.

With `--template`, `--cluster-index` or `--state-dir` it serves cluster N exactly as the agent would
(`scaleagent.cluster.cluster`): seeded from the template (built-in when not given), its changes saved
in and restored from the state directory (with its CA), node liveness on; `--objects` are then written
on top of the seed.

    python -m scaleagent.cluster --kubeconfig ./kc --template etc/cluster.yaml --cluster-index 7 \
        --state-dir ./state
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaleagent.apiserver import controllers
from scaleagent.apiserver.auth import TokenAuthenticator
from scaleagent.apiserver.discovery import version_info
from scaleagent.apiserver.request import DEFAULT_VERSION, ApiContext
from scaleagent.apiserver.resource import TRACE_REQUESTS, make_site
from scaleagent.cluster import bootstrap
from scaleagent.cluster.pki import ClusterPKI, load_or_create
from scaleagent.redact import logger
from scaleagent.state import atomic_write

log = logger()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scaleagent.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--listen", default="tcp:0:interface=127.0.0.1", help="Twisted endpoint to listen on (TLS is added)"
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write the kubeconfig")
    parser.add_argument("--name", default="scaleagent", help="cluster/context name in the kubeconfig")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="the Kubernetes version /version reports")
    parser.add_argument("--anonymous", action="store_true", help="accept requests without a valid token")
    parser.add_argument("--objects", type=Path, help="YAML file of objects to seed the cluster with")
    parser.add_argument("--template", type=Path, help="cluster template YAML (as [clusters] template)")
    parser.add_argument(
        "--cluster-index", type=int, help="which cluster of the template to serve (its knobs and names)"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="state directory: CA and this cluster's changes, kept across runs"
    )
    parser.add_argument(
        "--trace-requests",
        action="store_true",
        help="log one line per request (method, path, Content-Type, code) to stderr",
    )
    args = parser.parse_args(list(argv))
    try:
        version_info(args.version)
    except ValueError as e:
        parser.error(str(e))
    if args.cluster_index is not None and args.cluster_index < 0:
        parser.error(f"--cluster-index {args.cluster_index}: expected >= 0")
    return args


def load_objects(path: Path) -> list[dict[str, Any]]:
    """Objects from a YAML file: documents, each an object or a `List` of objects."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: {e}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: every document must be an object")
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List") and "items" in doc:
            out.extend(doc.get("items") or [])
        else:
            out.append(doc)
    return out


def kubeconfig(
    name: str, server: str, ca_pem: bytes, token: str, tls_server_name: str | None = None
) -> bytes:
    """A kubeconfig that kubectl uses as is: the CA inline and the admin token inline."""
    cluster: dict[str, Any] = {
        "server": server,
        "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
    }
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _client_host(listen_host: str) -> str:
    """The address clients dial: the listening IP, or loopback for a wildcard address."""
    try:
        ip = ipaddress.ip_address(listen_host)
    except ValueError:
        return listen_host or "127.0.0.1"
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return str(ip)


@dataclass
class ServedCluster:
    """One cluster being served: what tests and callers need to reach and change it."""

    api: ApiContext
    port: Any
    server: str
    token: str
    pki: ClusterPKI
    #: the `SimulatedCluster` when served from a template (`--template/--cluster-index/--state-dir`)
    cluster: Any = None

    def stop(self) -> Any:
        """Stop listening; a template cluster saves its changes (else that happens at shutdown)."""
        if self.cluster is not None:
            self.cluster.clusters.stop()
        return self.port.stopListening()


def _from_template(reactor: Any, args: argparse.Namespace) -> tuple[ApiContext, ClusterPKI, Any]:
    """Cluster `--cluster-index` of the template, as the agent builds it; saved on shutdown."""
    from scaleagent.cluster.cluster import ClusterConfig, ClusterSet

    clusters = ClusterSet(
        reactor,
        ClusterConfig(
            version=args.version, anonymous=args.anonymous, template=args.template, state_dir=args.state_dir
        ),
    )
    cluster = clusters.cluster(args.cluster_index or 0, args.name)
    api = cluster.api
    if args.objects:
        for obj in load_objects(args.objects):
            rt = api.kinds.by_api_version_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if rt is None:
                raise ValueError(f"{args.objects}: unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
            api.store.put(rt, obj)
    clusters.start()
    reactor.addSystemEventTrigger("before", "shutdown", clusters.stop)
    return api, clusters.pki, cluster


async def serve(reactor: Any, args: argparse.Namespace) -> ServedCluster:
    """Build the cluster, listen with TLS, then write the kubeconfig (atomically, mode 0600)."""
    from twisted.internet.endpoints import serverFromString
    from twisted.protocols.tls import TLSMemoryBIOFactory

    cluster = None
    if any(getattr(args, key, None) is not None for key in ("template", "cluster_index", "state_dir")):
        api, pki, cluster = _from_template(reactor, args)
    else:
        extra = load_objects(args.objects) if args.objects else []
        store = bootstrap.new_store(bootstrap.seed(extra) if extra else None)
        pki = load_or_create(None)
        auth = TokenAuthenticator(anonymous=args.anonymous)
        api = ApiContext(store, reactor, auth=auth, version=args.version)
        api.ca_pem = pki.ca_cert_pem
    if args.trace_requests:
        api.extras[TRACE_REQUESTS] = True
    controllers.start(api)
    token = api.issue_admin_token()
    site = make_site(api)
    factory = TLSMemoryBIOFactory(pki.server_context_factory(), False, site, clock=reactor)
    port = await serverFromString(reactor, args.listen).listen(factory)
    address = port.getHost()
    host = _client_host(getattr(address, "host", "127.0.0.1"))
    hostport = f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
    api.address = hostport
    server = f"https://{hostport}"
    # The certificate holds loopback IPs and `localhost`; for any other address, name one it holds.
    tls_name = None if pki.covers(host) else "kubernetes.default.svc"
    atomic_write(args.kubeconfig, kubeconfig(args.name, server, pki.ca_cert_pem, token, tls_name), mode=0o600)
    log.info(
        "serving cluster {name} at {server}; kubeconfig {path}",
        name=args.name,
        server=server,
        path=str(args.kubeconfig),
    )
    print(f"listening on {server}", flush=True)
    return ServedCluster(api, port, server, token, pki, cluster)


def main(argv: Sequence[str] | None = None) -> None:
    from twisted.internet import defer, task
    from twisted.logger import globalLogBeginner, textFileLogObserver

    args = parse_args(sys.argv[1:] if argv is None else argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    async def run(reactor: Any) -> None:
        try:
            await serve(reactor, args)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        await defer.Deferred()  # serve until SIGINT/SIGTERM stops the reactor

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
