"""Patch semantics against documented behaviour: RFC 6902 and RFC 7386 examples, the Kubernetes
strategic-merge-patch design docs and kubectl's "update API objects in place" task, and server-side apply
field ownership.  Every case is written here; expectations follow the documents they name."""

from __future__ import annotations

import copy

import pytest

from scaleagent.apiserver import patch as p

DEPLOYMENT = p.schema_for("apps", "Deployment")
POD = p.schema_for("", "Pod")
NOW = "2026-11-26T12:00:00Z"


# --------------------------------------------------------------------------------------------------
# RFC 6902


def test_json_patch_operations_of_rfc6902():
    doc = {"foo": ["bar", "baz"], "biscuits": [{"name": "Digestive"}, {"name": "Choco Leibniz"}]}
    ops = [
        {"op": "add", "path": "/foo/1", "value": "qux"},
        {"op": "remove", "path": "/biscuits/0"},
        {"op": "replace", "path": "/biscuits/0/name", "value": "Hobnob"},
        {"op": "copy", "from": "/biscuits/0", "path": "/best_biscuit"},
        {"op": "move", "from": "/foo/0", "path": "/first"},
        {"op": "test", "path": "/first", "value": "bar"},
        {"op": "add", "path": "/foo/-", "value": "end"},
        {"op": "add", "path": "/a~1b", "value": 1},
    ]
    result = p.json_patch(doc, ops)
    assert result == {
        "foo": ["qux", "baz", "end"],
        "biscuits": [{"name": "Hobnob"}],
        "best_biscuit": {"name": "Hobnob"},
        "first": "bar",
        "a/b": 1,
    }
    assert doc["foo"] == ["bar", "baz"], "the input must not change"


def test_json_patch_failed_test_is_422_and_changes_nothing():
    doc = {"metadata": {"labels": {"a": "1"}}}
    with pytest.raises(p.PatchError) as info:
        p.json_patch(
            doc, [{"op": "remove", "path": "/metadata/labels/a"}, {"op": "test", "path": "/x", "value": 1}]
        )
    assert info.value.code == 422
    assert doc == {"metadata": {"labels": {"a": "1"}}}


@pytest.mark.parametrize(
    "ops, code",
    [
        ({"op": "add"}, 400),
        ([{"op": "bogus", "path": "/a"}], 400),
        ([{"path": "/a", "value": 1}], 400),
        ([{"op": "remove", "path": "/missing"}], 422),
        ([{"op": "add", "path": "/no/parent", "value": 1}], 422),
        ([{"op": "replace", "path": "", "value": [1]}], 422),
    ],
)
def test_json_patch_errors(ops, code):
    with pytest.raises(p.PatchError) as info:
        p.json_patch({"a": 1}, ops)
    assert info.value.code == code


# --------------------------------------------------------------------------------------------------
# RFC 7386 (its appendix A examples)


@pytest.mark.parametrize(
    "original, patch, result",
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(original, patch, result):
    before = copy.deepcopy(original)
    assert p.merge_patch(original, patch) == result
    assert original == before


def test_merge_patch_replaces_lists_of_containers():
    live = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}}}}
    out = p.merge_patch(live, {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}]}}}})
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "2"}]


# --------------------------------------------------------------------------------------------------
# Strategic merge patch


def _deployment(containers, tolerations=None):
    spec = {"containers": containers}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo", "labels": {"app": "demo"}},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "demo"}}, "spec": spec}},
    }


def _containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def test_strategic_adds_container_and_keeps_the_others():
    # kubectl docs, "Update API Objects in Place Using kubectl patch": the patched Deployment has both
    # the original container and the one named in the patch.
    live = _deployment(
        [{"name": "patch-demo-ctr", "image": "nginx"}],
        [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}],
    )
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}
    out = p.strategic_merge_patch(live, patch, DEPLOYMENT)
    assert _containers(out) == [
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"},
    ] or _containers(out) == [
        {"name": "patch-demo-ctr", "image": "nginx"},
        {"name": "patch-demo-ctr-2", "image": "redis"},
    ]
    assert {c["name"] for c in _containers(out)} == {"patch-demo-ctr", "patch-demo-ctr-2"}
    assert out["spec"]["replicas"] == 2 and out["metadata"]["labels"] == {"app": "demo"}


