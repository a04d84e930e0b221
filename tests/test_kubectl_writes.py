"""Real kubectl writing to `python -m scaleagent.cluster`: apply (client- and server-side), label,
annotate, every patch type, scale, edit, delete with finalizers, namespace cascade, server dry runs and a
second kubectl watching the changes.  Each test has its own server and its own HOME (kubectl caches
discovery per host), and asserts what kubectl prints."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import pytest_twisted
import yaml
from twisted.internet import defer, task

from tests.support import ClusterProcess, Collect, run, spawn, stop

KUBECTL = next(
    (p for p in ("/usr/lib/google-cloud-sdk/bin/kubectl.1.32", "/usr/bin/kubectl") if os.path.exists(p)), None
)
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


class Cluster:
    """One served cluster, and kubectl runs against it with a private HOME."""

    def __init__(self, reactor, tmp_path: Path) -> None:
        self.reactor = reactor
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.process = ClusterProcess(reactor, tmp_path)
        self.kubeconfig = self.process.kubeconfig
        self.watchers: list = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def start(self):
        return self.process.start(env=self.env())

    @defer.inlineCallbacks
    def stop(self):
        for transport, proto in self.watchers:
            yield stop(self.reactor, proto, transport, grace=5)
        yield self.process.stop()

    @defer.inlineCallbacks
    def kubectl(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None, stdin: bytes | None = None
    ):
        """Run kubectl to the end; returns (exit code, stdout, stderr) as text."""
        code, out, err = yield run(
            self.reactor, KUBECTL, list(args), env=self.env(**(env or {})), path=str(self.tmp), stdin=stdin
        )
        if ok:
            assert code == 0, f"kubectl {' '.join(args)} exited {code}\n{out}\n{err}"
        return code, out, err

    def watch(self, *args: str) -> Collect:
        """Start a long-running kubectl (stopped at the end of the test)."""
        proto, transport = spawn(self.reactor, KUBECTL, list(args), env=self.env(), path=str(self.tmp))
        self.watchers.append((transport, proto))
        return proto

    def create(self, text: str, *, ok: bool = True):
        """`kubectl create -f` of a manifest (JSON on the wire; typed `create <kind>` sends protobuf)."""
        self.count = getattr(self, "count", 0) + 1
        return self.kubectl("create", "-f", self.file(f"obj-{self.count}.yaml", text), ok=ok)

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)


@pytest.fixture
def cluster(reactor, tmp_path):
    c = Cluster(reactor, tmp_path)
    pytest_twisted.blockon(c.start())
    yield c
    pytest_twisted.blockon(c.stop())


def _ns(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def _cm(name: str, namespace: str, **data: str) -> str:
    text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    if data:
        text += "data:\n" + "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return text


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: demo
data:
  mode: fast
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-env
  namespace: demo
  labels:
    tier: web
data:
  LOG_LEVEL: info
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: demo
spec:
  size: 3
"""

APPLIED = [
    "namespace/demo",
    "configmap/app-config",
    "configmap/app-env",
    "deployment.apps/web",
    "service/web",
    "widget.example.com/w1",
]


