"""The store: selectors, paging, writes, watch history/410, bookmarks, initial events."""

from __future__ import annotations

import pytest

from scaleagent.apiserver import selectors
from scaleagent.apiserver.kinds import Registry
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import INITIAL_EVENTS_END, Entry, Seed, Store

KINDS = Registry()
PODS = KINDS.by_resource("", "v1", "pods")
NODES = KINDS.by_resource("", "v1", "nodes")
SECRETS = KINDS.by_resource("", "v1", "secrets")
EVENTS = KINDS.by_resource("", "v1", "events")
HPA_V1 = KINDS.by_resource("autoscaling", "v1", "horizontalpodautoscalers")
HPA_V2 = KINDS.by_resource("autoscaling", "v2", "horizontalpodautoscalers")


def pod(name, ns="default", labels=None, node="n1", phase="Running"):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def names(result):
    return [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in result.objects()]


@pytest.fixture
def seed():
    return Seed.from_objects(
        [
            pod("a", labels={"app": "web", "tier": "1"}),
            pod("b", labels={"app": "db", "tier": "2"}, node="n2", phase="Pending"),
            pod("c", ns="other", labels={"app": "web"}, node="n2"),
            pod("d", labels={"tier": "3"}),
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"unschedulable": True}},
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s", "namespace": "default"},
                "type": "X",
            },
        ]
    )


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, kind, entry: Entry):
        meta = entry.obj["metadata"]
        self.events.append((kind, meta.get("name"), meta.get("resourceVersion"), meta.get("annotations")))

    def kinds(self):
        return [(k, n) for k, n, _, _ in self.events]


# -- label selectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=web", ["a", "c"]),
        ("app==web", ["a", "c"]),
        ("app!=web", ["b", "d"]),
        ("app", ["a", "b", "c"]),
        ("!app", ["d"]),
        ("app in (web,db)", ["a", "b", "c"]),
        ("app notin (web)", ["b", "d"]),
        ("tier>1", ["b", "d"]),
        ("tier<2", ["a"]),
        ("app=web,tier=1", ["a"]),
        ("app in (db), tier", ["b"]),
    ],
)
def test_label_selector_operators(seed, selector, expected):
    store = Store(seed)
    assert [n for _, n in names(store.list(PODS, label_selector=selector))] == expected


@pytest.mark.parametrize("bad", ["app in web", "a b", "app=(x)", "=x", "tier>x", "app in ()"])
def test_bad_label_selector_is_400(seed, bad):
    with pytest.raises(ApiError) as e:
        Store(seed).list(PODS, label_selector=bad)
    assert e.value.code == 400 and e.value.reason == "BadRequest"


# -- field selectors ---------------------------------------------------------------------------------


def test_field_selectors_as_kubectl_describe_sends_them(seed):
    store = Store(seed)
    sel = "spec.nodeName=n2,status.phase!=Succeeded,status.phase!=Failed"
    assert names(store.list(PODS, field_selector=sel)) == [("default", "b"), ("other", "c")]
    assert names(store.list(PODS, field_selector="metadata.namespace==other")) == [("other", "c")]
    assert names(store.list(PODS, field_selector="metadata.name=a")) == [("default", "a")]
    assert names(store.list(SECRETS, field_selector="type=X")) == [("default", "s")]
    cordoned = store.list(NODES, field_selector="spec.unschedulable=true").objects()
    assert [o["metadata"]["name"] for o in cordoned] == ["n1"]


def test_event_involved_object_fields():
    store = Store()
    store.create(
        EVENTS,
        {
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1", "uid": "u1", "namespace": ""},
            "source": {"component": "kubelet"},
        },
    )
    sel = "involvedObject.kind=Node,involvedObject.uid=u1,involvedObject.name=n1,involvedObject.namespace="
    assert len(store.list(EVENTS, field_selector=sel).items) == 1
    assert len(store.list(EVENTS, field_selector="source=kubelet").items) == 1
    assert len(store.list(EVENTS, field_selector="involvedObject.uid=other").items) == 0


def test_unsupported_field_label_is_400(seed):
    with pytest.raises(ApiError) as e:
        Store(seed).list(SECRETS, field_selector="spec.nodeName=x")
    assert (e.value.code, e.value.message) == (400, "field label not supported: spec.nodeName")


