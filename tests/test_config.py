"""The INI configuration: every key, its default, and the exact error for bad values."""

from pathlib import Path

import pytest

from scaleagent.config import (
    AgentConfig,
    ConfigError,
    Shard,
    load_config,
    parse_shard,
    split_host_port,
)

GOOD_TOKEN = "token-abcde:0123456789abcdefXYZ"
HOST_PORT = "host:port, with an IPv6 host in brackets, for example 10.43.0.1:443"
PLAIN_VERSION = "a plain Kubernetes version such as v1.32.4 (no k3s/rke2 suffix)"


def write(tmp_path: Path, text: str, name: str = "agent.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, environ: dict | None = None, **kwargs) -> AgentConfig:
    return load_config(write(tmp_path, text), environ=environ or {}, **kwargs)


def error_of(tmp_path: Path, text: str, environ: dict | None = None, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ, **kwargs)
    return str(caught.value)


def test_empty_file_gives_every_default(tmp_path):
    config = load(tmp_path, "")
    assert config.rancher.url == "embedded"
    assert config.rancher.embedded
    assert config.rancher.embedded_profile == "rancher-2.14"
    assert config.rancher.token_file is None
    assert config.rancher.token is None
    assert config.rancher.ca_checksum == ""
    assert config.rancher.insecure is False
    assert config.rancher.cleanup_on_stop is False
    assert config.clusters.count == 50
    assert config.clusters.name_prefix == "scale-"
    assert config.clusters.shard == Shard(0, 1)
    assert config.clusters.ramp_per_second == 20.0
    assert config.clusters.reconnect == "jittered"
    assert config.clusters.reconnect_per_second == 50.0
    assert config.clusters.template is None
    assert config.apiserver.address == "10.43.0.1:443"
    assert (config.apiserver.host, config.apiserver.port) == ("10.43.0.1", 443)
    assert config.apiserver.version == "v1.32.4"
    assert config.apiserver.anonymous is False
    assert config.state.dir == tmp_path / "state"
    assert config.admin.listen == "tcp:8180:interface=127.0.0.1"
    assert config.admin.token_file is None
    assert config.admin.per_shard_port is False
    churn = config.churn
    assert (churn.leave_per_minute, churn.rejoin_after) == (0.0, 60.0)
    assert (churn.drop_fraction, churn.drop_interval) == (0.0, 300.0)
    assert (churn.unhealthy_per_minute, churn.unhealthy_for) == (0.0, 120.0)
    assert (churn.slow_per_minute, churn.slow_for, churn.slow_latency) == (0.0, 120.0, 2.0)
    assert (churn.pods_per_minute, churn.pod_lifetime) == (0.0, 60.0)


def test_every_key_is_read(tmp_path):
    (tmp_path / "api-token").write_text(GOOD_TOKEN + "\n")
    (tmp_path / "admin-token").write_text("s3cret-admin\n")
    checksum = "ab" * 32
    config = load(
        tmp_path,
        f"""
[rancher]
url = https://rancher.example.com:8443/
embedded_profile = idle
token_file = api-token
ca_checksum = {checksum}
insecure = yes
cleanup_on_stop = true
[clusters]
count = 12
name_prefix = load-
shard = 1/3
ramp_per_second = 2.5
reconnect = real-agent
reconnect_per_second = 7
template = templates/big.yaml
[apiserver]
address = [fd00::1]:6443
version = v1.31.2
anonymous = on
[state]
dir = /var/lib/scaleagent
[admin]
listen = tcp:9000:interface=0.0.0.0
token_file = admin-token
""",
    )
    assert config.rancher.url == "https://rancher.example.com:8443"
    assert not config.rancher.embedded
    assert config.rancher.embedded_profile == "idle"
    assert config.rancher.token_file == tmp_path / "api-token"
    assert config.rancher.token.reveal() == GOOD_TOKEN
    assert config.rancher.ca_checksum == checksum
    assert config.rancher.insecure is True
    assert config.rancher.cleanup_on_stop is True
    assert config.clusters.count == 12
    assert config.clusters.name_prefix == "load-"
    assert config.clusters.shard == Shard(1, 3)
    assert config.clusters.ramp_per_second == 2.5
    assert config.clusters.reconnect == "real-agent"
    assert config.clusters.reconnect_per_second == 7.0
    assert config.clusters.template == tmp_path / "templates/big.yaml"
    assert (config.apiserver.host, config.apiserver.port) == ("fd00::1", 6443)
    assert config.apiserver.version == "v1.31.2"
    assert config.apiserver.anonymous is True
    assert config.state.dir == Path("/var/lib/scaleagent")
    assert config.admin.listen == "tcp:9000:interface=0.0.0.0"
    assert config.admin.token.reveal() == "s3cret-admin"


def test_config_is_immutable(tmp_path):
    config = load(tmp_path, "")
    with pytest.raises(AttributeError):
        config.clusters.count = 3


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    config = load_config(write(sub, "[state]\ndir = ../data\n[clusters]\ntemplate = c.yaml\n"), environ={})
    assert config.state.dir == sub / "../data"
    assert config.clusters.template == sub / "c.yaml"


def test_token_from_environment_when_no_token_file(tmp_path):
    config = load(
        tmp_path, "[rancher]\nurl = https://r.example\n", environ={"SCALEAGENT_RANCHER_TOKEN": GOOD_TOKEN}
    )
    assert config.rancher.token.reveal() == GOOD_TOKEN


def test_token_file_wins_over_environment(tmp_path):
    (tmp_path / "t").write_text("token-zzzzz:fromfile")
    config = load(
        tmp_path,
        "[rancher]\nurl = https://r.example\ntoken_file = t\n",
        environ={"SCALEAGENT_RANCHER_TOKEN": GOOD_TOKEN},
    )
    assert config.rancher.token.reveal() == "token-zzzzz:fromfile"


def test_secrets_do_not_appear_in_repr(tmp_path):
    (tmp_path / "t").write_text(GOOD_TOKEN)
    config = load(tmp_path, "[rancher]\nurl = https://r.example\ntoken_file = t\n")
    assert "0123456789abcdef" not in repr(config)
    assert "0123456789abcdef" not in str(config.rancher.token)


def test_shard_override_from_the_command_line(tmp_path):
    config = load(tmp_path, "[clusters]\nshard = 0/2\n", shard_override="1/2")
    assert config.clusters.shard == Shard(1, 2)


def test_owned_indices_follow_the_shard(tmp_path):
    config = load(tmp_path, "[clusters]\ncount = 10\nshard = 1/3\n")
    assert list(config.clusters.owned_indices()) == [1, 4, 7]
    assert config.clusters.name(7) == "scale-00007"


# -- errors: the exact text, naming file, section, key, value and expectation ---------------------


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("rancher", "url", "http://r", "an https:// URL of the Rancher server (no path), or 'embedded'"),
        ("rancher", "embedded_profile", "busy", "one of idle, rancher-2.13, rancher-2.14"),
        (
            "rancher",
            "ca_checksum",
            "ABC",
            "64 lowercase hex digits (the sha256 that Rancher calls CATTLE_CA_CHECKSUM)",
        ),
        ("rancher", "insecure", "maybe", "true or false"),
        ("rancher", "cleanup_on_stop", "2", "true or false"),
        ("clusters", "count", "ten", "a whole number >= 0 and <= 100000"),
        ("clusters", "count", "-1", "a whole number >= 0 and <= 100000"),
        ("clusters", "count", "100001", "a whole number >= 0 and <= 100000"),
        (
            "clusters",
            "name_prefix",
            "Scale_",
            "lowercase letters, digits and '-', starting with a letter, at most 58 characters "
            "(a DNS label once the index is appended)",
        ),
        ("clusters", "shard", "2/2", "i/n with 0 <= i < n, for example 0/1 or 2/4"),
        ("clusters", "ramp_per_second", "0", "a number > 0"),
        ("clusters", "ramp_per_second", "fast", "a number > 0"),
        ("clusters", "reconnect", "always", "one of jittered, real-agent"),
        ("clusters", "reconnect_per_second", "-5", "a number > 0"),
        ("apiserver", "address", "10.43.0.1", HOST_PORT),
        ("apiserver", "address", "[zz::1]:443", HOST_PORT),
        ("apiserver", "version", "v1.32.4+k3s1", PLAIN_VERSION),
        ("apiserver", "anonymous", "nope", "true or false"),
        ("admin", "listen", "8180", "a Twisted server endpoint string such as tcp:8180:interface=127.0.0.1"),
        ("churn", "leave_per_minute", "-1", "a number >= 0"),
        ("churn", "pods_per_minute", "lots", "a number >= 0"),
        ("churn", "drop_fraction", "1.5", "a fraction between 0 and 1, for example 0.05"),
        ("churn", "rejoin_after", "0", "a number > 0"),
        ("churn", "slow_latency", "-2", "a number > 0"),
    ],
)
def test_bad_value_names_file_section_key_value_and_expectation(tmp_path, section, key, value, expected):
    message = error_of(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert message == f"{tmp_path / 'agent.ini'}: [{section}] {key} = {value!r}: expected {expected}"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.ini", environ={})
    assert str(caught.value) == f"{tmp_path / 'missing.ini'}: config file not found"


def test_not_an_ini_file(tmp_path):
    message = error_of(tmp_path, "count = 3\n")
    assert message.startswith(f"{tmp_path / 'agent.ini'}: not a valid INI file: ")


def test_unknown_section_and_key(tmp_path):
    assert error_of(tmp_path, "[cluster]\ncount = 3\n") == (
        f"{tmp_path / 'agent.ini'}: [cluster]: unknown section; expected one of "
        "[rancher], [clusters], [apiserver], [state], [admin], [churn]"
    )
    assert error_of(tmp_path, "[clusters]\ncuont = 3\n") == (
        f"{tmp_path / 'agent.ini'}: [clusters] cuont: unknown key; expected one of "
        "count, name_prefix, shard, ramp_per_second, reconnect, reconnect_per_second, template"
    )


def test_real_rancher_needs_a_token(tmp_path):
    assert error_of(tmp_path, "[rancher]\nurl = https://r.example\n") == (
        f"{tmp_path / 'agent.ini'}: [rancher] token_file: not set and $SCALEAGENT_RANCHER_TOKEN is empty; "
        "expected a file holding a Rancher API token (token-xxxxx:secret)"
    )


def test_unreadable_token_file(tmp_path):
    assert error_of(tmp_path, "[rancher]\nurl = https://r.example\ntoken_file = nope\n") == (
        f"{tmp_path / 'agent.ini'}: [rancher] token_file = {str(tmp_path / 'nope')!r}: "
        "cannot read it (No such file or directory)"
    )


def test_malformed_token_is_reported_without_its_value(tmp_path):
    (tmp_path / "t").write_text("not-a-token-but-secret-42")
    message = error_of(tmp_path, "[rancher]\nurl = https://r.example\ntoken_file = t\n")
    assert message == (
        f"{tmp_path / 'agent.ini'}: [rancher] token_file = {str(tmp_path / 't')!r}: "
        "the API token (value hidden) is not of the form token-xxxxx:secret"
    )
    env_message = error_of(
        tmp_path, "[rancher]\nurl = https://r.example\n", environ={"SCALEAGENT_RANCHER_TOKEN": "secret-42"}
    )
    assert "secret-42" not in env_message
    assert "$SCALEAGENT_RANCHER_TOKEN: the API token (value hidden)" in env_message


def test_admin_off_loopback_needs_a_token(tmp_path):
    assert error_of(tmp_path, "[admin]\nlisten = tcp:8180:interface=0.0.0.0\n") == (
        f"{tmp_path / 'agent.ini'}: [admin] listen = 'tcp:8180:interface=0.0.0.0': expected a loopback "
        "address (interface=127.0.0.1 or ::1) unless [admin] token_file is set"
    )
    assert error_of(tmp_path, "[admin]\nlisten = tcp:8180\n").endswith(
        "unless [admin] token_file is set"
    )
    assert load(tmp_path, "[admin]\nlisten = tcp6:8180:interface=\\:\\:1\n").admin.token is None


def test_bad_shard_override(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "", shard_override="3")
    assert str(caught.value) == "--shard '3': expected i/n with 0 <= i < n, for example 0/1 or 2/4"


def test_parse_helpers():
    assert parse_shard(" 2/4 ") == Shard(2, 4)
    assert Shard(2, 4).owns(6) and not Shard(2, 4).owns(7)
    assert split_host_port("[::1]:443") == ("::1", 443)
    with pytest.raises(ValueError):
        split_host_port("host:0")


def test_churn_keys_are_read(tmp_path):
    config = load(
        tmp_path,
        "[churn]\nleave_per_minute = 6\nrejoin_after = 5\ndrop_fraction = 0.25\ndrop_interval = 30\n"
        "unhealthy_per_minute = 2\nunhealthy_for = 10\nslow_per_minute = 1.5\nslow_for = 20\n"
        "slow_latency = 0.5\npods_per_minute = 600\npod_lifetime = 15\n",
    )
    churn = config.churn
    assert (churn.leave_per_minute, churn.rejoin_after, churn.drop_fraction, churn.drop_interval) == (
        6.0, 5.0, 0.25, 30.0
    )
    assert (churn.unhealthy_per_minute, churn.unhealthy_for) == (2.0, 10.0)
    assert (churn.slow_per_minute, churn.slow_for, churn.slow_latency) == (1.5, 20.0, 0.5)
    assert (churn.pods_per_minute, churn.pod_lifetime) == (600.0, 15.0)


def test_per_shard_port_moves_the_admin_port_by_the_shard_index(tmp_path):
    text = "[admin]\nlisten = tcp:8180:interface=127.0.0.1\nper_shard_port = true\n"
    assert load(tmp_path, text, shard_override="3/8").admin.listen == "tcp:8183:interface=127.0.0.1"
    assert load(tmp_path, text + "[clusters]\nshard = 1/2\n").admin.listen == "tcp:8181:interface=127.0.0.1"
    plain = load(tmp_path, "[admin]\nlisten = tcp:8180:interface=127.0.0.1\n", shard_override="3/8")
    assert plain.admin.listen == "tcp:8180:interface=127.0.0.1"
    message = error_of(tmp_path, "[admin]\nlisten = unix:/run/a.sock\nper_shard_port = true\n")
    assert message.endswith("[admin] per_shard_port with listen = 'unix:/run/a.sock': expected a tcp:, tcp6: "
                            "or ssl: endpoint with a port")


def test_shipped_config_loads():
    config = load_config(Path(__file__).parent.parent / "etc" / "agent.ini", environ={})
    assert config.rancher.embedded
    assert config.clusters.count == 50
