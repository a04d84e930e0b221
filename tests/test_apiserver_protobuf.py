"""Protobuf request bodies: captured kubectl bodies, hand-built vectors, errors and fuzzing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaleagent.apiserver import protobuf as pb
from scaleagent.apiserver.protofields import KINDS, MESSAGES
from scaleagent.apiserver.status import ApiError

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
CAPTURED = sorted(FIXTURES.glob("*.pb"))


def _fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.pb").read_bytes()


def _drop_null_timestamps(value):
    """Go's JSON writes a zero metav1.Time as null; the decoder leaves it out."""
    if isinstance(value, dict):
        return {k: _drop_null_timestamps(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_null_timestamps(v) for v in value]
    return value


def test_fixtures_present():
    assert len(CAPTURED) >= 23


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_captured_bodies_round_trip_byte_for_byte(path):
    body = path.read_bytes()
    assert body.startswith(b"k8s\x00")
    assert pb.encode(pb.decode(body)) == body


@pytest.mark.parametrize(
    "path", sorted(FIXTURES.glob("*.kubectl.json")), ids=lambda p: p.name.split(".")[0]
)
def test_decoded_shape_is_what_kubectl_prints_as_json(path):
    name = path.name.split(".")[0]
    expected = _drop_null_timestamps(json.loads(path.read_text()))
    assert pb.decode(_fixture(name)) == expected


def test_namespace_body_matches_hand_built_bytes():
    # ObjectMeta writes every value field even when empty; zero creationTimestamp is an empty message.
    meta = bytes.fromhex("0a036e7331" "1200" "1a00" "2200" "2a00" "3200" "3800" "4200")
    namespace = b"\x0a" + bytes([len(meta)]) + meta + b"\x12\x00" + b"\x1a\x02\x0a\x00"
    type_meta = b"\x0a\x02v1\x12\x09Namespace"
    unknown = b"\x0a\x0f" + type_meta + b"\x12" + bytes([len(namespace)]) + namespace + b"\x1a\x00\x22\x00"
    expected = b"k8s\x00" + unknown
    assert _fixture("namespace") == expected
    assert pb.encode({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}) == expected


def test_tokenrequest_and_reviews_decode_to_json_shape():
    assert pb.decode(_fixture("tokenrequest")) == {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "spec": {"audiences": ["aud1"], "expirationSeconds": 600},
        # Go's JSON writes status.token even when empty (no omitempty); zero times are left out.
        "status": {"token": ""},
    }
    ssar = pb.decode(_fixture("ssar-resource"))
    assert ssar["spec"] == {"resourceAttributes": {"namespace": "ns1", "verb": "list", "resource": "pods"}}
    assert ssar["status"] == {"allowed": False}
    assert pb.decode(_fixture("ssar-nonresource"))["spec"] == {
        "nonResourceAttributes": {"path": "/healthz", "verb": "get"}
    }
    assert pb.decode(_fixture("selfsubjectreview")) == {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "status": {"userInfo": {}},
    }
    assert pb.decode(_fixture("ssrr"))["spec"] == {"namespace": "ns1"}


def test_secret_bytes_are_base64_and_binary_safe():
    data = {"bin": base64.b64encode(bytes(range(256))).decode(), "empty": ""}
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": data, "type": "Opaque"}
    body = pb.encode(obj)
    assert bytes(range(256)) in body
    assert pb.decode(body) == obj


def test_time_is_rfc3339_seconds_on_the_wire():
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "creationTimestamp": "2024-01-02T03:04:05Z"},
    }
    raw = pb.encode_message("ConfigMap", obj)
    # 1704164645 seconds (calendar.timegm) as a varint, then nanos 0: Go writes both Timestamp fields.
    stamp = b"\x08" + bytes.fromhex("a5facdac06") + b"\x10\x00"
    assert b"\x42" + bytes([len(stamp)]) + stamp in raw
    assert pb.decode_message("ConfigMap", raw)["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"


def test_time_offsets_and_fractions_normalise_to_utc_seconds():
    assert pb.parse_rfc3339("2024-01-02T05:04:05.5+02:00") == (1704164645, 500_000_000)
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "me", "renewTime": "2024-01-02T03:04:05.123456Z", "leaseTransitions": 0},
    }
    assert pb.decode(pb.encode(lease)) == lease


def test_pre_epoch_time_and_negative_int32_use_ten_byte_varints():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"creationTimestamp": "1960-01-01T00:00:00Z"}}
    assert pb.decode(pb.encode(obj)) == obj
    probe = {"exec": {"command": ["true"]}, "initialDelaySeconds": -5}
    raw = pb.encode_message("Probe", probe)
    assert b"\x10" + b"\xfb" + b"\xff" * 8 + b"\x01" in raw
    assert pb.decode_message("Probe", raw) == probe