def test_selector_parse_is_cached():
    assert selectors.parse_labels("a=b") is selectors.parse_labels("a=b")


# -- paging and resourceVersion -------------------------------------------------------------------------


def test_limit_and_continue_walk_everything_once(seed):
    store = Store(seed)
    seen, token, pages = [], "", 0
    while pages < 10:
        page = store.list(PODS, limit=2, continue_token=token)
        seen += names(page)
        pages += 1
        token = page.continue_token
        if not token:
            break
    assert seen == [("default", "a"), ("default", "b"), ("default", "d"), ("other", "c")]
    assert pages == 2
    first = store.list(PODS, limit=2)
    assert first.remaining == 2 and first.resource_version == str(store.resource_version)


def test_continue_keeps_its_list_resource_version_and_selectors(seed):
    store = Store(seed)
    page = store.list(PODS, limit=1, label_selector="app=web")
    rv = page.resource_version
    store.create(PODS, pod("zz", labels={"app": "web"}))
    rest = store.list(PODS, limit=5, label_selector="app=web", continue_token=page.continue_token)
    assert rest.resource_version == rv
    # later pages show the current state from where the token points, still filtered
    assert names(rest) == [("default", "zz"), ("other", "c")]


def test_namespace_scoped_list(seed):
    assert names(Store(seed).list(PODS, namespace="other")) == [("other", "c")]
    assert names(Store(seed).list(PODS, namespace="nobody")) == []


def test_bad_continue_token_is_400(seed):
    with pytest.raises(ApiError) as e:
        Store(seed).list(PODS, continue_token="!!notatoken")
    assert e.value.code == 400


@pytest.mark.parametrize(
    "rv, match, code",
    [
        ("", "Exact", 422),
        ("0", "Exact", 422),
        ("5", "Sometimes", 422),
        ("abc", "", 400),
        ("999999", "", 504),
    ],
)
def test_list_resource_version_rules(seed, rv, match, code):
    with pytest.raises(ApiError) as e:
        Store(seed).list(PODS, resource_version=rv, resource_version_match=match)
    assert e.value.code == code


def test_list_exact_version(seed):
    store = Store(seed)
    current = str(store.resource_version)
    assert len(store.list(PODS, resource_version=current, resource_version_match="Exact").items) == 4
    store.create(PODS, pod("x"))
    with pytest.raises(ApiError) as e:
        store.list(PODS, resource_version=current, resource_version_match="Exact")
    assert (e.value.code, e.value.reason) == (410, "Expired")
    assert len(store.list(PODS, resource_version="0").items) == 5
    assert len(store.list(PODS, resource_version=current, resource_version_match="NotOlderThan").items) == 5


# -- writes and copy-on-write ---------------------------------------------------------------------------


def test_stores_share_seed_objects_until_they_change_them(seed):
    one, two = Store(seed), Store(seed)
    assert one.get_entry(PODS, "default", "a") is two.get_entry(PODS, "default", "a")
    changed = dict(one.get(PODS, "default", "a"), spec={"nodeName": "n9"})
    one.replace(PODS, changed)
    assert one.get(PODS, "default", "a")["spec"]["nodeName"] == "n9"
    assert two.get(PODS, "default", "a")["spec"]["nodeName"] == "n1"
    one.delete(PODS, "default", "b")
    assert one.lookup(PODS, "default", "b") is None and two.lookup(PODS, "default", "b") is not None
    assert [c[1] for c in one.changes()] == [("default", "a"), ("default", "b")]
    assert list(two.changes()) == []


