"""Seed objects from the cluster template: realistic, consistent, deterministic, shared, validated."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from scaleagent.cluster import template as tpl
from scaleagent.cluster.template import ClusterTemplate, SeedBuilder, TemplateError

ROOT = Path(__file__).resolve().parent.parent
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def builder() -> SeedBuilder:
    return SeedBuilder(
        ClusterTemplate.default(),
        ca_pem=CA.encode(),
        kubernetes_version="v1.31.7",
        rancher=tpl.RancherInfo(server_url="https://rancher.test", ca_checksum="ab" * 32),
    )


@pytest.fixture(scope="module")
def seed(builder):
    return builder.seed(7, "scale-00007", rancher_token="t" * 54)


def by_kind(seed, kind):
    return [o for o in seed.objects() if o["kind"] == kind]


def find(seed, kind, name, namespace=None):
    for o in seed.objects():
        meta = o["metadata"]
        if o["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return o
    raise AssertionError(f"{kind} {namespace}/{name} not in the seed")


def quantity(text: str) -> Fraction:
    return tpl.parse_quantity(text)


# -- the objects -----------------------------------------------------------------------------------


def test_namespaces_and_their_basics(seed):
    namespaces = {o["metadata"]["name"] for o in by_kind(seed, "Namespace")}
    assert set(tpl.SYSTEM_NAMESPACES) <= namespaces
    assert len(namespaces) == len(tpl.SYSTEM_NAMESPACES) + seed.knobs.extra_namespaces
    for namespace in namespaces:
        root = find(seed, "ConfigMap", "kube-root-ca.crt", namespace)
        assert root["data"]["ca.crt"] == CA
        find(seed, "ServiceAccount", "default", namespace)


def test_nodes_roles_labels_capacity_and_version(seed):
    nodes = by_kind(seed, "Node")
    assert len(nodes) == seed.knobs.nodes >= 2
    first, rest = nodes[0], nodes[1:]
    assert first["metadata"]["name"].startswith("scale-00007-")
    labels = first["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/control-plane"] == "true"
    assert labels["node-role.kubernetes.io/etcd"] == "true"
    assert "node-role.kubernetes.io/worker" not in labels
    for node in rest:
        labels = node["metadata"]["labels"]
        assert labels["node-role.kubernetes.io/worker"] == "true"
        assert "node-role.kubernetes.io/control-plane" not in labels
    for node in nodes:
        meta, status = node["metadata"], node["status"]
        assert meta["labels"]["kubernetes.io/os"] == "linux"
        assert meta["labels"]["kubernetes.io/arch"] == "amd64"
        assert meta["labels"]["kubernetes.io/hostname"] == meta["name"]
        assert status["nodeInfo"]["kubeletVersion"] == "v1.31.7"
        ready = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
        assert quantity(status["capacity"]["cpu"]) == 4
        assert quantity(status["capacity"]["memory"]) == 16 * 2**30
        assert quantity(status["allocatable"]["memory"]) < quantity(status["capacity"]["memory"])
        assert status["capacity"]["pods"] == "110"
    ips = [n["status"]["addresses"][0]["address"] for n in nodes]
    assert len(set(ips)) == len(ips)


def test_pod_requests_annotations_add_up(seed):
    pods = by_kind(seed, "Pod")
    for node in by_kind(seed, "Node"):
        name = node["metadata"]["name"]
        mine = [p for p in pods if p["spec"]["nodeName"] == name]
        assert mine, "every node runs pods in the default template"
        wanted_requests: dict[str, Fraction] = Counter()
        wanted_limits: dict[str, Fraction] = Counter()
        for pod in mine:
            for container in pod["spec"]["containers"]:
                for key, value in container["resources"].get("requests", {}).items():
                    wanted_requests[key] += quantity(value)
                for key, value in container["resources"].get("limits", {}).items():
                    wanted_limits[key] += quantity(value)
        annotations = node["metadata"]["annotations"]
        requests = json.loads(annotations["management.cattle.io/pod-requests"])
        limits = json.loads(annotations["management.cattle.io/pod-limits"])
        assert requests.pop("pods") == str(len(mine))
        assert {k: quantity(v) for k, v in requests.items()} == dict(wanted_requests)
        assert {k: quantity(v) for k, v in limits.items()} == dict(wanted_limits)
        # Go's json.Marshal of a map: sorted keys, compact
        raw = annotations["management.cattle.io/pod-requests"]
        assert raw == json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True)


def test_pods_run_on_the_nodes_and_belong_to_replicasets(seed):
    nodes = {n["metadata"]["name"] for n in by_kind(seed, "Node")}
    replica_sets = {
        (r["metadata"]["namespace"], r["metadata"]["uid"]): r for r in by_kind(seed, "ReplicaSet")
    }
    deployments = {(d["metadata"]["namespace"], d["metadata"]["uid"]): d for d in by_kind(seed, "Deployment")}
    pods = by_kind(seed, "Pod")
    per_rs = Counter()
    for pod in pods:
        meta = pod["metadata"]
        assert pod["spec"]["nodeName"] in nodes
        assert pod["status"]["phase"] == "Running"
        assert all(s["ready"] and "running" in s["state"] for s in pod["status"]["containerStatuses"])
        assert [s["name"] for s in pod["status"]["containerStatuses"]] == [
            c["name"] for c in pod["spec"]["containers"]
        ]
        (owner,) = meta["ownerReferences"]
        assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
        rs = replica_sets[(meta["namespace"], owner["uid"])]
        assert meta["name"].startswith(rs["metadata"]["name"] + "-")
        assert meta["labels"]["pod-template-hash"] == rs["metadata"]["labels"]["pod-template-hash"]
        per_rs[owner["uid"]] += 1
        (rs_owner,) = rs["metadata"]["ownerReferences"]
        deployment = deployments[(meta["namespace"], rs_owner["uid"])]
        assert deployment["metadata"]["name"] == rs_owner["name"]
    for (_namespace, uid), rs in replica_sets.items():
        assert per_rs[uid] == rs["spec"]["replicas"] == rs["status"]["readyReplicas"]
    names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments.values()}
    for wanted in ("coredns", "metrics-server", "local-path-provisioner"):
        assert ("kube-system", wanted) in names
    assert ("cattle-system", "cattle-cluster-agent") in names
    app_pods = [p for p in pods if p["metadata"]["labels"].get("app") == "web"]
    assert len(app_pods) == seed.knobs.nodes * seed.knobs.pods_per_node
    pod_ips = [p["status"]["podIP"] for p in pods]
    assert len(set(pod_ips)) == len(pod_ips)


def test_services_and_endpoints(seed):
    kubernetes = find(seed, "Service", "kubernetes", "default")
    assert kubernetes["spec"]["clusterIP"] == "10.43.0.1"
    assert kubernetes["spec"]["ports"][0]["port"] == 443
    control_plane_ip = by_kind(seed, "Node")[0]["status"]["addresses"][0]["address"]
    endpoints = find(seed, "Endpoints", "kubernetes", "default")
    assert endpoints["subsets"][0]["addresses"] == [{"ip": control_plane_ip}]
    assert find(seed, "Service", "kube-dns", "kube-system")["spec"]["clusterIP"] == "10.43.0.10"
    dns = find(seed, "Endpoints", "kube-dns", "kube-system")
    coredns_pods = [p for p in by_kind(seed, "Pod") if p["metadata"]["labels"].get("k8s-app") == "kube-dns"]
    assert {a["ip"] for a in dns["subsets"][0]["addresses"]} == {p["status"]["podIP"] for p in coredns_pods}
    assert {p["port"] for p in dns["subsets"][0]["ports"]} == {53, 9153}
    slices = [
        s
        for s in by_kind(seed, "EndpointSlice")
        if s["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
    ]
    assert len(slices) == 1 and slices[0]["endpoints"][0]["addresses"] == [coredns_pods[0]["status"]["podIP"]]
    agent = find(seed, "Endpoints", "cattle-cluster-agent", "cattle-system")
    assert len(agent["subsets"][0]["addresses"]) == 1


def test_leases_and_events(seed):
    nodes = by_kind(seed, "Node")
    leases = by_kind(seed, "Lease")
    assert {(lease["metadata"]["namespace"], lease["metadata"]["name"]) for lease in leases} == {
        ("kube-node-lease", n["metadata"]["name"]) for n in nodes
    }
    for lease in leases:
        assert lease["spec"]["holderIdentity"] == lease["metadata"]["name"]
        assert lease["spec"]["leaseDurationSeconds"] == 40
    events = by_kind(seed, "Event")
    assert 2 <= len(events) <= 10 * len(nodes)
    assert {e["involvedObject"]["name"] for e in events} == {n["metadata"]["name"] for n in nodes}


def test_import_manifest_objects(seed):
    find(seed, "ServiceAccount", "cattle", "cattle-system")
    admin = find(seed, "ClusterRole", "cattle-admin")
    assert {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]} in admin["rules"]
    binding = find(seed, "ClusterRoleBinding", "cattle-admin-binding")
    assert binding["roleRef"]["name"] == "cattle-admin"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cattle", "namespace": "cattle-system"}]
    secret_name = tpl.credential_name("https://rancher.test", "t" * 54)
    secret = find(seed, "Secret", secret_name, "cattle-system")
    import base64

    assert base64.b64decode(secret["data"]["token"]).decode() == "t" * 54
    deployment = find(seed, "Deployment", "cattle-cluster-agent", "cattle-system")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "cluster-register"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CATTLE_CREDENTIAL_NAME"] == secret_name
    assert env["CATTLE_SERVER"] == "https://rancher.test"
    assert env["CATTLE_CA_CHECKSUM"] == "ab" * 32
    service = find(seed, "Service", "cattle-cluster-agent", "cattle-system")
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {(80, 80), (443, 444)}


def test_credential_name_matches_the_rancher_stand_in():
    manifest = pytest.importorskip("scaleagent.sim.manifest")
    assert tpl.credential_name("https://r.example", "abc") == manifest.credential_name(
        "https://r.example", "abc"
    )


def test_identities_are_unique_and_owner_references_resolve(seed):
    keys = [
        (o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in seed.objects()
    ]
    assert len(keys) == len(set(keys))
    uids = {o["metadata"]["uid"]: o for o in seed.objects()}
    assert len(uids) == len(keys)
    for obj in seed.objects():
        for ref in obj["metadata"].get("ownerReferences", ()):
            owner = uids[ref["uid"]]
            assert (owner["kind"], owner["metadata"]["name"]) == (ref["kind"], ref["name"])


def test_crds_configmaps_secrets_follow_the_knobs(seed):
    k = seed.knobs
    assert len(by_kind(seed, "CustomResourceDefinition")) == k.crds
    data_namespaces = 1 + k.extra_namespaces
    config_maps = [c for c in by_kind(seed, "ConfigMap") if c["metadata"]["name"] != "kube-root-ca.crt"]
    assert len(config_maps) == k.config_maps_per_namespace * data_namespaces
    secrets = [s for s in by_kind(seed, "Secret") if s["metadata"]["name"].startswith("secret-")]
    assert len(secrets) == k.secrets_per_namespace * data_namespaces
    assert all(len(c["data"]["settings.conf"]) == 128 for c in config_maps)
    for crd in by_kind(seed, "CustomResourceDefinition"):
        names = crd["spec"]["names"]
        assert crd["metadata"]["name"] == f"{names['plural']}.{crd['spec']['group']}"
        assert {"type": "Established", "status": "True"}.items() <= crd["status"]["conditions"][1].items()


KINDS_TO_MODELS = {
    "Namespace": "V1Namespace",
    "Node": "V1Node",
    "Pod": "V1Pod",
    "Deployment": "V1Deployment",
    "ReplicaSet": "V1ReplicaSet",
    "Service": "V1Service",
    "Endpoints": "V1Endpoints",
    "EndpointSlice": "V1EndpointSlice",
    "ConfigMap": "V1ConfigMap",
    "Secret": "V1Secret",
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
    "PriorityClass": "V1PriorityClass",
    "StorageClass": "V1StorageClass",
    "CustomResourceDefinition": "V1CustomResourceDefinition",
    "Lease": "V1Lease",
    "Event": "CoreV1Event",
}


def _leaves(value, path=""):
    if isinstance(value, dict):
        if not value:
            yield path
        for key, item in value.items():
            if item is not None:
                yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from _leaves(item, f"{path}[{number}]")
    else:
        yield path


def test_every_object_round_trips_through_the_official_kubernetes_client(seed):
    """The official client's models reject bad shapes and drop unknown fields: nothing may be lost."""
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.client.ApiClient()

    assert set(KINDS_TO_MODELS) == {o["kind"] for o in seed.objects()}
    for obj in seed.objects():
        model = client.deserialize(json.dumps(obj), KINDS_TO_MODELS[obj["kind"]], "application/json")
        back = client.sanitize_for_serialization(model)
        assert set(_leaves(obj)) == set(_leaves(back)), obj["kind"] + " " + obj["metadata"]["name"]


