"""Real kubectl and the official Python client against `python -m scaleagent.cluster` over TLS.

Each test serves its own cluster and gives kubectl its own HOME (kubectl caches discovery per host);
every assertion is on what the client printed or returned.
"""

from __future__ import annotations

import json
import os
import re
import stat
import textwrap
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from twisted.internet import threads

from scaleagent.cluster.__main__ import parse_args, serve
from tests.support import ClusterProcess, Collect, run, spawn, stop, until

KUBECTL = "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")

OBJECTS = textwrap.dedent(
    """\
    apiVersion: v1
    kind: Node
    metadata:
      name: node-1
      labels: {node-role.kubernetes.io/control-plane: "true", kubernetes.io/os: linux}
    status:
      conditions: [{type: Ready, status: "True"}]
      addresses: [{type: InternalIP, address: 10.0.0.11}]
      nodeInfo: {kubeletVersion: v1.32.4, osImage: Ubuntu 24.04, kernelVersion: 6.8.0,
                 containerRuntimeVersion: "containerd://1.7.24", architecture: amd64, bootID: b1,
                 kubeProxyVersion: v1.32.4, machineID: m1, operatingSystem: linux, systemUUID: u1}
    ---
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Pod
      metadata: {name: web-1, namespace: default, labels: {app: web}}
      spec: {nodeName: node-1, containers: [{name: nginx, image: nginx:1.27}]}
      status:
        phase: Running
        podIP: 10.42.0.5
        containerStatuses: [{name: nginx, ready: true, restartCount: 0, image: nginx:1.27, imageID: ""}]
    - apiVersion: v1
      kind: Pod
      metadata: {name: web-2, namespace: default, labels: {app: web}}
      spec: {nodeName: node-1, containers: [{name: nginx, image: nginx:1.27}]}
      status: {phase: Running, podIP: 10.42.0.6}
    - apiVersion: v1
      kind: Pod
      metadata: {name: db-1, namespace: default, labels: {app: db}}
      spec: {nodeName: node-2, containers: [{name: pg, image: postgres:17}]}
      status: {phase: Pending}
    - apiVersion: v1
      kind: Service
      metadata: {name: web, namespace: default}
      spec: {type: ClusterIP, clusterIP: 10.43.0.20, selector: {app: web}, ports: [{port: 80, protocol: TCP}]}
    - apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web, namespace: default, labels: {app: web}}
      spec:
        replicas: 2
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec: {containers: [{name: nginx, image: nginx:1.27}]}
      status: {replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2}
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: settings, namespace: default}
      data: {a: "1", b: "2"}
    """
)


class Kubectl:
    def __init__(self, reactor, tmp_path: Path, kubeconfig: Path) -> None:
        self.reactor = reactor
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.kubeconfig = kubeconfig

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "LANG": "C",
        }

    def start(self, *args: str) -> tuple[Collect, object]:
        return spawn(self.reactor, KUBECTL, list(args), env=self.env())

    async def run(self, *args: str) -> tuple[int, str, str]:
        return await run(self.reactor, KUBECTL, list(args), env=self.env())

    async def ok(self, *args: str) -> str:
        code, out, err = await self.run(*args)
        assert code == 0, f"kubectl {' '.join(args)} failed: {err}"
        return out