def test_int_or_string_and_quantity():
    spec = {
        "ports": [
            {"port": 80, "targetPort": "http"},
            {"port": 443, "targetPort": 8443},
        ]
    }
    raw = pb.encode_message("ServiceSpec", spec)
    # targetPort (field 4) as a string IntOrString: type 1, intVal 0, strVal "http" (Go writes all three).
    assert bytes.fromhex("220a0801" "1000" "1a0468747470") in raw
    assert pb.decode_message("ServiceSpec", raw) == spec
    res = {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "1.5"}}
    raw = pb.encode_message("ResourceRequirements", res)
    assert pb.decode_message("ResourceRequirements", raw) == res
    # Map entries are written sorted by key.
    assert raw.index(b"cpu") < raw.index(b"memory")


def test_pointer_fields_keep_zero_values_and_value_fields_drop_them():
    spec = {"replicas": 0, "template": {"metadata": {}, "spec": {}}, "strategy": {}, "paused": False}
    decoded = pb.decode_message("DeploymentSpec", pb.encode_message("DeploymentSpec", spec))
    assert decoded["replicas"] == 0
    assert "paused" not in decoded
    assert decoded["strategy"] == {}


def test_unknown_fields_of_every_wire_type_are_skipped():
    raw = pb.encode_message("ConfigMap", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    extra = (
        b"\xb8\x06\x2a"  # field 103 varint
        + b"\xc2\x06\x03abc"  # field 104 length-delimited
        + b"\xc9\x06" + b"\x00" * 8  # field 105 fixed64
        + b"\xd5\x06" + b"\x00" * 4  # field 106 fixed32
        + b"\xdb\x06\x08\x01\xdc\x06"  # field 107 group holding a varint
    )
    body = pb.encode_envelope("v1", "ConfigMap", extra + raw + extra)
    assert pb.decode(body) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "c"},
        "data": {"k": "v"},
    }


def test_packed_repeated_integers_are_accepted():
    # Go writes supplementalGroups unpacked; a packed encoding must decode the same.
    packed = b"\x22\x03\x01\x02\x03"
    assert pb.decode_message("PodSecurityContext", packed) == {"supplementalGroups": [1, 2, 3]}
    unpacked = pb.encode_message("PodSecurityContext", {"supplementalGroups": [1, 2, 3]})
    assert unpacked == b"\x20\x01\x20\x02\x20\x03"


def test_map_entries_without_value_get_the_zero_value():
    raw = b"\x12\x03\x0a\x01k" + b"\x12\x05\x0a\x01q\x12\x00"
    assert pb.decode_message("ConfigMap", raw) == {"data": {"k": "", "q": ""}}


RICH_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "cattle-cluster-agent",
        "namespace": "cattle-system",
        "labels": {"app": "cattle-cluster-agent"},
        "annotations": {"management.cattle.io/scale-available": "2"},
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "name": "cattle-system",
                "uid": "u-1",
                "controller": True,
            }
        ],
        "finalizers": ["x/y"],
        "managedFields": [
            {
                "manager": "rancher",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2025-03-04T05:06:07Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }
        ],
    },
    "spec": {
        "replicas": 1,
        "selector": {
            "matchLabels": {"app": "cattle-cluster-agent"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
        },
        "template": {
            "metadata": {"labels": {"app": "cattle-cluster-agent"}},
            "spec": {
                "serviceAccountName": "cattle",
                "terminationGracePeriodSeconds": 30,
                "securityContext": {"runAsNonRoot": True, "fsGroup": 1000},
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "os", "operator": "In", "values": ["linux"]}]}
                            ]
                        }
                    }
                },
                "tolerations": [{"key": "node-role", "operator": "Exists", "effect": "NoSchedule"}],
                "volumes": [
                    {"name": "certs", "secret": {"secretName": "tls", "defaultMode": 320}},
                    {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt"}]}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    {
                        "name": "token",
                        "projected": {
                            "sources": [
                                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
                            ]
                        },
                    },
                ],
                "containers": [
                    {
                        "name": "agent",
                        "image": "rancher/rancher-agent:v2.12.0",
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["--debug"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [
                            {"name": "CATTLE_SERVER", "value": "https://rancher.example"},
                            {
                                "name": "CATTLE_TOKEN",
                                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
                            },
                            {
                                "name": "POD_NS",
                                "valueFrom": {
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
                                },
                            },
                            {
                                "name": "MEM",
                                "valueFrom": {
                                    "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                                },
                            },
                        ],
                        "envFrom": [{"configMapRef": {"name": "env", "optional": True}}],
                        "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m"}},
                        "volumeMounts": [
                            {"name": "certs", "mountPath": "/etc/certs", "readOnly": True},
                            {"name": "cfg", "mountPath": "/cfg", "subPath": "a.txt"},
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTPS"},
                            "initialDelaySeconds": 60,
                            "periodSeconds": 60,
                        },
                        "readinessProbe": {
                            "tcpSocket": {"port": "http"},
                            "failureThreshold": 3,
                        },
                        "startupProbe": {"exec": {"command": ["cat", "/ready"]}, "timeoutSeconds": 2},
                        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }
                ],
            },
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    },
    "status": {
        "observedGeneration": 2,
        "replicas": 1,
        "readyReplicas": 1,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "lastUpdateTime": "2025-03-04T05:06:07Z",
                "lastTransitionTime": "2025-03-04T05:06:07Z",
            }
        ],
    },
}