# -- determinism and sharing -----------------------------------------------------------------------


def test_same_index_same_objects_even_from_a_new_builder(seed):
    other = SeedBuilder(
        ClusterTemplate.load(ROOT / "etc" / "cluster.yaml"),
        ca_pem=CA,
        kubernetes_version="v1.31.7",
        rancher=tpl.RancherInfo(server_url="https://rancher.test", ca_checksum="ab" * 32),
    ).seed(7, "scale-00007", rancher_token="t" * 54)
    assert json.dumps(list(other.objects()), sort_keys=True) == json.dumps(
        list(seed.objects()), sort_keys=True
    )


def test_knobs_vary_with_the_index_and_never_give_fewer_than_two_nodes():
    template = ClusterTemplate.default()
    draws = [template.knobs(index) for index in range(300)]
    assert all(2 <= k.nodes <= 3 for k in draws)
    assert {k.nodes for k in draws} == {2, 3}
    assert {k.pods_per_node for k in draws} == {2, 3, 4}
    assert len(set(draws)) > 20
    assert draws == [template.knobs(index) for index in range(300)]


def test_shared_objects_are_shared_instances_and_name_no_cluster(builder):
    a = builder.seed(1, "scale-00001")
    same_knobs = next(i for i in range(2, 500) if builder.template.knobs(i) == a.knobs)
    b = builder.seed(same_knobs, f"scale-{same_knobs:05d}")
    assert a.shared is b.shared  # one tuple per distinct knob combination
    c = builder.seed(2, "scale-00002")
    common = {id(o) for o in a.shared} & {id(o) for o in c.shared}
    assert len(common) >= 40
    for obj in a.shared:
        assert "scale-0000" not in json.dumps(obj)
    # per-cluster pods share their container specs (memory) but are distinct objects
    pod_a, pod_c = by_kind(a, "Pod")[0], by_kind(c, "Pod")[0]
    assert pod_a is not pod_c
    assert pod_a["spec"]["containers"] is pod_c["spec"]["containers"]


