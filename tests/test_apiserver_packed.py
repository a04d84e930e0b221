"""Packed seed entries: decoded on every read, exactly what was packed, and usable by a Store."""

from __future__ import annotations

import json

import pytest

from scaleagent.apiserver.kinds import Registry
from scaleagent.apiserver.packed import PackedEntry, pack
from scaleagent.apiserver.store import Entry, Seed, Store


def pod(name: str, rv: int, *, app: str = "web", node: str = "n-1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "resourceVersion": str(rv),
            "labels": {"app": app},
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1.27 ü"}]},
        "status": {"phase": "Running"},
    }


def encoded(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def test_each_entry_reads_back_its_own_object_and_encoding():
    objects = [pod(f"p-{i}", 10 + i) for i in range(5)]
    entries = pack(objects)
    assert [e.obj for e in entries] == objects
    assert [e.json() for e in entries] == [encoded(o) for o in objects]
    assert [e.resource_version for e in entries] == [10, 11, 12, 13, 14]
    assert len({e.packed_size for e in entries}) == 1  # one blob for all of them
    assert entries[0].packed_size < sum(len(encoded(o)) for o in objects)


def test_a_read_returns_a_fresh_dict_so_callers_cannot_change_the_entry():
    (entry,) = pack([pod("p", 3)])
    first = entry.obj
    first["metadata"]["labels"]["app"] = "changed"
    assert entry.obj["metadata"]["labels"]["app"] == "web"


def test_entries_of_different_blobs_interleave_correctly():
    a = pack([pod("a-0", 1), pod("a-1", 2)])
    b = pack([pod("b-0", 3, app="db"), pod("b-1", 4, app="db")])
    names = [e.obj["metadata"]["name"] for e in (a[0], b[1], a[1], b[0], a[0])]
    assert names == ["a-0", "b-1", "a-1", "b-0", "a-0"]


@pytest.mark.parametrize("rv", [None, 7, "", "12a"])
def test_an_object_without_a_decimal_resource_version_is_refused(rv):
    obj = pod("p", 1)
    if rv is None:
        del obj["metadata"]["resourceVersion"]
        with pytest.raises(KeyError):
            pack([obj])
        return
    obj["metadata"]["resourceVersion"] = rv
    with pytest.raises(ValueError, match="'p': resourceVersion"):
        pack([obj])


def test_a_store_serves_lists_selectors_and_writes_over_packed_entries():
    kinds = Registry()
    pods = kinds.by_resource("", "v1", "pods")
    objects = [pod("p-0", 1), pod("p-1", 2, app="db", node="n-2"), pod("p-2", 3)]
    seed = Seed({pods.storage_key: dict(zip((("default", o["metadata"]["name"]) for o in objects),
                                             pack(objects), strict=True))}, 3)
    store = Store(seed, kinds=kinds)
    def names(**selectors: str) -> list[str]:
        return [o["metadata"]["name"] for o in store.list(pods, **selectors).objects()]

    assert names() == ["p-0", "p-1", "p-2"]
    assert names(label_selector="app=db") == ["p-1"]
    assert names(field_selector="spec.nodeName=n-2") == ["p-1"]
    assert isinstance(store.get_entry(pods, "default", "p-0"), PackedEntry)
    changed = store.get(pods, "default", "p-0")
    changed["metadata"]["labels"] = {"app": "db"}
    store.replace(pods, changed)
    entry = store.get_entry(pods, "default", "p-0")
    assert type(entry) is Entry and entry.obj["metadata"]["labels"] == {"app": "db"}
    assert int(entry.obj["metadata"]["resourceVersion"]) > 3
    assert names(label_selector="app=db") == ["p-0", "p-1"]
    store.delete(pods, "default", "p-2")
    assert names() == ["p-0", "p-1"]
    assert store.get(pods, "default", "p-1") == objects[1]  # the untouched one still decodes intact