def test_deployment_with_full_pod_template_round_trips():
    body = pb.encode(RICH_DEPLOYMENT)
    assert pb.decode(body) == RICH_DEPLOYMENT
    assert pb.encode(pb.decode(body)) == body


def test_rancher_token_secret_and_reviews_round_trip():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "generateName": "cattle-impersonation-u-abc-token-",
            "namespace": "cattle-impersonation-system",
            "labels": {"cattle.io/service-account.name": "cattle-impersonation-u-abc"},
            "annotations": {"kubernetes.io/service-account.name": "cattle-impersonation-u-abc"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    assert pb.decode(pb.encode(secret)) == secret
    sar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "metadata": {},
        "spec": {
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "x"},
            "user": "u-abc",
            "groups": ["system:authenticated"],
            "extra": {"principalid": ["local://u-abc"], "empty": []},
            "uid": "1",
        },
        "status": {"allowed": True, "reason": "ok"},
    }
    assert pb.decode(pb.encode(sar)) == sar
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {},
        "spec": {"token": "t", "audiences": ["a"]},
        "status": {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:a:b", "groups": ["g"], "extra": {"k": ["v"]}},
        },
    }
    assert pb.decode(pb.encode(review)) == review


@pytest.mark.parametrize(
    "obj",
    [
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "lr"},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "1"}, "max": {"memory": "2Gi"}}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"},
            "reason": "Started",
            "message": "m",
            "source": {"component": "kubelet"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "count": 2,
            "type": "Normal",
            "eventTime": "2025-01-01T00:00:00.000001Z",
        },
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "eventTime": "2025-01-01T00:00:00.500000Z",
            "reportingController": "c",
            "regarding": {"kind": "Node", "name": "n"},
            "note": "hello",
            "deprecatedSource": {},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {
                "backoffLimit": 0,
                "completions": 3,
                "template": {"metadata": {}, "spec": {"restartPolicy": "Never"}},
            },
            "status": {"startTime": "2025-01-01T00:00:00Z", "succeeded": 1},
        },
        {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u"},
        },
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "metadata": {},
            "spec": {"namespace": "n"},
            "status": {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": False,
            },
        },
    ],
    ids=lambda o: o["kind"] + "/" + o["apiVersion"],
)
def test_other_kinds_round_trip(obj):
    body = pb.encode(obj)
    assert pb.decode(body) == obj
    assert pb.encode(pb.decode(body)) == body


def test_every_kind_in_the_table_has_a_message():
    for (api_version, kind), name in KINDS.items():
        assert name in MESSAGES
        body = pb.encode({"apiVersion": api_version, "kind": kind})
        assert pb.decode(body)["kind"] == kind


def test_is_protobuf():
    assert pb.is_protobuf("application/vnd.kubernetes.protobuf")
    assert pb.is_protobuf("application/vnd.kubernetes.protobuf; charset=utf-8")
    assert not pb.is_protobuf("application/json")
    assert not pb.is_protobuf(None)
    assert not pb.is_protobuf("application/vnd.kubernetes.protobuf;stream=watch".replace(";", "x"))


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


def _ld(number: int, payload: bytes) -> bytes:
    return _uvarint(number << 3 | 2) + _uvarint(len(payload)) + payload


# --- errors -------------------------------------------------------------------------------------


def _error(body) -> ApiError:
    with pytest.raises(ApiError) as info:
        pb.decode(body)
    return info.value


def test_missing_magic_is_400():
    err = _error(b'{"kind":"Namespace"}')
    assert (err.code, err.reason) == (400, "BadRequest")
    assert err.status()["code"] == 400


def test_truncated_body_is_400():
    body = _fixture("deployment")
    err = _error(body[:-20])
    assert err.code == 400


def test_unknown_kind_is_415_naming_the_kind():
    err = _error(pb.encode_envelope("example.com/v1", "Widget", b""))
    assert (err.code, err.reason) == (415, "UnsupportedMediaType")
    assert "Widget" in err.message
    assert err.status()["details"] == {"kind": "Widget"}


