"""deploy/kubernetes and the Dockerfile: they parse, and their wiring matches what the code reads.

The StatefulSet's args are expanded as the kubelet expands `$(VAR)` and parsed by the plugin's own
`Options`; the ConfigMap's agent.ini is loaded by `load_config`; ports, names and labels agree across
the objects; `kubectl kustomize` (offline) shows the shard count following `replicas` from one place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from twisted.internet import utils

from scaleagent.cluster.template import parse_quantity
from scaleagent.config import TOKEN_ENV, load_config, parse_shard
from scaleagent.tap import Options

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
KUBECTL = shutil.which("kubectl")
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
#: per-cluster memory under Rancher 2.14's informers, from the scale benchmark (docs/performance.md:
#: 828-895 KiB at 5,000 clusters); see the comment in statefulset.yaml
KIB_PER_CLUSTER = 900


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d is not None]


def one(name: str) -> dict:
    (doc,) = docs(name)
    return doc


def container() -> dict:
    (c,) = one("statefulset.yaml")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c["env"]}


def expand(args: list[str], values: dict[str, str]) -> list[str]:
    """The kubelet's `$(VAR)` expansion of container args."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values[m.group(1)], a) for a in args]


def test_every_manifest_parses_and_is_named():
    files = sorted(p.name for p in KUBE.glob("*.yaml"))
    assert {"kustomization.yaml", "statefulset.yaml", "configmap.yaml", "secret.yaml", "service.yaml",
            "servicemonitor.yaml", "namespace.yaml"} <= set(files)
    for name in files:
        for doc in docs(name):
            assert doc.get("apiVersion") and doc.get("kind"), name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], name
    kustomization = one("kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (KUBE / resource).is_file()


def test_statefulset_args_give_the_shard_option_the_code_parses():
    c = container()
    env = env_of(c)
    assert env["SCALEAGENT_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX
    count = env["SCALEAGENT_SHARD_COUNT"]["value"]
    assert isinstance(count, str)  # env values are strings
    args = expand(c["args"], {"SCALEAGENT_SHARD_INDEX": "3", "SCALEAGENT_SHARD_COUNT": "8"})
    assert args[:4] == ["twistd", "-n", "--pidfile=", "scaleagent"]
    options = Options()
    options.parseOptions(args[4:])
    assert parse_shard(options["shard"]) == parse_shard("3/8")
    assert options["config"] == "/etc/scaleagent/agent.ini"
    # Every $(VAR) the args use is defined in the container's env.
    used = set(re.findall(r"\$\(([A-Za-z_0-9]+)\)", " ".join(c["args"])))
    assert used <= set(env)
    # The Rancher token reaches the code under the name it reads.
    ref = env[TOKEN_ENV]["valueFrom"]["secretKeyRef"]
    secret = one("secret.yaml")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_configmap_agent_ini_loads_and_matches_ports_mounts_and_state(tmp_path):
    sts = one("statefulset.yaml")
    c = container()
    config_map = one("configmap.yaml")
    text = config_map["data"]["agent.ini"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    # agent.ini is where --config points, from this ConfigMap.
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert mounts["config"]["mountPath"] + "/agent.ini" == "/etc/scaleagent/agent.ini"
    # The admin token file is a key of the mounted Secret.
    token_file = re.search(r"^token_file = (.+)$", text, re.M).group(1)
    secret = one("secret.yaml")
    assert volumes["tokens"]["secret"]["secretName"] == secret["metadata"]["name"]
    directory, key = token_file.rsplit("/", 1)
    assert mounts["tokens"]["mountPath"] == directory and key in secret["stringData"]
    # Load it as the pod would (token files redirected into tmp_path).
    (tmp_path / "admin-token").write_text(secret["stringData"]["admin-token"])
    ini = tmp_path / "agent.ini"
    ini.write_text(text.replace(token_file, str(tmp_path / "admin-token")))
    environ = {TOKEN_ENV: secret["stringData"]["rancher-token"]}
    config = load_config(ini, environ=environ, shard_override="2/10")
    assert config.rancher.token is not None and not config.rancher.embedded
    assert str(config.state.dir) == mounts["state"]["mountPath"]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    port = int(config.admin.listen.split(":")[1])
    (container_port,) = [p for p in c["ports"] if p["name"] == "metrics"]
    assert container_port["containerPort"] == port
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"]["port"] == "metrics" and probe["httpGet"]["path"] == "/healthz"


def test_service_and_servicemonitor_find_the_pods_metrics_port():
    sts = one("statefulset.yaml")
    service = one("service.yaml")
    monitor = one("servicemonitor.yaml")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"  # headless
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert all(labels.get(k) == v for k, v in sts["spec"]["selector"]["matchLabels"].items())
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert all(service["metadata"]["labels"].get(k) == v
               for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def test_resource_requests_cover_the_clusters_per_pod():
    kustomization = one("kustomization.yaml")
    (replicas,) = [r["count"] for r in kustomization["replicas"] if r["name"] == "scaleagent"]
    text = one("configmap.yaml")["data"]["agent.ini"]
    count = int(re.search(r"^count = (\d+)$", text, re.M).group(1))
    per_pod = -(-count // replicas)
    resources = container()["resources"]
    request = parse_quantity(resources["requests"]["memory"])
    limit = parse_quantity(resources["limits"]["memory"])
    assert request >= per_pod * KIB_PER_CLUSTER * 1024 and limit > request
    assert parse_quantity(resources["requests"]["cpu"]) >= 1


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest_twisted.ensureDeferred
async def test_kustomize_keeps_the_shard_count_equal_to_replicas(tmp_path):
    async def build(directory: Path) -> list[dict]:
        out, err, code = await utils.getProcessOutputAndValue(
            KUBECTL, ["kustomize", str(directory)], env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
        )
        assert code == 0, err.decode()
        return [d for d in yaml.safe_load_all(out) if d]

    def wiring(objects: list[dict]) -> tuple[int, str]:
        (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
        (c,) = sts["spec"]["template"]["spec"]["containers"]
        return sts["spec"]["replicas"], env_of(c)["SCALEAGENT_SHARD_COUNT"]["value"]

    objects = await build(KUBE)
    replicas, count = wiring(objects)
    assert count == str(replicas) and replicas == one("kustomization.yaml")["replicas"][0]["count"]
    assert all(o["metadata"].get("namespace") == "scaleagent" for o in objects if o["kind"] != "Namespace")
    # Change replicas in the one place: the shard count follows.
    copy = tmp_path / "kube"
    shutil.copytree(KUBE, copy)
    text = (copy / "kustomization.yaml").read_text()
    (copy / "kustomization.yaml").write_text(re.sub(r"count: \d+", "count: 7", text))
    assert wiring(await build(copy)) == (7, "7")


def test_dockerfile_builds_from_files_that_exist_and_runs_the_plugin():
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    args = json.loads(cmd)
    assert args[:4] == ["twistd", "-n", "--pidfile=", "scaleagent"]
    Options().parseOptions(args[4:])
    # The state-dir rewrite in the image matches the shipped agent.ini line.
    assert re.search(r"^dir = \.\./state$", (ROOT / "etc" / "agent.ini").read_text(), re.M)
    assert "USER 10001" in text
    assert one("statefulset.yaml")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