def test_every_write_bumps_the_counter_and_fills_metadata(seed):
    store = Store(seed, uid=lambda: "uid-1", now=lambda: 0.0)
    start = store.resource_version
    created = store.create(PODS, {"metadata": {"generateName": "web-", "namespace": "default"}, "spec": {}})
    meta = created["metadata"]
    assert meta["name"].startswith("web-") and len(meta["name"]) == 9
    assert (meta["uid"], meta["creationTimestamp"]) == ("uid-1", "1970-01-01T00:00:00Z")
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == str(start + 1) and created["kind"] == "Pod"
    again = dict(created, spec={"nodeName": "x"})
    updated = store.replace(PODS, again)
    assert updated["metadata"]["generation"] == 2 and updated["metadata"]["resourceVersion"] == str(start + 2)
    unchanged = store.replace(PODS, updated)
    assert unchanged["metadata"]["resourceVersion"] == str(start + 2)  # a no-op update is not a change
    with pytest.raises(ApiError) as e:
        store.replace(PODS, created)  # stale resourceVersion
    assert e.value.reason == "Conflict" and "the object has been modified" in e.value.message
    with pytest.raises(ApiError) as e:
        store.create(PODS, updated)
    assert (e.value.code, e.value.message) == (409, f'pods "{meta["name"]}" already exists')
    gone = store.delete(PODS, "default", meta["name"])
    assert gone["metadata"]["resourceVersion"] == str(start + 3)
    with pytest.raises(ApiError) as e:
        store.get(PODS, "default", meta["name"])
    assert e.value.status()["details"] == {"name": meta["name"], "group": "", "kind": "pods"}


def test_stored_objects_are_copies(seed):
    store = Store(seed)
    body = pod("m")
    store.create(PODS, body)
    body["spec"]["nodeName"] = "changed"
    assert store.get(PODS, "default", "m")["spec"]["nodeName"] == "n1"


def test_dry_run_changes_nothing(seed):
    store = Store(seed)
    rv = store.resource_version
    store.create(PODS, pod("dry"), dry_run=True)
    store.delete(PODS, "default", "a", dry_run=True)
    assert store.resource_version == rv and store.lookup(PODS, "default", "dry") is None


def test_versions_share_storage_and_report_their_apiversion():
    store = Store()
    store.create(HPA_V2, {"metadata": {"name": "h", "namespace": "default"}, "spec": {}})
    assert store.get(HPA_V1, "default", "h")["apiVersion"] == "autoscaling/v1"
    assert store.get(HPA_V2, "default", "h")["apiVersion"] == "autoscaling/v2"


# -- watch ----------------------------------------------------------------------------------------------


def test_watch_without_version_sends_current_state_then_changes(seed):
    store = Store(seed)
    rec = Recorder()
    store.watch(PODS, rec, namespace="default")
    assert rec.kinds() == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "d")]
    store.create(PODS, pod("e"))
    store.create(PODS, pod("f", ns="other"))
    assert rec.kinds()[-1] == ("ADDED", "e")


def test_watch_from_version_replays_history_and_selector_transitions(seed):
    store = Store(seed)
    rv = str(store.resource_version)
    a = store.get(PODS, "default", "a")
    store.replace(PODS, dict(a, metadata=dict(a["metadata"], labels={"app": "db"})))  # leaves app=web
    b = store.get(PODS, "default", "b")
    store.replace(PODS, dict(b, metadata=dict(b["metadata"], labels={"app": "web"})))  # enters app=web
    rec = Recorder()
    watch = store.watch(PODS, rec, resource_version=rv, label_selector="app=web")
    assert rec.kinds() == [("DELETED", "a"), ("ADDED", "b")]
    # the DELETED for a no-longer-matching object carries the change's resourceVersion
    assert rec.events[0][2] == str(int(rv) + 1)
    c = store.get(PODS, "other", "c")
    store.replace(PODS, dict(c, spec={"nodeName": "n7"}))
    store.delete(PODS, "other", "c")
    assert rec.kinds()[2:] == [("MODIFIED", "c"), ("DELETED", "c")]
    watch.cancel()
    store.create(PODS, pod("late", labels={"app": "web"}))
    assert len(rec.events) == 4 and store.watcher_count() == 0


def test_watch_older_than_history_is_410(seed):
    store = Store(seed, history=3)
    start = str(store.resource_version)
    for i in range(3):
        store.create(PODS, pod(f"p{i}"))
    store.watch(PODS, Recorder(), resource_version=start)  # all three still held
    store.create(PODS, pod("p3"))
    with pytest.raises(ApiError) as e:
        store.watch(PODS, Recorder(), resource_version=start)
    status = e.value.status()
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith(f"too old resource version: {start} (")