def test_strategic_replaces_tolerations_which_have_no_merge_key():
    # Same kubectl task: tolerations have no patch strategy, so the patch's list replaces the live one.
    live = _deployment([{"name": "c"}], [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}])
    patch = {
        "spec": {
            "template": {
                "spec": {"tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}
            }
        }
    }
    out = p.strategic_merge_patch(live, patch, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["tolerations"] == [
        {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}
    ]
    assert _containers(out) == [{"name": "c"}]


def test_strategic_merges_nested_lists_by_their_keys():
    live = _deployment(
        [
            {
                "name": "web",
                "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"mountPath": "/data", "name": "data"}],
            }
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:2",
                            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}],
                            "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                        }
                    ]
                }
            }
        }
    }
    web = _containers(p.strategic_merge_patch(live, patch, DEPLOYMENT))[0]
    assert web["image"] == "nginx:2"
    assert web["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]
    assert web["volumeMounts"] == [{"mountPath": "/data", "name": "data", "readOnly": True}]


def test_strategic_patch_directives_on_list_items_and_maps():
    live = _deployment([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    live["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd", "zone": "x"}
    out = p.strategic_merge_patch(
        live,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "$patch": "delete"}],
                        "nodeSelector": {"$patch": "replace", "only": "this"},
                    }
                }
            }
        },
        DEPLOYMENT,
    )
    assert _containers(out) == [{"name": "b", "image": "2"}]
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"only": "this"}

    replaced = p.strategic_merge_patch(
        live,
        {
            "spec": {
                "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "9"}]}}
            }
        },
        DEPLOYMENT,
    )
    assert _containers(replaced) == [{"name": "z", "image": "9"}]

    emptied = p.strategic_merge_patch(live, {"metadata": {"labels": {"$patch": "delete"}}}, DEPLOYMENT)
    assert emptied["metadata"]["labels"] == {}


