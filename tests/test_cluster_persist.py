"""A cluster's changes survive a restart: saved atomically, restored verbatim, corruption reported."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from twisted.internet.task import Clock

from scaleagent.apiserver.writes import register_crd
from scaleagent.cluster import persist
from scaleagent.cluster.cluster import SAVE_BATCH, SAVE_PAUSE, ClusterSet
from scaleagent.state import CorruptStateFile, StateDir

NOW = 1_780_000_000.0
NAME = "scale-00001"


def clock_at(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def make_set(path, clock=None, **kw) -> ClusterSet:
    return ClusterSet(clock or clock_at(), state_dir=path, save_interval=kw.pop("save_interval", 0), **kw)


def types(cluster):
    kinds = cluster.api.kinds
    return {
        "deployments": kinds.by_resource("apps", "v1", "deployments"),
        "configmaps": kinds.by_resource("", "v1", "configmaps"),
        "secrets": kinds.by_resource("", "v1", "secrets"),
        "serviceaccounts": kinds.by_resource("", "v1", "serviceaccounts"),
        "crds": kinds.by_resource("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    }


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "settings.management.cattle.io"},
    "spec": {
        "group": "management.cattle.io",
        "names": {"kind": "Setting", "plural": "settings", "singular": "setting", "listKind": "SettingList"},
        "scope": "Cluster",
        "versions": [{"name": "v3", "served": True, "storage": True}],
    },
}


def write_like_rancher(cluster) -> dict:
    """Patch the agent Deployment, create a ConfigMap and a CRD with an object, delete a seed ConfigMap."""
    t = types(cluster)
    store = cluster.store
    agent = copy.deepcopy(store.get(t["deployments"], "cattle-system", "cattle-cluster-agent"))
    agent["spec"]["template"]["spec"]["containers"][0]["image"] = "rancher/rancher-agent:v2.14.1"
    patched = store.replace(t["deployments"], agent)
    written = {"metadata": {"name": "written", "namespace": "default"}, "data": {"k": "v"}}
    store.create(t["configmaps"], written)
    store.delete(t["configmaps"], "kube-system", "kube-root-ca.crt")
    register_crd(store, store.create(t["crds"], CRD))
    setting = cluster.api.kinds.by_resource("management.cattle.io", "v3", "settings")
    store.create(setting, {"metadata": {"name": "server-url"}, "value": "https://rancher.example"})
    return patched


def test_restart_keeps_what_was_written(tmp_path):
    first = make_set(tmp_path)
    cluster = first.cluster(1, NAME)
    patched = write_like_rancher(cluster)
    rv = cluster.store.resource_version
    first.stop()
    assert (tmp_path / "clusters" / f"{NAME}.json").exists()

    again = make_set(tmp_path).cluster(1, NAME)
    assert again.restore_error is None
    t = types(again)
    store = again.store
    assert store.resource_version == rv
    restored = store.get(t["deployments"], "cattle-system", "cattle-cluster-agent")
    assert restored == patched  # verbatim: image, uid, resourceVersion, generation
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == "rancher/rancher-agent:v2.14.1"
    assert store.get(t["configmaps"], "default", "written")["data"] == {"k": "v"}
    assert store.lookup(t["configmaps"], "kube-system", "kube-root-ca.crt") is None
    setting = again.api.kinds.by_resource("management.cattle.io", "v3", "settings")
    assert setting is not None and store.get(setting, None, "server-url")["value"] == "https://rancher.example"
    # the counter continues; a watch from the restored resourceVersion works and sees new writes
    events = []
    store.watch(t["configmaps"], lambda kind, entry: events.append(kind), resource_version=str(rv))
    created = store.create(t["configmaps"], {"metadata": {"name": "later", "namespace": "default"}})
    assert int(created["metadata"]["resourceVersion"]) == rv + 1 and events == ["ADDED"]


def test_tokens_rancher_created_stay_valid_after_restart(tmp_path):
    clock = clock_at()
    first = make_set(tmp_path, clock)
    cluster = first.cluster(2, "scale-00002")
    t = types(cluster)
    store = cluster.store
    account = {"metadata": {"name": "cattle-impersonation-u-abc", "namespace": "default"}}
    store.create(t["serviceaccounts"], account)
    store.create(
        t["secrets"],
        {
            "metadata": {
                "name": "cattle-impersonation-u-abc-token-xyz",
                "namespace": "default",
                "annotations": {"kubernetes.io/service-account.name": "cattle-impersonation-u-abc"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    clock.advance(0)  # the token controller fills the Secret on the next turn
    secret = store.get(t["secrets"], "default", "cattle-impersonation-u-abc-token-xyz")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert cluster.api.auth.user(token) is not None
    first.stop()

    again = make_set(tmp_path, clock_at()).cluster(2, "scale-00002")
    user = again.api.auth.user(token)
    assert user is not None and user.name == "system:serviceaccount:default:cattle-impersonation-u-abc"
    assert again.api.auth.user(again.token) is not None


def test_truncated_state_file_is_reported_and_moved_aside(tmp_path):
    first = make_set(tmp_path)
    write_like_rancher(first.cluster(1, NAME))
    first.stop()
    path = tmp_path / "clusters" / f"{NAME}.json"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a crash mid-write without the atomic rename

    again = make_set(tmp_path).cluster(1, NAME)
    store = again.store
    assert isinstance(again.restore_error, CorruptStateFile)
    assert "not valid JSON" in str(again.restore_error)
    moved = again.restore_error.moved_to
    assert moved is not None and moved.exists() and moved.read_bytes() == data[: len(data) // 2]
    assert not path.exists()
    t = types(again)
    image = store.get(t["deployments"], "cattle-system", "cattle-cluster-agent")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert image != "rancher/rancher-agent:v2.14.1"  # from the seed again
    assert again.api.auth.user(again.token) is not None  # identity does not depend on that file
    store.create(t["configmaps"], {"metadata": {"name": "fresh", "namespace": "default"}})
    assert again.save() and json.loads(path.read_bytes())["name"] == NAME


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda d: d.update(format=99), "format"),
        (lambda d: d.update(resourceVersion="12"), "resourceVersion"),
        (lambda d: d.update(name="someone-else"), "name"),
        (lambda d: d["changes"].append({"group": "", "resource": "configmaps"}), "changes["),
        (lambda d: d["changes"].append({"group": "", "resource": "configmaps", "namespace": "default",
                                        "name": "x", "object": {"metadata": {"name": "y"}}}), "object"),
    ],
)
def test_state_file_with_a_wrong_shape_is_corrupt(tmp_path, mutate, reason):
    first = make_set(tmp_path)
    write_like_rancher(first.cluster(1, NAME))
    first.stop()
    path = tmp_path / "clusters" / f"{NAME}.json"
    doc = json.loads(path.read_bytes())
    mutate(doc)
    path.write_text(json.dumps(doc))
    state = StateDir(tmp_path)
    with pytest.raises(CorruptStateFile, match=reason.replace("[", r"\[")):
        persist.read(state, NAME)
    assert not path.exists()


def test_saves_only_what_changed_periodically_and_on_stop(tmp_path):
    clock = clock_at()
    clusters = make_set(tmp_path, clock, save_interval=60)
    clusters.start()
    idle = clusters.cluster(3, "scale-00003")
    busy = clusters.cluster(4, "scale-00004")
    idle.store, busy.store  # noqa: B018 -- built, but unchanged
    assert not idle.save() and not busy.save()
    t = types(busy)
    busy.store.create(t["configmaps"], {"metadata": {"name": "one", "namespace": "default"}})
    path = tmp_path / "clusters" / "scale-00004.json"
    clock.advance(59)
    assert not path.exists()
    clock.advance(1)
    assert path.exists() and not (tmp_path / "clusters" / "scale-00003.json").exists()
    assert not busy.save()  # nothing new since
    busy.store.create(t["configmaps"], {"metadata": {"name": "two", "namespace": "default"}})
    clusters.stop()
    names = {c["name"] for c in json.loads(path.read_bytes())["changes"]}
    assert {"one", "two"} <= names
    assert StateDir(tmp_path).names("clusters") == ["clusters/scale-00004.json"]


def test_dump_and_parse_round_trip(tmp_path):
    clusters = make_set(tmp_path)
    cluster = clusters.cluster(1, NAME)
    write_like_rancher(cluster)
    doc = persist.dump(NAME, 1, cluster.store)
    saved = persist.parse(json.loads(json.dumps(doc)))
    assert saved.resource_version == cluster.store.resource_version
    assert sorted(saved.changes, key=lambda c: (c[0], c[1])) == sorted(
        cluster.store.changes(), key=lambda c: (c[0], c[1])
    )
    with pytest.raises(ValueError):
        persist.file_name("../escape")


def test_periodic_saves_are_spread_over_reactor_turns(tmp_path):
    clock = clock_at()
    clusters = make_set(tmp_path, clock, save_interval=60)
    clusters.start()
    for index in range(60):
        cluster = clusters.cluster(index, f"scale-{index:05d}")
        configmap = {"metadata": {"name": "x", "namespace": "default"}}
        cluster.store.create(types(cluster)["configmaps"], configmap)
    state = StateDir(tmp_path)
    clock.advance(60)
    assert len(state.names("clusters")) == SAVE_BATCH
    clock.advance(SAVE_PAUSE)
    assert len(state.names("clusters")) == 2 * SAVE_BATCH
    clock.advance(SAVE_PAUSE)
    assert len(state.names("clusters")) == 60
    assert clusters.save() == 0  # all saved
    clusters.stop()


def test_forget_keeps_or_removes_the_state_file(tmp_path):
    clusters = make_set(tmp_path)
    for index in (1, 2):
        cluster = clusters.cluster(index, f"scale-{index:05d}")
        configmap = {"metadata": {"name": "x", "namespace": "default"}}
        cluster.store.create(types(cluster)["configmaps"], configmap)
    clusters.forget(1)
    clusters.forget(2, remove_state=True)
    assert StateDir(tmp_path).names("clusters") == ["clusters/scale-00001.json"]
    assert len(clusters) == 0
    again = clusters.cluster(2, "scale-00002")  # a new cluster of that name starts from its seed
    assert again.store.lookup(types(again)["configmaps"], "default", "x") is None


class ThreadedClock(Clock):
    """A Clock that also offers a reactor's thread pool; jobs run only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list = []
        self.threads_used = 0

    def getThreadPool(self):  # noqa: N802 (Twisted's name)
        return self

    def callInThreadWithCallback(self, on_result, fn, *args, **kwargs):  # noqa: N802 (Twisted's name)
        self.jobs.append((on_result, fn, args, kwargs))

    def callFromThread(self, fn, *args, **kwargs):  # noqa: N802 (Twisted's name)
        fn(*args, **kwargs)

    def run_jobs(self) -> None:
        jobs, self.jobs = self.jobs, []
        for on_result, fn, args, kwargs in jobs:
            self.threads_used += 1
            on_result(True, fn(*args, **kwargs))