def test_watch_history_also_ages_out_by_time(seed):
    now = [1000.0]
    store = Store(seed, history=100, history_seconds=150.0, now=lambda: now[0])
    start = str(store.resource_version)
    store.create(PODS, pod("old"))
    after_old = str(store.resource_version)
    now[0] += 100
    store.create(PODS, pod("mid"))
    rec = Recorder()
    store.watch(PODS, rec, resource_version=start).cancel()  # both still held at 100 s
    assert [e[1] for e in rec.events] == ["old", "mid"]
    now[0] += 60  # "old" is now 160 s old: gone with the next event; "mid" (60 s) stays
    store.create(PODS, pod("new"))
    with pytest.raises(ApiError) as e:
        store.watch(PODS, Recorder(), resource_version=start)
    assert e.value.code == 410
    rec = Recorder()
    store.watch(PODS, rec, resource_version=after_old)
    assert [e[1] for e in rec.events] == ["mid", "new"]


def test_time_bounded_history_keeps_the_newest_event(seed):
    now = [0.0]
    store = Store(seed, history=100, history_seconds=1.0, now=lambda: now[0])
    store.create(PODS, pod("x"))
    before_last = str(store.resource_version)
    now[0] += 3600
    store.create(PODS, pod("y"))
    rec = Recorder()
    store.watch(PODS, rec, resource_version=before_last)
    assert [e[1] for e in rec.events] == ["y"]


def test_watch_from_future_version_is_too_large(seed):
    with pytest.raises(ApiError) as e:
        Store(seed).watch(PODS, Recorder(), resource_version="99999")
    assert e.value.code == 504
    assert e.value.status()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_bookmarks_only_when_allowed(seed):
    store = Store(seed)
    quiet, chatty = Recorder(), Recorder()
    rv = str(store.resource_version)
    w1 = store.watch(PODS, quiet, resource_version=rv)
    w2 = store.watch(PODS, chatty, resource_version=rv, allow_bookmarks=True)
    store.create(NODES, {"metadata": {"name": "n5"}})  # another type moves the counter
    w1.bookmark()
    w2.bookmark()
    assert quiet.events == []
    assert chatty.events == [("BOOKMARK", None, str(store.resource_version), None)]


def test_send_initial_events_ends_with_annotated_bookmark(seed):
    store = Store(seed)
    rec = Recorder()
    store.watch(
        PODS,
        rec,
        namespace="default",
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_bookmarks=True,
    )
    assert rec.kinds() == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "d"), ("BOOKMARK", None)]
    assert rec.events[-1][3] == {INITIAL_EVENTS_END: "true"}
    assert rec.events[-1][2] == str(store.resource_version)
    store.create(PODS, pod("new"))
    assert rec.kinds()[-1] == ("ADDED", "new")


@pytest.mark.parametrize(
    "options",
    [
        {"send_initial_events": True, "allow_bookmarks": True},  # no resourceVersionMatch
        {"send_initial_events": True, "resource_version_match": "NotOlderThan"},  # no bookmarks
        {"resource_version_match": "NotOlderThan", "resource_version": "1"},  # match without initial events
    ],
)
def test_watch_option_combinations_rejected_as_422(seed, options):
    with pytest.raises(ApiError) as e:
        Store(seed).watch(PODS, Recorder(), **options)
    assert (e.value.code, e.value.reason) == (422, "Invalid")


def test_send_initial_events_on_list_is_422(seed):
    from scaleagent.apiserver.store import validate_list_options

    with pytest.raises(ApiError) as e:
        validate_list_options(watch=False, send_initial_events=True)
    assert e.value.code == 422 and "sendInitialEvents is forbidden for list" in e.value.message


def test_a_failing_sink_is_dropped_without_breaking_the_write(seed):
    store = Store(seed)

    def broken(kind, entry):
        raise RuntimeError("client gone")

    store.watch(PODS, broken, resource_version=str(store.resource_version))
    store.create(PODS, pod("ok"))
    assert store.lookup(PODS, "default", "ok") is not None and store.watcher_count() == 0