def test_strategic_null_removes_fields_and_new_values_lose_their_directives():
    live = {"metadata": {"name": "x", "annotations": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}
    out = p.strategic_merge_patch(
        live,
        {
            "metadata": {"annotations": {"a": None}},
            "spec": {"template": {"spec": {"nodeSelector": {"$patch": "replace", "disk": "ssd"}}}},
        },
        DEPLOYMENT,
    )
    assert out["metadata"]["annotations"] == {"b": "2"}
    assert out["spec"]["template"]["spec"] == {"nodeSelector": {"disk": "ssd"}}
    # `$patch: merge` on a list item is refused, as apimachinery does.
    with pytest.raises(p.PatchError):
        p.strategic_merge_patch(
            live, {"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}, DEPLOYMENT
        )


def test_strategic_finalizers_merge_as_a_set_and_delete_from_primitive_list():
    live = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    added = p.strategic_merge_patch(live, {"metadata": {"finalizers": ["b", "c"]}}, POD)
    assert added["metadata"]["finalizers"] == ["a", "b", "c"]
    removed = p.strategic_merge_patch(
        added,
        {
            "metadata": {
                "$setElementOrder/finalizers": ["a", "c"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
            }
        },
        POD,
    )
    assert removed["metadata"]["finalizers"] == ["a", "c"]


def test_strategic_delete_from_primitive_list_keeps_server_items():
    # apimachinery strategicpatch tests, "delete items in lists of scalars" (the finalizers rule).
    schema = p.Struct({"mergingIntList": p.SetList()})
    out = p.strategic_merge_patch(
        {"mergingIntList": [1, 2, 3, 4]},
        {"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]},
        schema,
    )
    assert out == {"mergingIntList": [1, 2, 4]}
    out = p.strategic_merge_patch(
        {"mergingIntList": [1, 2, 3, 4]},
        {
            "$setElementOrder/mergingIntList": [1, 2, 4],
            "$deleteFromPrimitiveList/mergingIntList": [3],
            "mergingIntList": [4],
        },
        schema,
    )
    assert out == {"mergingIntList": [1, 2, 4]}


MERGING = p.Struct({"mergingList": p.MergeList("name")})


def test_set_element_order_orders_patch_items():
    # apimachinery strategicpatch tests, "merge lists of maps": new items take the places the
    # directive gives them, live-only fields of existing items survive.
    out = p.strategic_merge_patch(
        {"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]},
        {
            "$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
            "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}],
        },
        MERGING,
    )
    assert out == {
        "mergingList": [
            {"name": 4, "value": 4},
            {"name": 1, "other": "a"},
            {"name": 2, "value": 2, "other": "b"},
            {"name": 3, "value": 3},
        ]
    }


def test_set_element_order_reorders_without_changes():
    # Preserve-order design: "$setElementOrder may contain elements not present in the patch list".
    out = p.strategic_merge_patch(
        {"mergingList": [{"name": "B"}, {"name": "A"}]},
        {"$setElementOrder/mergingList": [{"name": "A"}, {"name": "B"}]},
        MERGING,
    )
    assert out == {"mergingList": [{"name": "A"}, {"name": "B"}]}
    # ... and items it names that the list does not hold are ignored.
    out = p.strategic_merge_patch(
        {"mergingList": [{"name": "A"}, {"name": "B"}]},
        {
            "$setElementOrder/mergingList": [{"name": "C"}, {"name": "A"}, {"name": "B"}],
            "mergingList": [{"name": "A"}, {"name": "B"}],
        },
        MERGING,
    )
    assert out == {"mergingList": [{"name": "A"}, {"name": "B"}]}


def test_patch_order_without_directive_puts_server_only_items_first():
    # Preserve-order design, "When $setElementOrder is not present": live B, C, A; patch A', B', D.
    out = p.strategic_merge_patch(
        {"mergingList": [{"name": "B"}, {"name": "C"}, {"name": "A"}]},
        {"mergingList": [{"name": "A", "v": 1}, {"name": "B", "v": 1}, {"name": "D"}]},
        MERGING,
    )
    assert [i["name"] for i in out["mergingList"]] == ["C", "A", "B", "D"]
    assert out["mergingList"][1] == {"name": "A", "v": 1}


def test_env_example_of_the_preserve_order_design():
    live = [
        {"name": "ENV2", "value": "bar"},
        {"name": "ENV5", "value": "server-added-2"},
        {"name": "ENV1", "value": "foo"},
        {"name": "ENV3", "value": "baz"},
        {"name": "ENV4", "value": "server-added-1"},
    ]
    patch = {
        "$setElementOrder/mergingList": [{"name": "ENV1"}, {"name": "ENV2"}, {"name": "ENV6"}],
        "mergingList": [{"name": "ENV3", "$patch": "delete"}, {"name": "ENV6", "value": "new-env"}],
    }
    out = p.strategic_merge_patch({"mergingList": live}, patch, MERGING)["mergingList"]
    names = [i["name"] for i in out]
    # ENV3 deleted, ENV6 added, ENV1 < ENV2 < ENV6 as the directive says, server-only ENV5 and ENV4
    # keep their relative order (apimachinery weaves them in by their live position).
    assert sorted(names) == ["ENV1", "ENV2", "ENV4", "ENV5", "ENV6"]
    assert names.index("ENV1") < names.index("ENV2") < names.index("ENV6")
    assert names.index("ENV5") < names.index("ENV4")
    assert names == ["ENV5", "ENV1", "ENV2", "ENV6", "ENV4"]


def test_set_element_order_must_agree_with_the_patch_list():
    # apimachinery strategicpatch tests: patch list order contradicting the directive is rejected.
    with pytest.raises(p.PatchError, match="doesn't match"):
        p.strategic_merge_patch(
            {"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]},
            {
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
            },
            MERGING,
        )


def test_missing_merge_key_is_an_error():
    with pytest.raises(p.PatchError, match="does not contain declared merge key"):
        p.strategic_merge_patch(
            {"mergingList": [{"name": 1, "value": "a"}]}, {"mergingList": [{"value": "b"}]}, MERGING
        )


def test_retain_keys_clears_the_other_strategy_fields():
    # kubectl docs: switching a Deployment to Recreate with the retainKeys strategy drops rollingUpdate.
    live = _deployment([{"name": "c"}])
    live["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    out = p.strategic_merge_patch(
        live, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOYMENT
    )
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # what kubectl apply actually sends for that change: the deletion rides beside the directive
    sent = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}}
    assert p.strategic_merge_patch(live, sent, DEPLOYMENT)["spec"]["strategy"] == {"type": "Recreate"}
    with pytest.raises(p.PatchError, match="retainKeys"):
        p.strategic_merge_patch(
            live, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, DEPLOYMENT
        )


def test_service_ports_merge_by_port_and_conditions_by_type():
    svc = {
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
        "status": {"conditions": [{"type": "A", "status": "True"}]},
    }
    out = p.strategic_merge_patch(
        svc,
        {
            "spec": {"ports": [{"port": 443, "targetPort": 8443}]},
            "status": {"conditions": [{"type": "A", "status": "False"}]},
        },
        p.schema_for("", "Service"),
    )
    assert [port["port"] for port in out["spec"]["ports"]] == [80, 443] or [
        port["port"] for port in out["spec"]["ports"]
    ] == [443, 80]
    assert len(out["spec"]["ports"]) == 2
    assert out["status"]["conditions"] == [{"type": "A", "status": "False"}]


def test_unknown_kinds_merge_like_a_merge_patch():
    schema = p.schema_for("example.com", "Widget")
    out = p.strategic_merge_patch(
        {"spec": {"items": [{"name": "a"}], "size": 1}}, {"spec": {"items": [{"name": "b"}]}}, schema
    )
    assert out == {"spec": {"items": [{"name": "b"}], "size": 1}}


def test_bad_strategic_patches():
    with pytest.raises(p.PatchError) as info:
        p.strategic_merge_patch({}, ["not", "a", "map"])
    assert info.value.code == 400
    with pytest.raises(p.PatchError):
        p.strategic_merge_patch({"a": {}}, {"a": {"$patch": "explode"}})
    with pytest.raises(p.PatchError):
        p.strategic_merge_patch({}, {"$unknownDirective": 1})


# --------------------------------------------------------------------------------------------------
# Server-side apply and managed fields


def _cm(data, labels=None):
    meta = {"name": "cfg", "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _apply(live, applied, manager="kubectl", force=False, schema=p.EMPTY):
    return p.server_side_apply(live, applied, manager, schema=schema, api_version="v1", now=NOW, force=force)


def test_apply_creates_and_records_the_manager():
    out = _apply(None, _cm({"a": "1"}, {"app": "x"}))
    assert out["data"] == {"a": "1"}
    [entry] = out["metadata"]["managedFields"]
    assert entry == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "v1",
        "time": NOW,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}},
    }


def test_apply_again_removes_fields_the_manager_stopped_applying():
    first = _apply(None, _cm({"a": "1", "b": "2"}))
    second = _apply(first, _cm({"a": "1"}))
    assert second["data"] == {"a": "1"}
    assert second["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:a": {}}}


def test_apply_keeps_fields_other_managers_own():
    first = _apply(None, _cm({"a": "1"}))
    edited = dict(first, data={"a": "1", "mine": "x"})
    edited = p.record_update(first, edited, "kubectl-edit", api_version="v1", now=NOW)
    managers = [(e["manager"], e["operation"]) for e in edited["metadata"]["managedFields"]]
    assert managers == [("kubectl", "Apply"), ("kubectl-edit", "Update")]
    assert edited["metadata"]["managedFields"][1]["fieldsV1"] == {"f:data": {"f:mine": {}}}
    again = _apply(edited, _cm({"b": "2"}))
    assert again["data"] == {"mine": "x", "b": "2"}


def test_apply_conflicts_with_another_manager_unless_forced():
    first = _apply(None, _cm({"a": "1"}), manager="alice")
    with pytest.raises(p.ApplyConflictError) as info:
        _apply(first, _cm({"a": "2"}), manager="bob")
    assert info.value.code == 409
    assert info.value.message == 'Apply failed with 1 conflict: conflict with "alice" using v1: .data.a'
    [conflict] = info.value.conflicts
    assert conflict.field == ".data.a"
    # The same value is shared ownership, not a conflict.
    shared = _apply(first, _cm({"a": "1"}), manager="bob")
    assert [e["manager"] for e in shared["metadata"]["managedFields"]] == ["alice", "bob"]
    forced = _apply(first, _cm({"a": "2"}), manager="bob", force=True)
    assert forced["data"] == {"a": "2"}
    assert [e["manager"] for e in forced["metadata"]["managedFields"]] == ["bob"]


def test_apply_merges_keyed_lists_and_removes_items_it_no_longer_applies():
    def dep(*containers):
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [dict(c) for c in containers]}}},
        }

    first = _apply(None, dep({"name": "a", "image": "1"}, {"name": "b", "image": "1"}), schema=DEPLOYMENT)
    fields = first["metadata"]["managedFields"][0]["fieldsV1"]
    item = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"a"}']
    assert item == {".": {}, "f:image": {}, "f:name": {}}
    # Another manager adds a sidecar; the applier drops b and changes a.
    with_sidecar = copy.deepcopy(first)
    _containers_of = with_sidecar["spec"]["template"]["spec"]["containers"]
    _containers_of.append({"name": "sidecar", "image": "s"})
    with_sidecar = p.record_update(
        first, with_sidecar, "injector", schema=DEPLOYMENT, api_version="apps/v1", now=NOW
    )
    out = _apply(with_sidecar, dep({"name": "a", "image": "2"}), schema=DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "2"},
        {"name": "sidecar", "image": "s"},
    ]