@pytest_twisted.inlineCallbacks
def test_apply_crd_then_manifest_twice(cluster):
    _, out, _ = yield cluster.kubectl("apply", "-f", cluster.file("crd.yaml", CRD))
    assert out.strip() == "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    manifest = cluster.file("manifest.yaml", MANIFEST)
    _, out, _ = yield cluster.kubectl("apply", "-f", manifest)
    assert out.splitlines() == [f"{name} created" for name in APPLIED]
    _, out, _ = yield cluster.kubectl("apply", "-f", manifest)
    assert out.splitlines() == [f"{name} unchanged" for name in APPLIED]
    _, out, _ = yield cluster.kubectl("get", "wd", "-n", "demo", "-o", "jsonpath={.items[*].spec.size}")
    assert out == "3"
    _, out, _ = yield cluster.kubectl(
        "get", "service", "web", "-n", "demo", "-o", "jsonpath={.spec.clusterIP}"
    )
    assert re.fullmatch(r"10\.43\.\d+\.\d+", out), "the apiserver allocated a cluster IP"
    code, _, err = yield cluster.kubectl("delete", "namespace", "kube-system", ok=False)
    assert code == 1 and 'namespaces "kube-system" is forbidden: this namespace may not be deleted' in err
    # kubectl diff: a server-side dry-run patch per object, nothing stored
    code, out, _ = yield cluster.kubectl("diff", "-f", manifest, ok=False)
    assert (code, out) == (0, "")
    bigger = cluster.file("bigger.yaml", MANIFEST.replace("size: 3", "size: 4"))
    code, out, err = yield cluster.kubectl(
        "diff", "-f", bigger, ok=False, env={"KUBECTL_EXTERNAL_DIFF": "diff -u"}
    )
    assert code == 1, err
    assert "-  size: 3" in out and "+  size: 4" in out
    _, out, _ = yield cluster.kubectl("get", "widget", "w1", "-n", "demo", "-o", "jsonpath={.spec.size}")
    assert out == "3", "diff stored nothing"
    # a changed manifest is configured, and only the changed objects say so
    yield cluster.kubectl("apply", "-f", cluster.file("m2.yaml", MANIFEST.replace("size: 3", "size: 4")))
    _, out, _ = yield cluster.kubectl(
        "apply",
        "-f",
        cluster.file("m3.yaml", MANIFEST.replace("size: 3", "size: 4").replace("mode: fast", "mode: slow")),
    )
    assert "configmap/app-config configured" in out.splitlines()
    assert "widget.example.com/w1 unchanged" in out.splitlines()
    _, out, _ = yield cluster.kubectl("get", "widget", "w1", "-n", "demo", "-o", "jsonpath={.spec.size}")
    assert out == "4"


@pytest_twisted.inlineCallbacks
def test_server_side_apply(cluster):
    cm = """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: ssa
      namespace: default
    data:
      a: "1"
      b: "2"
    """
    _, out, _ = yield cluster.kubectl("apply", "--server-side", "-f", cluster.file("ssa.yaml", cm))
    assert out.strip() == "configmap/ssa serverside-applied"
    changed = cluster.file("ssa2.yaml", cm.replace('  b: "2"\n', ""))
    _, out, _ = yield cluster.kubectl("apply", "--server-side", "-f", changed)
    assert out.strip() == "configmap/ssa serverside-applied"
    _, out, _ = yield cluster.kubectl("get", "cm", "ssa", "-o", "jsonpath={.data}")
    assert out == '{"a":"1"}'
    _, out, _ = yield cluster.kubectl(
        "get", "cm", "ssa", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}"
    )
    assert out == "kubectl"
    other = cluster.file("ssa3.yaml", cm.replace('a: "1"', 'a: "9"'))
    code, _, err = yield cluster.kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", other, ok=False
    )
    assert code == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.a' in err
    _, out, _ = yield cluster.kubectl(
        "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", other
    )
    assert out.strip() == "configmap/ssa serverside-applied"
    _, out, _ = yield cluster.kubectl("get", "cm", "ssa", "-o", "jsonpath={.data.a}")
    assert out == "9"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