def test_per_cluster_objects_name_the_cluster(builder):
    one = builder.seed(1, "scale-00001")
    assert {o["kind"] for o in one.own} >= {"Node", "Pod", "Lease", "Event", "Endpoints"}
    for node in by_kind(one, "Node"):
        assert node["metadata"]["name"].startswith("scale-00001-")


def test_zero_extra_namespaces_puts_apps_in_default():
    template = ClusterTemplate.parse(
        HEADER + "spec:\n  extraNamespaces: 0\n  crds: 0\n"
    )
    seed = SeedBuilder(template, ca_pem=CA).seed(0, "c0")
    assert {o["metadata"]["name"] for o in by_kind(seed, "Namespace")} == set(tpl.SYSTEM_NAMESPACES)
    web = find(seed, "Deployment", "web", "default")
    assert web["spec"]["replicas"] == seed.knobs.nodes * seed.knobs.pods_per_node
    assert not by_kind(seed, "CustomResourceDefinition")


def test_dns_api_host_keeps_the_default_service_ip():
    seed = SeedBuilder(ClusterTemplate.default(), ca_pem=CA, api_host="api.example", api_port=6443).seed(
        0, "c"
    )
    service = find(seed, "Service", "kubernetes", "default")
    assert service["spec"]["clusterIP"] == "10.43.0.1" and service["spec"]["ports"][0]["port"] == 6443


