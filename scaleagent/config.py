"""The agent's INI configuration: parsed once, validated whole, then immutable.

Every error is a `ConfigError` whose text names the file, the section, the key, the bad value and
what was expected, so a bad start is one clear line instead of a traceback.  Secrets (the Rancher
API token) never appear in an error or a repr.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleagent.redact import Secret

TOKEN_ENV = "SCALEAGENT_RANCHER_TOKEN"
EMBEDDED = "embedded"
PROFILES = ("idle", "rancher-2.13", "rancher-2.14")
RECONNECT_MODES = ("jittered", "real-agent")
NAME_DIGITS = 5
MAX_CLUSTERS = 10**NAME_DIGITS

_API_TOKEN = re.compile(r"^token-[a-z0-9]+:[A-Za-z0-9]+$")
_CHECKSUM = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
_NAME_PREFIX = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9-])?$")
_SHARD = re.compile(r"^(\d+)/(\d+)$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the file."""


@dataclass(frozen=True)
class Shard:
    """This process's slice of the cluster index space: it owns `index % count == index_`."""

    index: int = 0
    count: int = 1

    def owns(self, cluster_index: int) -> bool:
        return cluster_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class RancherConfig:
    url: str = EMBEDDED
    embedded_profile: str = "rancher-2.14"
    token_file: Path | None = None
    token: Secret | None = field(default=None, repr=False)
    ca_checksum: str = ""
    insecure: bool = False
    cleanup_on_stop: bool = False

    @property
    def embedded(self) -> bool:
        return self.url == EMBEDDED


@dataclass(frozen=True)
class ClustersConfig:
    count: int = 50
    name_prefix: str = "scale-"
    shard: Shard = Shard()
    ramp_per_second: float = 20.0
    reconnect: str = "jittered"
    reconnect_per_second: float = 50.0
    template: Path | None = None

    def name(self, index: int) -> str:
        """The fixed Rancher name of cluster `index`; adoption after a restart depends on it."""
        return f"{self.name_prefix}{index:0{NAME_DIGITS}d}"

    def owned_indices(self) -> range | list[int]:
        return range(self.shard.index, self.count, self.shard.count)


@dataclass(frozen=True)
class ApiserverConfig:
    address: str = "10.43.0.1:443"
    version: str = "v1.32.4"
    anonymous: bool = False

    @property
    def host(self) -> str:
        return split_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.address)[1]


@dataclass(frozen=True)
class StateConfig:
    dir: Path = Path("state")


@dataclass(frozen=True)
class AdminConfig:
    listen: str = "tcp:8180:interface=127.0.0.1"
    token_file: Path | None = None
    per_shard_port: bool = False
    token: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ChurnConfig:
    """Churn and faults at a steady rate (`scaleagent.churn`); every rate 0 = off (the default)."""

    leave_per_minute: float = 0.0
    rejoin_after: float = 60.0
    drop_fraction: float = 0.0
    drop_interval: float = 300.0
    unhealthy_per_minute: float = 0.0
    unhealthy_for: float = 120.0
    slow_per_minute: float = 0.0
    slow_for: float = 120.0
    slow_latency: float = 2.0
    pods_per_minute: float = 0.0
    pod_lifetime: float = 60.0


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration of one scaleagent process."""

    source: Path | None = None
    rancher: RancherConfig = RancherConfig()
    clusters: ClustersConfig = ClustersConfig()
    apiserver: ApiserverConfig = ApiserverConfig()
    state: StateConfig = StateConfig()
    admin: AdminConfig = AdminConfig()
    churn: ChurnConfig = ChurnConfig()


# -- value parsers: each returns the value or raises ValueError(<what was expected>) ---------------


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        expected = f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(expected) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(expected)
        return value

    return parse


def _positive_number(raw: str) -> float:
    expected = "a number > 0"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not value > 0 or value == float("inf"):
        raise ValueError(expected)
    return value


def _non_negative(raw: str) -> float:
    expected = "a number >= 0"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(expected)
    return value


def _fraction(raw: str) -> float:
    expected = "a fraction between 0 and 1, for example 0.05"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(expected) from None
    if not 0 <= value <= 1:
        raise ValueError(expected)
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return raw

    return parse


def _rancher_url(raw: str) -> str:
    if raw == EMBEDDED:
        return raw
    if not re.match(r"^https://[^/\s:]+(:\d+)?/?$", raw):
        raise ValueError("an https:// URL of the Rancher server (no path), or 'embedded'")
    return raw.rstrip("/")


def _checksum(raw: str) -> str:
    if raw and not _CHECKSUM.match(raw):
        raise ValueError("64 lowercase hex digits (the sha256 that Rancher calls CATTLE_CA_CHECKSUM)")
    return raw


def _name_prefix(raw: str) -> str:
    if not _NAME_PREFIX.match(raw) or len(raw) + NAME_DIGITS > 63:
        raise ValueError(
            "lowercase letters, digits and '-', starting with a letter, at most "
            f"{63 - NAME_DIGITS} characters (a DNS label once the index is appended)"
        )
    return raw


def parse_shard(raw: str) -> Shard:
    """`i/n` with 0 <= i < n; shared by the config file and the `--shard` option."""
    match = _SHARD.match(raw.strip())
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise ValueError("i/n with 0 <= i < n, for example 0/1 or 2/4")
    return Shard(int(match.group(1)), int(match.group(2)))


def split_host_port(raw: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); raises ValueError for anything else."""
    expected = "host:port, with an IPv6 host in brackets, for example 10.43.0.1:443"
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", raw) or re.match(r"^([^:\[\]\s]+):(\d+)$", raw)
    if not match:
        raise ValueError(expected)
    host, port = match.group(1), int(match.group(2))
    if not 0 < port < 65536:
        raise ValueError(expected)
    if raw.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    return host, port


