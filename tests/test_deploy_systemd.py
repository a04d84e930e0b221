"""etc/systemd/scaleagent@.service: `systemd-analyze verify` (when installed), the keys the issue asks
for, and its ExecStart actually run by /bin/sh the way systemd would (specifiers and `$$` resolved,
the environment file and the credentials directory in place, twistd replaced by a recorder) so the
shard option and the token reach scaleagent under the names it reads.
"""

from __future__ import annotations

import configparser
import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import utils

from scaleagent.agent import FDS_RESERVED
from scaleagent.config import TOKEN_ENV, parse_shard
from scaleagent.tap import Options

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "etc" / "systemd" / "scaleagent@.service"
ENV_FILE = ROOT / "etc" / "systemd" / "scaleagent.env"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    text = UNIT.read_text().replace("\\\n", " ")  # systemd's line continuations
    parser.read_string(text)
    return parser


def env_file() -> dict[str, str]:
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest_twisted.ensureDeferred
async def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    target = tmp_path / "scaleagent@.service"
    shutil.copy(UNIT, target)
    out, err, code = await utils.getProcessOutputAndValue(
        SYSTEMD_ANALYZE, ["verify", str(target)], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    )
    text = (out + err).decode()
    assert code == 0, text
    assert str(target) not in text, text  # verify prints problems of the file prefixed by its path
    # The same check on a broken copy is reported (so silence above means something).
    broken = tmp_path / "broken@.service"
    broken.write_text(UNIT.read_text().replace("Type=simple", "Type=simpel"))
    out, err, _ = await utils.getProcessOutputAndValue(
        SYSTEMD_ANALYZE, ["verify", str(broken)], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    )
    assert "simpel" in (out + err).decode()


def test_unit_has_the_keys_the_issue_asks_for():
    service = unit()["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/scaleagent/scaleagent.env"
    assert int(service["LimitNOFILE"]) >= 2 * 10_000 + FDS_RESERVED
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] in ("strict", "full", "yes")
    assert service["StateDirectory"] == "scaleagent"
    assert service["LoadCredential"].startswith("rancher-token:")
    exec_start = service["ExecStart"]
    assert "twistd -n --pidfile= scaleagent" in exec_start
    assert '--shard "%i/$$SCALEAGENT_SHARDS"' in exec_start
    assert "[Install]" in UNIT.read_text() and unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest_twisted.ensureDeferred
async def test_exec_start_passes_shard_and_token_as_scaleagent_reads_them(tmp_path):
    service = unit()["Service"]
    exec_start = service["ExecStart"]
    argv0, _, rest = exec_start.partition(" ")
    assert argv0 == "/bin/sh" and rest.startswith("-c '") and rest.endswith("'")
    script = rest[len("-c '") : -1]
    # What systemd does before running it: %i → the instance, $$ → $, the venv path → our recorder.
    recorder = tmp_path / "twistd"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\nprintf "%s" "$SCALEAGENT_RANCHER_TOKEN" '
                        '> "$RECORD.token"\n')
    recorder.chmod(0o755)
    script = script.replace("%i", "2").replace("$$", "$").replace("/opt/scaleagent/venv/bin/twistd",
                                                                    str(recorder))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "rancher-token").write_text("token-abcde:s3cretvalue")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CREDENTIALS_DIRECTORY": str(credentials),
           "RECORD": str(tmp_path / "argv"), **env_file()}
    out, err, code = await utils.getProcessOutputAndValue("/bin/sh", ["-c", script], env=env)
    assert code == 0, err.decode()
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:3] == ["-n", "--pidfile=", "scaleagent"]
    options = Options()
    options.parseOptions(argv[3:])
    assert parse_shard(options["shard"]) == parse_shard(f"2/{env_file()['SCALEAGENT_SHARDS']}")
    assert options["config"] == env_file()["SCALEAGENT_CONFIG"]
    assert (tmp_path / "argv.token").read_text() == "token-abcde:s3cretvalue"
    assert TOKEN_ENV == "SCALEAGENT_RANCHER_TOKEN" and TOKEN_ENV in exec_start