def test_apply_needs_a_manager_and_an_object():
    with pytest.raises(p.PatchError):
        _apply(None, _cm({}), manager="")
    with pytest.raises(p.PatchError):
        p.server_side_apply(None, ["x"], "m", api_version="v1", now=NOW)


def test_fields_v1_round_trip():
    obj = {
        "metadata": {"name": "n", "finalizers": ["x/y"], "labels": {"a": "b"}},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
            }
        },
    }
    paths = p.field_paths(obj, DEPLOYMENT)
    assert ("f:metadata", "f:finalizers", 'v:"x/y"') in paths
    port = 'k:{"containerPort":80,"protocol":"TCP"}'
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"c"}', "f:ports", port, ".") in paths
    assert p.from_fields_v1(p.to_fields_v1(paths)) == paths
    assert ("f:metadata", "f:name") not in paths


def test_no_op_writes_leave_managed_fields_alone():
    first = _apply(None, _cm({"a": "1"}))
    again = p.server_side_apply(
        first, _cm({"a": "1"}), "kubectl", api_version="v1", now="2030-01-01T00:00:00Z"
    )
    assert again == first
    edited = p.record_update(first, dict(first, data={"a": "2"}), "kubectl-edit", api_version="v1", now=NOW)
    same = p.record_update(edited, edited, "kubectl-edit", api_version="v1", now="2030-01-01T00:00:00Z")
    assert same["metadata"]["managedFields"] == edited["metadata"]["managedFields"]


def test_conflict_paths_read_like_the_apiservers():
    conflict = p.ApplyConflict("m", ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"), "apps/v1")
    assert conflict.describe() == 'conflict with "m" using apps/v1: .spec.containers[name="c"].image'
    two = p.ApplyConflictError([conflict, p.ApplyConflict("m", ("f:spec", "f:replicas"), "apps/v1")])
    assert two.message == (
        'Apply failed with 2 conflicts: conflicts with "m" using apps/v1:\n'
        '- .spec.containers[name="c"].image\n- .spec.replicas'
    )