# -- the YAML --------------------------------------------------------------------------------------


def test_shipped_yaml_is_the_built_in_default():
    shipped = ClusterTemplate.load(ROOT / "etc" / "cluster.yaml")
    assert dataclasses.replace(shipped, source="") == dataclasses.replace(
        ClusterTemplate.default(), source=""
    )
    assert ClusterTemplate.load(None) == ClusterTemplate.default()


def test_knob_forms():
    header = "apiVersion: scaleagent.rancher.io/v1\nkind: ClusterTemplate\nspec:\n"
    t = ClusterTemplate.parse(header + "  nodes: 5\n  podsPerNode: {min: 1, max: 2}\n  crds: ' 0 - 1 '\n")
    assert t.nodes == tpl.Range(5, 5)
    assert t.pods_per_node == tpl.Range(1, 2)
    assert t.crds == tpl.Range(0, 1)


HEADER = "apiVersion: scaleagent.rancher.io/v1\nkind: ClusterTemplate\n"


@pytest.mark.parametrize(
    "text, key, expected",
    [
        (HEADER + "spec:\n  nodes: 1\n", "spec.nodes", "at least 2 nodes"),
        (HEADER + "spec:\n  nodes: 1-3\n", "spec.nodes", "at least 2 nodes"),
        (HEADER + "spec:\n  nodes: 3-2\n", "spec.nodes", "0 <= min <= max"),
        (HEADER + "spec:\n  nodes: many\n", "spec.nodes", 'inclusive range "min-max"'),
        (HEADER + "spec:\n  nodes: true\n", "spec.nodes", "whole number"),
        (HEADER + "spec:\n  configMapsPerNamespace: 9999999\n", "spec.configMapsPerNamespace", "at most"),
        (HEADER + "spec:\n  podsPerNod: 3\n", "spec.podsPerNod", "unknown key"),
        (HEADER + "spec:\n  node: {memory: lots}\n", "spec.node.memory", "Kubernetes quantity"),
        (HEADER + "spec:\n  node: {cpu: 0}\n", "spec.node.cpu", "> 0"),
        (HEADER + "spec:\n  node: {os: plan9}\n", "spec.node.os", "one of linux, windows"),
        (HEADER + "spec:\n  node: {gpus: 2}\n", "spec.node.gpus", "unknown key"),
        (HEADER + "spec:\n  dataBytes: -1\n", "spec.dataBytes", "whole number from 0"),
        (
            HEADER + "spec:\n  appPods: {requests: {cpu: 0.0001m}}\n",
            "spec.appPods.requests.cpu",
            "millicores",
        ),
        (HEADER + "spec:\n  systemWorkloads: {}\n", "spec.systemWorkloads", "list of Deployments"),
        (
            HEADER + "spec:\n  systemWorkloads: [{name: Bad_Name, containers: [{name: a, image: b}]}]\n",
            "spec.systemWorkloads[0].name",
            "DNS label",
        ),
        (
            HEADER + "spec:\n  systemWorkloads: [{name: a}]\n",
            "spec.systemWorkloads[0].containers",
            "non-empty list",
        ),
        (
            HEADER
            + "spec:\n  systemWorkloads: [{name: a, containers: [{name: c, image: i, ports: [{name: p, "
            "containerPort: 70000}]}]}]\n",
            "spec.systemWorkloads[0].containers[0].ports[0].containerPort",
            "65535",
        ),
        (
            HEADER + "spec:\n  systemWorkloads: [{name: a, containers: [{name: c, image: i}]}, "
            "{name: a, containers: [{name: c, image: i}]}]\n",
            "spec.systemWorkloads[1].name",
            "duplicate",
        ),
        (HEADER + "spec: [1]\n", "spec", "mapping of knobs"),
        ("apiVersion: v1\nkind: ClusterTemplate\n", "apiVersion", "expected scaleagent.rancher.io/v1"),
        ("apiVersion: scaleagent.rancher.io/v1\nkind: Cluster\n", "kind", "expected ClusterTemplate"),
        (HEADER + "extra: 1\n", "extra", "unknown key"),
    ],
)
def test_bad_templates_name_file_key_and_expectation(tmp_path, text, key, expected):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError) as caught:
        ClusterTemplate.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(HEADER + "spec:\n  nodes: [2\n  crds: 1\n")
    with pytest.raises(TemplateError, match=rf"^{path}: not valid YAML at line \d+, column \d+"):
        ClusterTemplate.load(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(TemplateError, match="cannot be read"):
        ClusterTemplate.load(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(TemplateError, match="expected a mapping with apiVersion"):
        ClusterTemplate.load(tmp_path / "list.yaml")


def test_quantity_helpers():
    assert tpl.parse_quantity("250m") == Fraction(1, 4)
    assert tpl.parse_quantity("16Gi") == 16 * 2**30
    assert tpl.parse_quantity(4) == 4
    assert tpl.format_cpu(1500) == "1500m" and tpl.format_cpu(2000) == "2"
    assert tpl.format_bytes(1024 * 2**20) == "1Gi" and tpl.format_bytes(582 * 2**20) == "582Mi"
    assert tpl.format_bytes(1000) == "1000"
    with pytest.raises(ValueError):
        tpl.parse_quantity("1.5.5Gi")