def test_periodic_saves_write_in_the_thread_pool_one_batch_at_a_time(tmp_path):
    """With a reactor, the fsync'ing writes leave the reactor thread; a slice waits for its batch."""
    clock = ThreadedClock()
    clock.advance(NOW)
    clusters = make_set(tmp_path, clock, save_interval=60)
    clusters.start()
    for index in range(SAVE_BATCH + 5):
        cluster = clusters.cluster(index, f"scale-{index:05d}")
        configmap = {"metadata": {"name": "x", "namespace": "default"}}
        cluster.store.create(types(cluster)["configmaps"], configmap)
    state = StateDir(tmp_path)
    clock.advance(60)
    assert state.names("clusters") == [] and len(clock.jobs) == 1  # encoded, handed to a thread
    clock.advance(SAVE_PAUSE * 10)
    assert len(clock.jobs) == 1  # no second batch while the first is in flight
    clock.run_jobs()
    assert len(state.names("clusters")) == SAVE_BATCH
    clock.advance(SAVE_PAUSE)
    clock.run_jobs()
    assert len(state.names("clusters")) == SAVE_BATCH + 5 and clock.threads_used == 2
    assert clusters.save() == 0  # every cluster counts as saved
    clusters.stop()


def test_an_inline_save_is_never_overwritten_by_an_older_threaded_snapshot(tmp_path):
    clock = ThreadedClock()
    clock.advance(NOW)
    clusters = make_set(tmp_path, clock, save_interval=60)
    clusters.start()
    cluster = clusters.cluster(1, NAME)
    configmaps = types(cluster)["configmaps"]
    cluster.store.create(configmaps, {"metadata": {"name": "old", "namespace": "default"}})
    clock.advance(60)
    assert len(clock.jobs) == 1  # the snapshot with "old" only, not written yet
    cluster.store.create(configmaps, {"metadata": {"name": "new", "namespace": "default"}})
    clusters.stop()  # inline save of the newer state
    clock.run_jobs()  # the stale snapshot comes too late and is skipped
    saved = json.loads((tmp_path / "clusters" / f"{NAME}.json").read_bytes())
    assert {"old", "new"} <= {c["name"] for c in saved["changes"]}
    assert saved["resourceVersion"] == cluster.store.resource_version
