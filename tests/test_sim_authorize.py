"""Rancher's tunnel authorisation rules and its Go error texts, without sockets."""

from __future__ import annotations

import base64
import json
import random

import pytest
from twisted.internet.task import Clock

from scaleagent.sim import store as st
from scaleagent.sim.authorize import Accepted, Refused, authorize
from scaleagent.sim.params import ParamsError, b64decode_go, decode_params
from scaleagent.sim.store import SimStore

GOOD = {"cluster": {"address": "10.43.0.1:443", "token": "sa-token", "caCert": "Y2E="}}


def enc(value) -> str:
    raw = value if isinstance(value, (bytes, str)) else json.dumps(value)
    raw = raw.encode() if isinstance(raw, str) else raw
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b""),
        ("YWJj", b"abc"),
        ("YWI=", b"ab"),
        ("YQ==", b"a"),
        ("YW\r\nJj", b"abc"),
    ],
)
def test_base64_accepts_what_go_accepts(text, expected):
    assert b64decode_go(text) == expected


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("a", 0),  # a lone character
        ("abc", 0),  # an unpadded final quantum
        ("abcde", 4),
        ("ab!d", 2),  # a character outside the alphabet
        ("ab-_", 2),  # the URL alphabet is not the standard one
        ("a===", 1),  # padding too early
        ("ab=", 3),  # not enough padding
        ("ab=c", 2),  # bad second padding
        ("abc=abcd", 4),  # garbage after padding
    ],
)
def test_base64_errors_carry_gos_offsets(text, offset):
    with pytest.raises(ParamsError) as caught:
        b64decode_go(text)
    assert str(caught.value) == f"illegal base64 data at input byte {offset}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "unexpected end of JSON input"),
        ("{", "unexpected end of JSON input"),
        ("nope", "invalid character 'o' in literal null (expecting 'u')"),
        ("tru", "unexpected end of JSON input"),
        ("xyz", "invalid character 'x' looking for beginning of value"),
        ("{x", "invalid character 'x' looking for beginning of object key string"),
        ('{"a" 1}', "invalid character '1' after object key"),
        ('{"a":1 2}', "invalid character '2' after object key:value pair"),
        ("{} x", "invalid character 'x' after top-level value"),
        ("[]", "json: cannot unmarshal array into Go value of type mcmauthorizer.input"),
        ('"s"', "json: cannot unmarshal string into Go value of type mcmauthorizer.input"),
        (
            '{"cluster": "x"}',
            "json: cannot unmarshal string into Go struct field input.cluster of type mcmauthorizer.cluster",
        ),
        (
            '{"cluster": {"address": 5}}',
            "json: cannot unmarshal number into Go struct field cluster.cluster.address of type string",
        ),
        ("{}", "missing node or cluster registration info"),
        ("null", "missing node or cluster registration info"),
        ('{"cluster": null}', "missing node or cluster registration info"),
        ('{"node": {}}', "invalid input, hostname empty"),
        ('{"cluster": {}}', "invalid input, address empty"),
        ('{"cluster": {"address": "a:1"}}', "invalid input, token empty"),
        ('{"cluster": {"address": "a:1", "token": "t"}}', "invalid input, caCert empty"),
    ],
)
def test_params_errors_are_ranchers(raw, message):
    with pytest.raises(ParamsError) as caught:
        decode_params(enc(raw))
    assert str(caught.value) == message


def test_deeply_nested_params_are_a_clear_error():
    with pytest.raises(ParamsError, match="exceeded max depth"):
        decode_params(enc("[" * 12000))