"""


@pytest_twisted.inlineCallbacks
def test_label_annotate_patch_scale(cluster):
    _, out, _ = yield cluster.kubectl("create", "-f", cluster.file("dep.yaml", DEPLOYMENT))
    assert out.strip() == "deployment.apps/web created"
    _, out, _ = yield cluster.kubectl("label", "deployment", "web", "tier=front")
    assert out.strip() == "deployment.apps/web labeled"
    _, out, _ = yield cluster.kubectl("annotate", "deployment", "web", "owner=team-a")
    assert out.strip() == "deployment.apps/web annotated"
    _, out, _ = yield cluster.kubectl(
        "get", "deploy", "-l", "tier=front", "-o", "jsonpath={.items[*].metadata.annotations.owner}"
    )
    assert out == "team-a"

    sidecar = '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}'
    _, out, _ = yield cluster.kubectl("patch", "deployment", "web", "-p", sidecar)
    assert out.strip() == "deployment.apps/web patched"
    _, out, _ = yield cluster.kubectl(
        "get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[*].name}"
    )
    assert sorted(out.split()) == ["nginx", "sidecar"], "strategic merge keeps the container it does not name"

    _, out, _ = yield cluster.kubectl(
        "patch", "deployment", "web", "--type", "merge", "-p", '{"spec":{"replicas":3}}'
    )
    assert out.strip() == "deployment.apps/web patched"
    json_patch = '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]'
    _, out, _ = yield cluster.kubectl("patch", "deployment", "web", "--type", "json", "-p", json_patch)
    assert out.strip() == "deployment.apps/web patched"
    _, out, _ = yield cluster.kubectl(
        "patch", "deployment", "web", "--type", "merge", "-p", '{"spec":{"replicas":3}}'
    )
    assert out.strip() == "deployment.apps/web patched (no change)"
    _, out, _ = yield cluster.kubectl(
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
    )
    assert out == "3 nginx:1.28"
    code, _, err = yield cluster.kubectl(
        "patch", "deployment", "web", "--type", "json", "-p", '[{"op":"remove","path":"/nope"}]', ok=False
    )
    assert code == 1 and "The request is invalid: the json patch could not be applied" in err

    _, out, _ = yield cluster.kubectl("scale", "deployment", "web", "--replicas=5")
    assert out.strip() == "deployment.apps/web scaled"
    _, out, _ = yield cluster.kubectl(
        "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}/{.status.readyReplicas}"
    )
    assert out == "5/5"
    code, _, err = yield cluster.kubectl(
        "scale", "deployment", "web", "--replicas=1", "--resource-version=1", ok=False
    )
    assert code == 1 and "Expected resource version to be 1" in err  # kubectl's own precondition check


EDITOR = """
import sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(text.replace("colour: blue", "colour: green"))
"""


@pytest_twisted.inlineCallbacks
def test_edit_through_kube_editor(cluster):
    cm = """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: paint
      namespace: default
    data:
      colour: blue
      size: large
    """
    yield cluster.kubectl("create", "-f", cluster.file("paint.yaml", cm))
    editor = cluster.file("editor.py", EDITOR)
    _, out, _ = yield cluster.kubectl(
        "edit", "configmap", "paint", env={"KUBE_EDITOR": f"{sys.executable} {editor}"}
    )
    assert out.strip() == "configmap/paint edited"
    _, out, _ = yield cluster.kubectl(
        "get", "configmap", "paint", "-o", "jsonpath={.data.colour} {.data.size}"
    )
    assert out == "green large"


@pytest_twisted.inlineCallbacks
def test_finalizers_and_namespace_cascade(cluster):
    objects = """
    apiVersion: v1
    kind: Namespace
    metadata:
      name: team
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: held
      namespace: team
      finalizers:
      - example.com/hold
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: plain
      namespace: team
    ---
    apiVersion: v1
    kind: Secret
    metadata:
      name: creds
      namespace: team
    stringData:
      password: hunter2
    """
    yield cluster.kubectl("create", "-f", cluster.file("team.yaml", objects))
    _, out, _ = yield cluster.kubectl("delete", "configmap", "held", "-n", "team", "--wait=false")
    assert out.strip() == 'configmap "held" deleted'
    _, out, _ = yield cluster.kubectl(
        "get", "configmap", "held", "-n", "team", "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out), "stays, marked for deletion"

    _, out, _ = yield cluster.kubectl("delete", "namespace", "team", "--wait=false")
    assert out.strip() == 'namespace "team" deleted'
    _, out, _ = yield cluster.kubectl("get", "configmaps,secrets", "-n", "team", "-o", "name")
    assert out.split() == ["configmap/held"], "the contents went, except what a finalizer holds"
    _, out, _ = yield cluster.kubectl("get", "namespace", "team", "-o", "jsonpath={.status.phase}")
    assert out == "Terminating"
    code, _, err = yield cluster.create(_cm("late", "team"), ok=False)
    assert code == 1 and "because it is being terminated" in err

    _, out, _ = yield cluster.kubectl(
        "patch",
        "configmap",
        "held",
        "-n",
        "team",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    assert out.strip() == "configmap/held patched"
    # kubectl get names the missing namespace first when the object's namespace is gone too
    code, _, err = yield cluster.kubectl("get", "configmap", "held", "-n", "team", ok=False)
    assert code == 1 and 'namespaces "team" not found' in err
    _, out, err = yield cluster.kubectl("get", "configmaps", "-n", "team")
    assert out == "" and "No resources found in team namespace." in err
    code, _, err = yield cluster.kubectl("get", "namespace", "team", ok=False)
    assert code == 1 and 'namespaces "team" not found' in err

    # Without a finalizer kubectl waits for the deletion, which is immediate.
    yield cluster.create(_ns("brief"))
    _, out, _ = yield cluster.kubectl("delete", "namespace", "brief", "--timeout=20s")
    assert out.strip() == 'namespace "brief" deleted'


@pytest_twisted.inlineCallbacks
def test_create_dry_run_server_creates_nothing(cluster):
    cm = """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: dry
      namespace: default
    data:
      k: v
    """
    path = cluster.file("dry.yaml", cm)
    _, out, _ = yield cluster.kubectl(
        "create", "-f", path, "--dry-run=server", "-o", "jsonpath={.metadata.name}/{.data.k}"
    )
    assert out == "dry/v"
    _, out, _ = yield cluster.kubectl("create", "-f", path, "--dry-run=server")
    assert out.strip() == "configmap/dry created (server dry run)"
    code, _, err = yield cluster.kubectl("get", "configmap", "dry", ok=False)
    assert code == 1 and 'configmaps "dry" not found' in err
    code, _, err = yield cluster.kubectl(
        "create", "-f", cluster.file("bad.yaml", cm.replace("name: dry", "name: Not_OK")), ok=False
    )
    assert code == 1 and "Invalid value" in err


@pytest_twisted.inlineCallbacks
def test_watch_only_sees_each_change(cluster):
    yield cluster.create(_ns("watched"))
    watcher = cluster.watch(
        "get", "configmaps", "-n", "watched", "-w", "--watch-only", "--output-watch-events"
    )
    # The watch is up once it reports a probe object (bounded: 40 probes, 0.5 s apart).
    for i in range(40):
        yield cluster.create(_cm(f"probe-{i}", "watched"))
        yield task.deferLater(cluster.reactor, 0.5, lambda: None)
        if b"probe-" in watcher.out:
            break
    assert b"probe-" in watcher.out, watcher.err.decode()
    yield cluster.create(_cm("seen", "watched", a="1"))
    yield cluster.kubectl("label", "configmap", "seen", "-n", "watched", "x=y")
    yield cluster.kubectl("patch", "configmap", "seen", "-n", "watched", "-p", '{"data":{"a":"2"}}')
    yield cluster.kubectl("delete", "configmap", "seen", "-n", "watched")
    for _ in range(100):
        if re.search(rb"DELETED\s+seen", watcher.out):
            break
        yield task.deferLater(cluster.reactor, 0.1, lambda: None)
    lines = [line.split()[:2] for line in watcher.out.decode().splitlines() if " seen " in f" {line} "]
    assert lines == [["ADDED", "seen"], ["MODIFIED", "seen"], ["MODIFIED", "seen"], ["DELETED", "seen"]]


# -- the official Python client, the other real peer ----------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_python_client_writes(cluster):
    """The `kubernetes` client (blocking, so run in a thread) creates, patches, conflicts and deletes."""
    from twisted.internet import threads

    def scenario():
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException

        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
        seen = {}
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py"), data={"a": "1"})
        created = core.create_namespaced_config_map("default", body)
        seen["created_rv"] = created.metadata.resource_version
        patched = core.patch_namespaced_config_map("py", "default", {"data": {"b": "2"}})
        seen["patched"] = patched.data
        stale = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="py", resource_version=created.metadata.resource_version),
            data={"c": "3"},
        )
        try:
            core.replace_namespaced_config_map("py", "default", stale)
        except ApiException as exc:
            seen["conflict"] = (exc.status, exc.reason, "the object has been modified" in exc.body)
        deleted = core.delete_namespaced_config_map("py", "default")  # a dict in client 37, a model before
        seen["deleted"] = deleted["status"] if isinstance(deleted, dict) else deleted.status

        dep = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="pyweb"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "pyweb"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "pyweb"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
                ),
            ),
        )
        apps.create_namespaced_deployment("default", dep)
        scale = apps.patch_namespaced_deployment_scale("pyweb", "default", {"spec": {"replicas": 4}})
        seen["scale"] = (scale.spec.replicas, scale.status.selector)

        crd = yaml.safe_load(CRD)
        ext.create_custom_resource_definition(crd)
        widget = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "pw"},
            "spec": {"size": 1},
        }
        custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", widget)
        custom.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "pw", {"spec": {"color": "red"}}
        )
        got = custom.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "pw")
        seen["widget"] = got["spec"]
        status = custom.patch_namespaced_custom_object_status(
            "example.com", "v1", "default", "widgets", "pw", {"status": {"ready": True}}
        )
        seen["widget_status"] = status["status"]
        return seen

    seen = yield threads.deferToThread(scenario)
    assert seen["patched"] == {"a": "1", "b": "2"}
    assert seen["conflict"] == (409, "Conflict", True)
    assert seen["deleted"] == "Success"
    assert seen["scale"] == (4, "app=pyweb")
    assert seen["widget"] == {"size": 1, "color": "red"}
    assert seen["widget_status"] == {"ready": True}
    _, out, _ = yield cluster.kubectl("get", "widgets", "pw", "-o", "jsonpath={.status.ready}")
    assert out == "true"


@pytest_twisted.inlineCallbacks
def test_rancher_agent_manifest_applies_and_reapplies_unchanged(cluster):
    """What Rancher's clusterdeploy does (rancher-protocol.md §5.8): `kubectl apply -f` of the import
    manifest, retried later; the Deployment must stay exactly as applied."""
    from scaleagent.sim.manifest import import_manifest

    manifest = import_manifest(
        server_url="https://rancher.example", token="t" * 54, cacerts="", server_version="v2.13.1"
    ).decode()
    path = cluster.file("agent.yaml", manifest)
    _, out, _ = yield cluster.kubectl("apply", "-f", path)
    first = out.splitlines()
    assert first and all(line.endswith((" created", " configured")) for line in first), out
    assert "deployment.apps/cattle-cluster-agent created" in first
    _, out, _ = yield cluster.kubectl("apply", "-f", path)
    assert out.splitlines() == [line.rsplit(" ", 1)[0] + " unchanged" for line in first]
    _, out, _ = yield cluster.kubectl(
        "get",
        "deployment",
        "cattle-cluster-agent",
        "-n",
        "cattle-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].name}",
    )
    assert out == "cluster-register"


@pytest_twisted.inlineCallbacks
def test_drain_cordons_and_evicts(cluster):
    """`kubectl drain` (as Rancher's UI drains a node): strategic patch to cordon, then pod evictions."""
    objects = """
    apiVersion: v1
    kind: Node
    metadata:
      name: node-1
      labels:
        kubernetes.io/hostname: node-1
    ---
    apiVersion: v1
    kind: Pod
    metadata:
      name: lonely
      namespace: default
    spec:
      nodeName: node-1
      containers:
      - name: c
        image: busybox
    """
    yield cluster.create(objects)
    _, out, err = yield cluster.kubectl("drain", "node-1", "--force", "--timeout=30s")
    assert "node/node-1 cordoned" in out
    assert "pod/lonely evicted" in out
    assert "node/node-1 drained" in out
    _, out, _ = yield cluster.kubectl("get", "node", "node-1", "-o", "jsonpath={.spec.unschedulable}")
    assert out == "true"
    _, out, err = yield cluster.kubectl("get", "pods", "-n", "default")
    assert "No resources found in default namespace." in err
    _, out, _ = yield cluster.kubectl("uncordon", "node-1")
    assert out.strip() == "node/node-1 uncordoned"


@pytest_twisted.inlineCallbacks
def test_replace_status_subresource_and_delete_by_file(cluster):
    sts = """
    apiVersion: apps/v1
    kind: StatefulSet
    metadata:
      name: db
      namespace: default
    spec:
      replicas: 1
      serviceName: db
      selector:
        matchLabels:
          app: db
      template:
        metadata:
          labels:
            app: db
        spec:
          containers:
          - name: db
            image: postgres:17
    """
    path = cluster.file("sts.yaml", sts)
    yield cluster.kubectl("create", "-f", path)
    _, out, _ = yield cluster.kubectl(
        "replace", "-f", cluster.file("sts2.yaml", sts.replace("postgres:17", "postgres:18"))
    )
    assert out.strip() == "statefulset.apps/db replaced"
    _, out, _ = yield cluster.kubectl(
        "get", "sts", "db", "-o", "jsonpath={.metadata.generation} {.spec.template.spec.containers[0].image}"
    )
    assert out == "2 postgres:18"
    _, out, _ = yield cluster.kubectl("replace", "--force", "-f", path)
    assert out.splitlines() == ['statefulset.apps "db" deleted', "statefulset.apps/db replaced"]
    _, out, _ = yield cluster.kubectl("get", "sts", "db", "-o", "jsonpath={.metadata.generation}")
    assert out == "1", "replace --force made a new object"

    _, out, _ = yield cluster.kubectl("scale", "statefulset", "db", "--replicas=3")
    assert out.strip() == "statefulset.apps/db scaled"
    condition = '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Checked"}]}}'
    _, out, _ = yield cluster.kubectl(
        "patch", "sts", "db", "--subresource=status", "--type=merge", "-p", condition
    )
    assert out.strip() == "statefulset.apps/db patched"
    _, out, _ = yield cluster.kubectl(
        "get",
        "sts",
        "db",
        "-o",
        "jsonpath={.spec.replicas} {.status.readyReplicas} {.status.conditions[0].reason}",
    )
    assert out == "3 3 Checked"
    # the main resource ignores status, the status subresource ignores spec
    yield cluster.kubectl("patch", "sts", "db", "--type=merge", "-p", '{"status":{"conditions":[]}}')
    yield cluster.kubectl(
        "patch", "sts", "db", "--subresource=status", "--type=merge", "-p", '{"spec":{"replicas":9}}'
    )
    _, out, _ = yield cluster.kubectl(
        "get", "sts", "db", "-o", "jsonpath={.spec.replicas} {.status.conditions[0].reason}"
    )
    assert out == "3 Checked"

    _, out, _ = yield cluster.kubectl("delete", "-f", path)
    assert out.strip() == 'statefulset.apps "db" deleted'
    code, _, err = yield cluster.kubectl("get", "sts", "db", ok=False)
    assert code == 1 and 'statefulsets.apps "db" not found' in err


@pytest_twisted.inlineCallbacks
def test_apply_sends_directives_the_server_honours(cluster):
    """Re-applying a Deployment with env reordered and trimmed and the strategy switched: kubectl's
    patch carries $setElementOrder, `$patch: delete` and $retainKeys; the result must be the file."""
    first = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: envy
      namespace: default
    spec:
      replicas: 1
      strategy:
        type: RollingUpdate
        rollingUpdate:
          maxSurge: 1
      selector:
        matchLabels:
          app: envy
      template:
        metadata:
          labels:
            app: envy
        spec:
          containers:
          - name: app
            image: busybox
            env:
            - name: A
              value: "1"
            - name: B
              value: "2"
            - name: C
              value: "3"
    """
    env_before = (
        '            - name: A\n              value: "1"\n            - name: C\n              value: "3"\n'
    )
    env_after = (
        '            - name: C\n              value: "3"\n            - name: A\n              value: "one"\n'
    )
    rolling = "        type: RollingUpdate\n        rollingUpdate:\n          maxSurge: 1\n"
    second = (
        first.replace('            - name: B\n              value: "2"\n', "")
        .replace(env_before, env_after)
        .replace(rolling, "        type: Recreate\n")
    )
    assert "Recreate" in second and '"one"' in second and "name: B" not in second
    yield cluster.kubectl("apply", "-f", cluster.file("envy1.yaml", first))
    # another writer adds a variable kubectl apply does not know about: it must survive
    yield cluster.kubectl("set", "env", "deployment/envy", "EXTRA=x")
    _, out, _ = yield cluster.kubectl("apply", "-f", cluster.file("envy2.yaml", second))
    assert out.strip() == "deployment.apps/envy configured"
    _, out, _ = yield cluster.kubectl(
        "get",
        "deploy",
        "envy",
        "-o",
        "jsonpath={range .spec.template.spec.containers[0].env[*]}{.name}={.value} {end}|{.spec.strategy}",
    )
    env, strategy = out.split("|")
    assert env.split() == ["C=3", "A=one", "EXTRA=x"]
    assert strategy == '{"type":"Recreate"}'