def _address(raw: str) -> str:
    split_host_port(raw)
    return raw


def _version(raw: str) -> str:
    if not _VERSION.match(raw):
        raise ValueError("a plain Kubernetes version such as v1.32.4 (no k3s/rke2 suffix)")
    return raw


def _endpoint(raw: str) -> str:
    if not re.match(r"^(tcp|tcp6|ssl|unix):", raw):
        raise ValueError("a Twisted server endpoint string such as tcp:8180:interface=127.0.0.1")
    return raw


# -- the schema: section -> key -> parser (None = a path, resolved against the file) ---------------

_PATH = "path"
_SCHEMA: dict[str, dict[str, Any]] = {
    "rancher": {
        "url": _rancher_url,
        "embedded_profile": _choice(*PROFILES),
        "token_file": _PATH,
        "ca_checksum": _checksum,
        "insecure": _boolean,
        "cleanup_on_stop": _boolean,
    },
    "clusters": {
        "count": _integer(0, MAX_CLUSTERS),
        "name_prefix": _name_prefix,
        "shard": parse_shard,
        "ramp_per_second": _positive_number,
        "reconnect": _choice(*RECONNECT_MODES),
        "reconnect_per_second": _positive_number,
        "template": _PATH,
    },
    "apiserver": {
        "address": _address,
        "version": _version,
        "anonymous": _boolean,
    },
    "state": {
        "dir": _PATH,
    },
    "admin": {
        "listen": _endpoint,
        "token_file": _PATH,
        "per_shard_port": _boolean,
    },
    "churn": {
        "leave_per_minute": _non_negative,
        "rejoin_after": _positive_number,
        "drop_fraction": _fraction,
        "drop_interval": _positive_number,
        "unhealthy_per_minute": _non_negative,
        "unhealthy_for": _positive_number,
        "slow_per_minute": _non_negative,
        "slow_for": _positive_number,
        "slow_latency": _positive_number,
        "pods_per_minute": _non_negative,
        "pod_lifetime": _positive_number,
    },
}


def load_config(
    path: str | os.PathLike[str],
    environ: dict[str, str] | None = None,
    shard_override: str | None = None,
) -> AgentConfig:
    """Read and validate the INI at `path`; `shard_override` is the `--shard` option."""
    source = Path(path)
    environ = dict(os.environ) if environ is None else environ
    parser = configparser.ConfigParser(interpolation=None, default_section="__no_defaults__")
    try:
        with source.open(encoding="utf-8") as handle:
            parser.read_file(handle, source=str(source))
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: cannot read the config file: {error}") from None
    except configparser.Error as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"{source}: not a valid INI file: {first_line}") from None
    return _build(source, parser, environ, shard_override)