def test_random_params_only_ever_raise_params_error():
    rng = random.Random(11)
    alphabet = b'{}[]":,abc 01\\n\xff'
    for _ in range(5000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        header = enc(raw) if rng.random() < 0.8 else raw.decode("latin-1")
        try:
            decode_params(header)
        except ParamsError:
            pass


def test_params_good_and_go_like_leniency():
    data = decode_params(enc(GOOD))
    assert data.cluster == GOOD["cluster"]
    assert data.node is None
    # Go matches keys case-insensitively and ignores unknown keys (SCA's extra "scheme").
    data = decode_params(enc({"Cluster": {"Address": "a:1", "TOKEN": "t", "caCert": "c", "scheme": "https"}}))
    assert data.cluster == {"address": "a:1", "token": "t", "caCert": "c"}


def make_store() -> tuple[SimStore, st.Cluster, str]:
    store = SimStore(Clock(), rng=random.Random(3))
    cluster = store.create_cluster("sim-00000")
    return store, cluster, store.tokens(cluster.id)[0].token


def test_main_tunnel_accepted_with_cluster_id_as_key():
    store, cluster, token = make_store()
    result = authorize(store, {"x-api-tunnel-token": token, "x-api-tunnel-params": enc(GOOD)})
    assert result == Accepted(cluster.id, cluster, st.MAIN, params_changed=True)
    assert cluster.api_endpoint == "https://10.43.0.1:443"
    again = authorize(store, {"x-api-tunnel-token": token, "x-api-tunnel-params": enc(GOOD)})
    assert isinstance(again, Accepted) and not again.params_changed
    assert cluster.params_changes == 0


def test_steve_tunnel_accepted_with_stv_key():
    store, cluster, token = make_store()
    result = authorize(store, {"authorization": "Bearer stv-cluster-" + token})
    assert result == Accepted("stv-cluster-" + cluster.id, cluster, st.STEVE)
    # The steve authorizer comes first in Rancher's chain: tunnel headers beside it do not matter.
    result = authorize(store, {"authorization": "Bearer stv-cluster-" + token, "x-api-tunnel-token": "junk"})
    assert isinstance(result, Accepted) and result.kind == st.STEVE


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 401, "failed authentication"),
        ({"authorization": "Bearer stv-cluster-unknown"}, 401, "failed authentication"),
        ({"authorization": "Bearer token-abcde:secret"}, 401, "failed authentication"),
        ({"authorization": "bearer stv-cluster-TOKEN"}, 401, "failed authentication"),
        ({"x-api-tunnel-token": "unknown", "x-api-tunnel-params": enc(GOOD)}, 400, "cluster not found"),
        (
            {"x-api-tunnel-token": "TOKEN", "x-api-tunnel-params": "%%%"},
            400,
            "illegal base64 data at input byte 0",
        ),
        ({"x-api-tunnel-token": "TOKEN"}, 400, "unexpected end of JSON input"),
        (
            {"x-api-tunnel-token": "TOKEN", "x-api-tunnel-params": enc({"cluster": {}})},
            400,
            "invalid input, address empty",
        ),
        (
            {
                "x-api-tunnel-token": "TOKEN",
                "x-api-tunnel-params": enc({"node": {"requestedHostname": "n1"}}),
            },
            400,
            "node agents are not simulated by the stand-in",
        ),
        # A bad steve token does not hide the main authorizer's error.
        (
            {"authorization": "Bearer stv-cluster-x", "x-api-tunnel-token": "unknown"},
            400,
            "cluster not found",
        ),
    ],
)
def test_refusals(headers, status, body):
    store, cluster, token = make_store()
    headers = {key: value.replace("TOKEN", token) for key, value in headers.items()}
    assert authorize(store, headers) == Refused(status, body)
    assert cluster.params is None


def test_rotated_token_valid_in_grace_and_deleted_cluster_not_found():
    store, cluster, token = make_store()
    store.rotate_token(cluster.id)
    assert isinstance(
        authorize(store, {"x-api-tunnel-token": token, "x-api-tunnel-params": enc(GOOD)}), Accepted
    )
    store.delete_cluster(cluster.id)
    assert authorize(store, {"x-api-tunnel-token": token, "x-api-tunnel-params": enc(GOOD)}) == Refused(
        400, "cluster not found"
    )
    assert authorize(store, {"authorization": "Bearer stv-cluster-" + token}) == Refused(
        401, "failed authentication"
    )
