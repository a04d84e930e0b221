"""The stand-in's model: ids, tokens, rotation with grace, params changes, the state rule."""

from __future__ import annotations

import random
import re

import pytest
from twisted.internet.task import Clock

from scaleagent.sim import store as st
from scaleagent.sim.store import ClusterParams, NotFound, NotUnique, SimStore


def make(grace: float = 60.0, **kwargs) -> tuple[SimStore, Clock, list[tuple[str, str]]]:
    clock = Clock()
    clock.advance(1_700_000_000)
    store = SimStore(clock, rng=random.Random(7), grace_period=grace, **kwargs)
    events: list[tuple[str, str]] = []
    store.add_listener(lambda event, cluster: events.append((event, cluster.id)))
    return store, clock, events


P1 = ClusterParams("10.43.0.1:443", "sa-token", "Y2E=")


def test_ids_and_tokens_look_like_ranchers():
    store, _, events = make()
    cluster = store.create_cluster("sim-00001")
    assert re.fullmatch(r"c-[bcdfghjklmnpqrstvwxz2456789]{5}", cluster.id)
    [crt] = store.tokens(cluster.id)
    assert crt.name == "default-token"
    assert crt.id == f"{cluster.id}:default-token"
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{54}", crt.token)
    assert store.cluster_for_token(crt.token) is cluster
    assert events == [(st.CREATED, cluster.id)]
    assert cluster.state == st.PENDING


def test_names_unique_case_insensitively_and_lookup_exact():
    store, _, _ = make()
    cluster = store.create_cluster("Sim-1")
    with pytest.raises(NotUnique):
        store.create_cluster("sim-1")
    assert store.find_cluster("Sim-1") is cluster
    assert store.find_cluster("sim-1") is None


def test_create_token_and_unknown_cluster():
    store, _, _ = make()
    cluster = store.create_cluster("a")
    crt = store.create_token(cluster.id)
    assert crt.name.startswith("crt-")
    assert store.cluster_for_token(crt.token) is cluster
    assert len(store.tokens(cluster.id)) == 2
    with pytest.raises(NotFound):
        store.create_token("c-nope1")
    with pytest.raises(NotUnique):
        store.create_token(cluster.id, "default-token")


def test_rotation_keeps_the_old_token_for_the_grace_period_only():
    store, clock, events = make(grace=60.0)
    cluster = store.create_cluster("a")
    old = store.tokens(cluster.id)[0].token
    crt = store.rotate_token(cluster.id)
    assert crt.token != old
    assert (st.TOKEN_ROTATED, cluster.id) in events
    assert store.cluster_for_token(crt.token) is cluster
    assert store.cluster_for_token(old) is cluster
    clock.advance(59.9)
    assert store.cluster_for_token(old) is cluster
    clock.advance(0.2)
    assert store.cluster_for_token(old) is None
    assert store.cluster_for_token(crt.token) is cluster
    # A second rotation retires the first token at once.
    newer = store.rotate_token(cluster.id).token
    assert store.cluster_for_token(crt.token) is cluster
    assert store.cluster_for_token(newer) is cluster


def test_delete_invalidates_tokens_and_frees_the_name():
    store, _, events = make()
    cluster = store.create_cluster("a")
    token = store.tokens(cluster.id)[0].token
    store.delete_cluster(cluster.id)
    assert cluster.removed
    assert store.cluster_for_token(token) is None
    assert events[-1] == (st.DELETED, cluster.id)
    with pytest.raises(NotFound):
        store.get_cluster(cluster.id)
    assert store.create_cluster("a").id != cluster.id


def test_params_first_set_then_changes_counted():
    store, _, events = make()
    cluster = store.create_cluster("a")
    assert store.record_params(cluster, P1) is True
    assert cluster.driver == "imported"
    assert cluster.api_endpoint == "https://10.43.0.1:443"
    assert cluster.params_changes == 0
    assert store.record_params(cluster, P1) is False
    assert store.record_params(cluster, ClusterParams("10.43.0.1:443", "other", "Y2E=")) is True
    assert cluster.params_changes == 1
    assert store.params_changes_total == 1
    assert (st.PARAMS_CHANGED, cluster.id) in events


def test_state_pending_active_unavailable_and_back():
    store, _, events = make()
    cluster = store.create_cluster("a")
    store.tunnel_opened(cluster, st.MAIN)
    assert cluster.state == st.PENDING
    assert cluster.conditions["Provisioned"].status == "True"
    store.tunnel_opened(cluster, st.STEVE)
    assert cluster.state == st.ACTIVE
    assert cluster.conditions["Ready"].status == "True"
    assert cluster.conditions["Connected"].status == "True"
    # A second session of the same kind, then losing one of them, changes nothing.
    store.tunnel_opened(cluster, st.STEVE)
    store.tunnel_closed(cluster, st.STEVE)
    assert cluster.state == st.ACTIVE
    store.tunnel_closed(cluster, st.STEVE)
    assert cluster.state == st.UNAVAILABLE
    assert cluster.conditions["Ready"].reason == "Disconnected"
    assert cluster.conditions["Connected"].status == "False"
    store.tunnel_opened(cluster, st.STEVE)
    assert cluster.state == st.ACTIVE
    states = [e for e in events if e[0] == st.STATE]
    assert len(states) == 3
    assert store.counts() == {st.PENDING: 0, st.ACTIVE: 1, st.UNAVAILABLE: 0}


def test_pending_cluster_losing_a_tunnel_stays_pending():
    store, _, _ = make()
    cluster = store.create_cluster("a")
    store.tunnel_opened(cluster, st.MAIN)
    store.tunnel_closed(cluster, st.MAIN)
    assert cluster.state == st.PENDING
    # Closing more than was opened is ignored.
    store.tunnel_closed(cluster, st.MAIN)
    assert cluster.sessions[st.MAIN] == 0


def test_readiness_hook_decides_active():
    ready = {"value": False}
    store, _, _ = make(readiness=lambda cluster: ready["value"])
    cluster = store.create_cluster("a")
    store.tunnel_opened(cluster, st.MAIN)
    store.tunnel_opened(cluster, st.STEVE)
    assert cluster.state == st.PENDING
    ready["value"] = True
    assert store.evaluate(cluster) == st.ACTIVE
    ready["value"] = False
    store.evaluate_all()
    assert cluster.state == st.UNAVAILABLE


def test_a_failing_listener_or_readiness_does_not_break_the_store():
    def boom(*args):
        raise RuntimeError("boom")

    store, _, _ = make(readiness=boom)
    store.add_listener(boom)
    cluster = store.create_cluster("a")
    store.tunnel_opened(cluster, st.MAIN)
    store.tunnel_opened(cluster, st.STEVE)
    assert cluster.state == st.PENDING


def test_ttl_rotation_rotates_only_old_tokens():
    store, clock, _ = make(grace=10.0)
    a = store.create_cluster("a")
    clock.advance(50)
    b = store.create_cluster("b")
    first_a, first_b = store.tokens(a.id)[0].token, store.tokens(b.id)[0].token
    assert store.rotate_expired(60) == 0
    clock.advance(10)
    assert store.rotate_expired(60) == 1
    assert store.tokens(a.id)[0].token != first_a
    assert store.tokens(b.id)[0].token == first_b
    assert store.cluster_for_token(first_a) is a  # in grace
    clock.advance(60)
    assert store.rotate_expired(60) == 2  # a's new token and b's first one are both due now
    assert store.cluster_for_token(first_a) is None