def test_known_kind_with_foreign_content_encoding_is_415():
    body = bytearray(pb.encode({"apiVersion": "v1", "kind": "Namespace"}))
    assert body.endswith(b"\x1a\x00\x22\x00")
    body[-4:] = b"\x1a\x04gzip\x22\x00"
    assert _error(bytes(body)).code == 415


def test_missing_kind_is_400():
    assert _error(pb.encode_envelope("v1", "", b"")).code == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05\x08\x01",  # metadata shorter than its length
        b"\x08\x01",  # metadata (a message) sent as a varint
        b"\x0a\x02\x38\xff",  # generation varint cut short
        b"\x00\x01",  # field number 0
        b"\x0f",  # wire type 7
        b"\x0a\x02\x42\x80",  # truncated length inside creationTimestamp
        # creationTimestamp 2**62 seconds: far past year 9999
        _ld(1, _ld(8, b"\x08" + _uvarint(1 << 62) + b"\x10\x00")),
        # managedFields[0].fieldsV1.raw that is not JSON
        _ld(1, _ld(17, _ld(7, _ld(1, b"{{{")))),
        b"\x0c",  # an end-group tag with no group
        b"\x0a\x0c" + b"\x38" + b"\xff" * 11,  # varint longer than 10 bytes
    ],
)
def test_malformed_messages_are_400(raw):
    err = _error(pb.encode_envelope("v1", "ConfigMap", raw))
    assert err.code == 400, err.message


def test_invalid_quantity_is_400():
    raw = pb.encode_message("ResourceQuotaSpec", {"hard": {"cpu": "1"}}).replace(b"\x0a\x011", b"\x0a\x01x")
    body = pb.encode_envelope("v1", "ResourceQuota", b"\x12" + bytes([len(raw)]) + raw)
    assert _error(body).code == 400


def test_encode_rejects_wrong_shapes():
    with pytest.raises(pb.ProtobufEncodeError):
        pb.encode({"apiVersion": "v1", "kind": "ConfigMap", "data": ["not", "a", "map"]})
    with pytest.raises(pb.ProtobufEncodeError):
        pb.encode({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}})
    with pytest.raises(pb.ProtobufEncodeError):
        pb.encode({"apiVersion": "example.com/v1", "kind": "Widget"})
    with pytest.raises(pb.ProtobufEncodeError):
        pb.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"creationTimestamp": "yesterday"}})


# --- fuzzing ------------------------------------------------------------------------------------


def _decode_or_status(body: bytes) -> None:
    try:
        result = pb.decode(body)
    except ApiError as e:
        assert e.code in (400, 415), e
        assert e.status()["kind"] == "Status"
        return
    assert isinstance(result, dict) and isinstance(result["kind"], str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_give_400_or_415(data):
    _decode_or_status(data)
    _decode_or_status(b"k8s\x00" + data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CAPTURED), st.data())
def test_fuzz_truncated_and_mutated_captures_only_give_400_or_415(path, data):
    body = path.read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    _decode_or_status(body[:cut])
    position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    _decode_or_status(body[:position] + bytes([byte]) + body[position + 1 :])
    raw = pb.decode_envelope(body).raw
    env = pb.decode_envelope(body)
    inner_cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    _decode_or_status(pb.encode_envelope(env.api_version, env.kind, raw[:inner_cut]))


def test_every_truncation_of_every_capture_is_a_clean_status():
    for path in CAPTURED:
        body = path.read_bytes()
        env = pb.decode_envelope(body)
        for cut in range(len(body)):
            _decode_or_status(body[:cut])
        for cut in range(len(env.raw)):
            _decode_or_status(pb.encode_envelope(env.api_version, env.kind, env.raw[:cut]))


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
_values = st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    name=_names,
    labels=st.dictionaries(_names, _values, max_size=4),
    data=st.dictionaries(_names, _values, max_size=4),
    binary=st.dictionaries(_names, st.binary(max_size=20), max_size=3),
    immutable=st.none() | st.booleans(),
)
def test_property_configmaps_round_trip(name, labels, data, binary, immutable):
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name}}
    if labels:
        obj["metadata"]["labels"] = labels
    if data:
        obj["data"] = data
    if binary:
        obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    if immutable is not None:
        obj["immutable"] = immutable
    body = pb.encode(obj)
    assert pb.decode(body) == obj
    assert pb.encode(pb.decode(body)) == body


def test_bodies_hook_decodes_protobuf_bodies():
    from scaleagent.apiserver import bodies

    body = _fixture("configmap")
    assert bodies.decode_body("application/vnd.kubernetes.protobuf", body) == pb.decode(body)
    with pytest.raises(ApiError) as info:
        bodies.decode_body("application/vnd.kubernetes.protobuf", b"junk")
    assert info.value.code == 400