def test_seed_keeps_complete_objects_without_copying_and_fills_the_rest():
    complete = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "a",
            "namespace": "x",
            "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "resourceVersion": "40",
        },
        "data": {"k": "v"},
    }
    partial = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "b", "namespace": "x"},
        "data": {},
    }
    seed = Seed.from_objects([complete, partial])
    cms = KINDS.by_resource("", "v1", "configmaps")
    store = Store(seed)
    assert store.get(cms, "x", "a") is complete
    filled = store.get(cms, "x", "b")
    assert filled is not partial and filled["data"] is partial["data"] and "uid" not in partial["metadata"]
    assert filled["metadata"]["resourceVersion"] == "41" and store.resource_version == 41
    with pytest.raises(ValueError, match="unknown kind"):
        Seed.from_objects([{"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}}])
    with pytest.raises(ValueError, match="needs metadata.namespace"):
        Seed.from_objects([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}])


def test_remaining_item_count_counts_only_the_listed_namespace(seed):
    store = Store(seed)
    page = store.list(PODS, namespace="default", limit=1)
    assert page.remaining == 2
    assert store.list(PODS, limit=3).remaining == 1
    assert store.list(PODS, limit=1, label_selector="app").remaining is None  # unknown with a selector


def test_restore_loads_saved_changes_without_events(seed):
    one = Store(seed)
    one.create(PODS, pod("new"))
    one.delete(PODS, "default", "a")
    saved, rv = list(one.changes()), one.resource_version
    two = Store(seed)
    rec = Recorder()
    two.watch(PODS, rec, resource_version=str(two.resource_version))
    two.restore(saved, rv)
    assert rec.events == []
    assert two.get(PODS, "default", "new") == one.get(PODS, "default", "new")
    assert two.lookup(PODS, "default", "a") is None and two.resource_version == rv
    assert names(two.list(PODS)) == names(one.list(PODS))
    assert list(two.changes()) == saved
    assert two.watching(PODS) and not two.watching(NODES)


def test_derived_registries_share_tables_until_one_changes():
    from scaleagent.apiserver.kinds import ResourceType

    base = Registry()
    derived = base.derive()
    assert derived.cache is base.cache
    derived.register(ResourceType("example.com", "v1", "Widget", "widgets", True, crd="widgets.example.com"))
    assert derived.by_resource("example.com", "v1", "widgets") is not None
    assert base.by_resource("example.com", "v1", "widgets") is None and derived.cache is not base.cache


def test_dependents_index_follows_writes(seed):
    store = Store(seed)
    rs = KINDS.by_resource("apps", "v1", "replicasets")

    def owned(name, owner_uid, ns="default"):
        body = pod(name, ns=ns)
        ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "uid": owner_uid}
        body["metadata"]["ownerReferences"] = [ref]
        return body

    owner = store.create(rs, {"metadata": {"name": "rs", "namespace": "default"}, "spec": {}})
    uid = owner["metadata"]["uid"]
    store.create(PODS, owned("p1", uid))
    assert store.dependents(uid) == [(("", "pods"), ("default", "p1"))]  # index built here
    store.create(PODS, owned("p2", uid))
    store.create(PODS, owned("p3", uid, ns="other"))
    assert [k for _, k in store.dependents(uid, "default")] == [("default", "p1"), ("default", "p2")]
    p1 = store.get(PODS, "default", "p1")
    orphaned = {k: v for k, v in p1["metadata"].items() if k != "ownerReferences"}
    store.replace(PODS, dict(p1, metadata=orphaned))
    store.delete(PODS, "default", "p2")
    assert store.dependents(uid) == [(("", "pods"), ("other", "p3"))]
    assert store.dependents("nobody") == []


def test_format_label_selector_sorts_requirements_by_key_as_go_does():
    selector = {
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "zone", "operator": "NotIn", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "beta", "operator": "Exists"},
        ],
    }
    text = selectors.format_label_selector(selector)
    assert text == "app=shop,beta,!canary,env in (dev,prod),tier=web,zone notin (a,b)"
    assert selectors.parse_labels(text)  # what we print parses back
    assert selectors.format_label_selector({"b": "2", "a": "1"}) == "a=1,b=2"  # a Service's plain map
    assert selectors.format_label_selector({}) == ""