@pytest_twisted.ensureDeferred
async def test_kubectl_reads_a_served_cluster(reactor, tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text(OBJECTS)
    server = ClusterProcess(reactor, tmp_path)
    await server.start("--objects", str(objects), "--name", "sim")
    try:
        config = yaml.safe_load(server.kubeconfig.read_text())
        assert stat.S_IMODE(server.kubeconfig.stat().st_mode) == 0o600
        url = config["clusters"][0]["cluster"]["server"]
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url) and config["current-context"] == "sim"
        assert config["users"][0]["user"]["token"]
        assert f"listening on {url}" in server.proto.out.decode()

        k = Kubectl(reactor, tmp_path, server.kubeconfig)
        assert "Server Version: v1.32.4" in await k.ok("version")

        resources = (await k.ok("api-resources")).splitlines()
        assert re.match(r"NAME\s+SHORTNAMES\s+APIVERSION\s+NAMESPACED\s+KIND", resources[0])
        assert any(re.fullmatch(r"pods\s+po\s+v1\s+true\s+Pod", line.strip()) for line in resources)
        assert any(
            re.fullmatch(r"deployments\s+deploy\s+apps/v1\s+true\s+Deployment", line) for line in resources
        )
        assert any(
            re.fullmatch(r"horizontalpodautoscalers\s+hpa\s+autoscaling/v2\s+true\s+\S+", line.strip())
            for line in resources
        )
        assert len(resources) - 1 >= 55

        nodes = (await k.ok("get", "nodes", "-o", "wide")).splitlines()
        assert nodes[0].split() == [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ]
        assert re.match(
            r"node-1\s+Ready\s+control-plane\s+\d+s\s+v1\.32\.4\s+10\.0\.0\.11\s+<none>\s+Ubuntu 24\.04",
            nodes[1],
        )

        pods = (await k.ok("get", "po", "-A", "-o", "wide")).splitlines()
        assert pods[0].split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [line.split()[1] for line in pods[1:]] == ["db-1", "web-1", "web-2"]
        assert re.match(r"default\s+web-1\s+1/1\s+Running\s+0\s+\d+s\s+10\.42\.0\.5\s+node-1", pods[2])

        obj = json.loads(await k.ok("get", "pod", "web-1", "-o", "json"))
        assert (obj["kind"], obj["metadata"]["name"], obj["spec"]["nodeName"]) == ("Pod", "web-1", "node-1")
        assert int(obj["metadata"]["resourceVersion"]) > 0 and obj["metadata"]["uid"]

        names = await k.ok("get", "pods", "-o", "jsonpath={.items[*].metadata.name}")
        assert names == "db-1 web-1 web-2"

        web = (await k.ok("get", "pods", "-l", "app=web", "-o", "name")).split()
        assert web == ["pod/web-1", "pod/web-2"]
        on_node2 = (await k.ok("get", "pods", "-A", "--field-selector", "spec.nodeName=node-2")).splitlines()
        assert [line.split()[1] for line in on_node2[1:]] == ["db-1"]

        code, out, err = await k.run("get", "pods", "-A", "--chunk-size=2", "-v=6")
        assert code == 0 and [line.split()[1] for line in out.splitlines()[1:]] == ["db-1", "web-1", "web-2"]
        assert "limit=2" in err and "continue=" in err

        services = (await k.ok("get", "svc,deploy,cm")).splitlines()
        assert any(
            re.match(r"service/web\s+ClusterIP\s+10\.43\.0\.20\s+<none>\s+80/TCP", s) for s in services
        )
        assert any(re.match(r"deployment\.apps/web\s+2/2\s+2\s+2", s) for s in services)
        assert any(re.match(r"configmap/settings\s+2\s", s) for s in services)

        described = await k.ok("describe", "node", "node-1")
        assert re.search(r"^Name:\s+node-1$", described, re.M) and re.search(
            r"^Roles:\s+control-plane$", described, re.M
        )
        assert "Non-terminated Pods:          (2 in total)" in described
        described = await k.ok("describe", "deployment", "web")
        assert re.search(r"^Replicas:\s+2 desired", described, re.M)

        assert (await k.ok("get", "--raw", "/readyz")) == "ok"
        assert (await k.ok("get", "--raw", "/readyz?verbose")).rstrip().endswith("readyz check passed")

        code, out, err = await k.run("get", "ns", "nope")
        assert code != 0 and 'Error from server (NotFound): namespaces "nope" not found' in err
        code, out, err = await k.run("--token", "not-a-token", "get", "ns")
        assert code != 0 and "Unauthorized" in err
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_kubectl_watch_prints_a_change_made_through_the_store(reactor, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    served = await serve(
        reactor, parse_args(["--listen", "tcp:0:interface=127.0.0.1", "--kubeconfig", str(kubeconfig)])
    )
    pods = served.api.kinds.by_resource("", "v1", "pods")
    served.api.store.create(
        pods,
        {
            "metadata": {"name": "first", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"},
        },
    )
    k = Kubectl(reactor, tmp_path, kubeconfig)
    proto, transport = k.start("get", "pods", "-w")
    try:
        await until(reactor, lambda: b"first" in proto.out, 20, "the first pod in kubectl's output")
        served.api.store.create(
            pods,
            {
                "metadata": {"name": "second", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                "status": {"phase": "Pending"},
            },
        )
        await until(reactor, lambda: b"second" in proto.out, 20, "the second pod in kubectl's output")
        lines = proto.out.decode().splitlines()
        assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert re.match(r"first\s+0/1\s+Running\s+0", lines[1])
        assert re.match(r"second\s+0/1\s+Pending\s+0", lines[2])
        assert served.api.store.watching(pods)
    finally:
        await stop(reactor, proto, transport)
        await served.port.stopListening()
    await until(reactor, lambda: not served.api.store.watching(pods), 5, "the watch released")


@pytest_twisted.ensureDeferred
async def test_python_client_lists_and_watches(reactor, tmp_path):
    from kubernetes import client, config, watch

    objects = tmp_path / "objects.yaml"
    objects.write_text(OBJECTS)
    server = ClusterProcess(reactor, tmp_path)
    await server.start("--objects", str(objects))
    try:

        def talk():
            api_client = config.new_client_from_config(str(server.kubeconfig))
            core = client.CoreV1Api(api_client)
            everything = [p.metadata.name for p in core.list_pod_for_all_namespaces().items]
            first = core.list_namespaced_pod("default", limit=2)
            rest = core.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
            paged = [p.metadata.name for p in first.items + rest.items]
            events = [
                (e["type"], e["object"].metadata.name)
                for e in watch.Watch().stream(
                    core.list_namespaced_pod, "default", label_selector="app=web", timeout_seconds=1
                )
            ]
            try:
                core.read_namespace("nope")
                missing = None
            except client.ApiException as e:
                missing = (e.status, json.loads(e.body)["reason"])
            version = client.VersionApi(api_client).get_code().git_version
            nodes = [n.status.node_info.kubelet_version for n in core.list_node().items]
            return everything, paged, events, missing, version, nodes

        everything, paged, events, missing, version, nodes = await threads.deferToThread(talk)
        assert everything == ["db-1", "web-1", "web-2"] and paged == everything
        assert events == [("ADDED", "web-1"), ("ADDED", "web-2")]
        assert missing == (404, "NotFound") and version == "v1.32.4" and nodes == ["v1.32.4"]
    finally:
        await server.stop()