def _build(
    source: Path, parser: configparser.ConfigParser, environ: dict[str, str], shard_override: str | None
) -> AgentConfig:
    base = source.parent
    values: dict[str, dict[str, Any]] = {}
    for section in parser.sections():
        if section not in _SCHEMA:
            raise ConfigError(
                f"{source}: [{section}]: unknown section; expected one of "
                + ", ".join(f"[{name}]" for name in _SCHEMA)
            )
        values[section] = {}
        for key, raw in parser.items(section):
            parse = _SCHEMA[section].get(key)
            if parse is None:
                raise ConfigError(
                    f"{source}: [{section}] {key}: unknown key; expected one of "
                    + ", ".join(_SCHEMA[section])
                )
            raw = raw.strip()
            if parse == _PATH:
                values[section][key] = (base / raw) if raw else None
                continue
            try:
                values[section][key] = parse(raw)
            except ValueError as error:
                raise ConfigError(f"{source}: [{section}] {key} = {raw!r}: expected {error}") from None

    if shard_override is not None:
        try:
            values.setdefault("clusters", {})["shard"] = parse_shard(shard_override)
        except ValueError as error:
            raise ConfigError(f"--shard {shard_override!r}: expected {error}") from None

    rancher = values.get("rancher", {})
    if not rancher.get("url", RancherConfig.url) == EMBEDDED:
        rancher["token"] = _rancher_token(source, rancher.get("token_file"), environ)
    elif rancher.get("token_file"):
        rancher["token"] = _rancher_token(source, rancher["token_file"], environ)

    admin = values.get("admin", {})
    if admin.get("token_file"):
        admin["token"] = _read_secret(source, "admin", admin["token_file"], None)
    listen = admin.get("listen", AdminConfig.listen)
    if admin.get("per_shard_port"):
        shard = values.get("clusters", {}).get("shard", Shard())
        try:
            listen = admin["listen"] = offset_port(listen, shard.index)
        except ValueError as error:
            raise ConfigError(f"{source}: [admin] per_shard_port with listen = {listen!r}: {error}") from None
    if not admin.get("token_file") and not _is_loopback_endpoint(listen):
        raise ConfigError(
            f"{source}: [admin] listen = {listen!r}: expected a loopback address "
            "(interface=127.0.0.1 or ::1) unless [admin] token_file is set"
        )

    state = values.get("state", {})
    if "dir" in state and state["dir"] is None:
        raise ConfigError(f"{source}: [state] dir = '': expected a directory path")

    return AgentConfig(
        source=source,
        rancher=RancherConfig(**rancher),
        clusters=ClustersConfig(**values.get("clusters", {})),
        apiserver=ApiserverConfig(**values.get("apiserver", {})),
        state=StateConfig(**(state or {"dir": base / StateConfig.dir})),
        admin=AdminConfig(**admin),
        churn=ChurnConfig(**values.get("churn", {})),
    )


def _rancher_token(source: Path, token_file: Path | None, environ: dict[str, str]) -> Secret:
    """The API token from `token_file`, else from the environment; never from the command line."""
    token = _read_secret(source, "rancher", token_file, environ.get(TOKEN_ENV))
    if not _API_TOKEN.match(token.reveal()):
        origin = f"[rancher] token_file = {str(token_file)!r}" if token_file else f"${TOKEN_ENV}"
        raise ConfigError(
            f"{source}: {origin}: the API token (value hidden) is not of the form token-xxxxx:secret"
        )
    return token


def _read_secret(source: Path, section: str, token_file: Path | None, fallback: str | None) -> Secret:
    if token_file is None:
        if not fallback:
            raise ConfigError(
                f"{source}: [rancher] token_file: not set and ${TOKEN_ENV} is empty; expected a file "
                "holding a Rancher API token (token-xxxxx:secret)"
            )
        return Secret(fallback.strip())
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"{source}: [{section}] token_file = {str(token_file)!r}: cannot read it ({error.strerror})"
        ) from None
    if not text:
        raise ConfigError(f"{source}: [{section}] token_file = {str(token_file)!r}: the file is empty")
    return Secret(text)


def offset_port(description: str, offset: int) -> str:
    """A tcp/tcp6/ssl endpoint string with its port increased by `offset` (shards side by side)."""
    parts = description.replace("\\:", "\0").split(":")
    if parts[0] not in ("tcp", "tcp6", "ssl") or len(parts) < 2:
        raise ValueError("expected a tcp:, tcp6: or ssl: endpoint with a port")
    for i, part in enumerate(parts[1:], 1):
        key, eq, value = part.rpartition("=")
        if (i == 1 and not eq and value.isdigit()) or key == "port":
            port = int(value) + offset
            if not 0 < port < 65536:
                raise ValueError(f"port {value} + shard index {offset} is not a valid port")
            parts[i] = (key + eq if eq else "") + str(port)
            return ":".join(parts).replace("\0", "\\:")
    raise ValueError("expected a tcp:, tcp6: or ssl: endpoint with a port")


def _is_loopback_endpoint(description: str) -> bool:
    if description.startswith("unix:"):
        return True
    match = re.search(r"interface=([^:]+)", description.replace("\\:", "\0"))
    if not match:
        return False
    try:
        return ipaddress.ip_address(match.group(1).replace("\0", ":")).is_loopback
    except ValueError:
        return match.group(1) == "localhost"
