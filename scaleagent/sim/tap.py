"""`twistd ranchersim`: run the Rancher stand-in standalone.

    twistd -n ranchersim --listen tcp:8443:interface=127.0.0.1 --ca-file ca.pem --token-file api.token

Clusters, tokens and tunnels live in memory: without `--state-dir` stopping the stand-in forgets them.
With `--state-dir DIR` the clusters and registration tokens (what Rancher keeps in its datastore) are
saved there every `--save-interval` seconds when they changed and on a clean stop, and loaded at start:
a restart is then a Rancher restart, agents reconnect with the tokens they have. The API token and the
CA can be kept across restarts (`--token-file` is reused when it already holds a token, `--tls-dir`
keeps the CA, by default `DIR/tls` with a state directory), so an agent pointed at a restarted stand-in
still authenticates and verifies it.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from scaleagent.sim.service import DEFAULT_SERVER_VERSION, RancherSim
from scaleagent.sim.store import DEFAULT_GRACE_PERIOD

DEFAULT_LISTEN = "tcp:8443:interface=127.0.0.1"


class Options(usage.Options):
    """Options of `twistd ranchersim`."""

    synopsis = "[options]"
    longdesc = (
        "A stand-in for Rancher's management API and tunnel endpoint; state in memory, or kept in "
        "--state-dir across restarts as Rancher keeps it in its datastore."
    )

    optParameters = [
        ["listen", "l", DEFAULT_LISTEN, "Twisted server endpoint to listen on (port 0: any free port)."],
        ["server-url", None, None, "URL agents are given (Rancher's server-url); default: the listener's."],
        ["hostname", None, None, "Extra DNS name or IP for the serving certificate (comma-separated)."],
        ["server-version", None, DEFAULT_SERVER_VERSION, "Rancher version the stand-in reports."],
        ["ca-file", None, "ranchersim-ca.pem", "Write the CA (the cacerts setting, PEM) to this file."],
        [
            "token-file",
            None,
            "ranchersim.token",
            "API token file: reused if it holds one, else written (0600).",
        ],
        ["url-file", None, None, "Write the URL here once listening (useful with port 0)."],
        ["tls-dir", None, None, "Keep the CA here, so it survives restarts; default: a new CA each start."],
        ["token-grace", None, str(DEFAULT_GRACE_PERIOD), "Seconds a rotated registration token stays valid."],
    ]
    optParameters.append(
        ["token-ttl", None, None, "Rotate every registration token this many seconds after it was issued."]
    )
    optParameters.append(
        ["token-delay", None, "0", "Seconds until a new cluster's default-token exists (Rancher: a moment)."]
    )
    optParameters.append(
        [
            "profile",
            None,
            "rancher-2.14",
            "Rancher's traffic through each cluster's tunnels: idle, rancher-2.13, rancher-2.14, or none "
            "(no traffic; both tunnels up is Active).",
        ]
    )
    optParameters.append(
        [
            "state-dir",
            None,
            None,
            "Keep clusters and registration tokens here across restarts (as Rancher's datastore); "
            "default: in memory only.",
        ]
    )
    optParameters.append(
        ["save-interval", None, "10", "Seconds between saves of changed state (with --state-dir)."]
    )
    optFlags = [
        ["ui-browsing", None, "Add UI browsing load: periodic LISTs of pods and events per cluster."],
        ["no-tls", None, "Serve plain HTTP (debugging only; agents expect https)."],
        ["no-local", None, "Leave out Rancher's own `local` cluster (listed, active, undeletable)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 (Twisted's name)
        try:
            self["token-grace"] = float(self["token-grace"])
        except ValueError:
            raise usage.UsageError(f"--token-grace {self['token-grace']!r}: expected seconds") from None
        if self["token-grace"] < 0:
            raise usage.UsageError("--token-grace: expected seconds >= 0")
        if self["token-ttl"] is not None:
            try:
                self["token-ttl"] = float(self["token-ttl"])
            except ValueError:
                raise usage.UsageError(f"--token-ttl {self['token-ttl']!r}: expected seconds") from None
            if not self["token-ttl"] > 0:
                raise usage.UsageError("--token-ttl: expected seconds > 0")
        try:
            self["token-delay"] = float(self["token-delay"])
        except ValueError:
            raise usage.UsageError(f"--token-delay {self['token-delay']!r}: expected seconds") from None
        if self["token-delay"] < 0:
            raise usage.UsageError("--token-delay: expected seconds >= 0")
        try:
            self["save-interval"] = float(self["save-interval"])
        except ValueError:
            raise usage.UsageError(f"--save-interval {self['save-interval']!r}: expected seconds") from None
        if not self["save-interval"] > 0:
            raise usage.UsageError("--save-interval: expected seconds > 0")
        if self["state-dir"] is not None and not self["state-dir"].strip():
            raise usage.UsageError("--state-dir: expected a directory")
        url = self["server-url"]
        if url is not None and not (url.startswith("https://") or url.startswith("http://")):
            raise usage.UsageError(f"--server-url {url!r}: expected https://host[:port]")
        if not self["listen"].strip():
            raise usage.UsageError(
                "--listen: expected a Twisted endpoint such as tcp:8443:interface=127.0.0.1"
            )
        from scaleagent.sim.profiles import NAMES

        if self["profile"] not in (*NAMES, "none"):
            raise usage.UsageError(
                f"--profile {self['profile']!r}: expected one of {', '.join(NAMES)}, none"
            )
        names = self["hostname"] or ""
        self["hostnames"] = tuple(name.strip() for name in names.split(",") if name.strip())


def build(options: Options, reactor: Any) -> RancherSim:
    """The service for parsed options (separate from makeService so tests pass their reactor)."""
    return RancherSim(
        reactor,
        listen=options["listen"],
        use_tls=not options["no-tls"],
        hostnames=options["hostnames"],
        server_url=options["server-url"],
        server_version=options["server-version"],
        grace_period=options["token-grace"],
        ca_file=options["ca-file"] or None,
        token_file=options["token-file"] or None,
        url_file=options["url-file"],
        tls_dir=options["tls-dir"],
        token_ttl=options["token-ttl"],
        token_delay=options["token-delay"],
        with_local=not options["no-local"],
        profile=None if options["profile"] == "none" else options["profile"],
        ui_browsing=bool(options["ui-browsing"]),
        state_dir=options["state-dir"],
        save_interval=options["save-interval"],
    )


def makeService(options: Options) -> IService:  # noqa: N802 (Twisted's name)
    from twisted.internet import reactor  # noqa: TID251 -- twistd has installed it by now
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, options["listen"])
    except (ValueError, TypeError, KeyError) as error:
        raise SystemExit(f"ranchersim: --listen {options['listen']!r}: {error}") from None
    from scaleagent.state import StateError

    try:
        sim = build(options, reactor)
    except StateError as error:
        raise SystemExit(f"ranchersim: --state-dir: {error}") from None
    sim.setName("ranchersim")
    sim.exit_on_listen_failure = True
    from twisted.application.service import MultiService

    from scaleagent.gcpacing import GcPacer

    top = MultiService()
    sim.setServiceParent(top)
    GcPacer(reactor).setServiceParent(top)  # Rancher's side holds as many objects as the agent's
    return top
