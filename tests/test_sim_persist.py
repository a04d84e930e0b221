"""The stand-in's durable state (`scaleagent.sim.persist`, `scaleagent.sim.saver`), synchronously.

Round trips of a store with clusters, params and rotated tokens; every kind of bad file is refused with
a message naming the problem and moved aside; a failed write is logged with its cause and retried.
"""

from __future__ import annotations

import json
import os
import random
import stat

import pytest
from twisted.internet.task import Clock

from scaleagent.sim import persist
from scaleagent.sim import store as st
from scaleagent.sim.saver import StateSaver
from scaleagent.state import CorruptStateFile, StateDir


def make_store(clock: Clock, *, seed: int = 1, with_local: bool = True) -> st.SimStore:
    return st.SimStore(clock, rng=random.Random(seed), grace_period=100.0, with_local=with_local)


def populated(clock: Clock) -> tuple[st.SimStore, dict[str, st.Cluster]]:
    """Three clusters: one active once (params, agent image, a rotated token, an extra CRT), one
    imported but never active, one only registered."""
    store = make_store(clock)
    clock.advance(1000)
    a = store.create_cluster("d-00000", description="first", labels={"env": "x"}, annotations={"a": "1"})
    b = store.create_cluster("d-00001")
    c = store.create_cluster("d-00002")
    store.record_params(a, st.ClusterParams("10.43.0.1:443", "sa-token-a", "Y2E="))
    store.tunnel_opened(a, st.MAIN)
    store.tunnel_opened(a, st.STEVE)
    assert a.state == st.ACTIVE
    store.record_agent_image(a, "rancher/rancher-agent:v2.14.0")
    clock.advance(10)
    store.rotate_token(a.id)
    store.create_token(a.id)
    store.record_params(b, st.ClusterParams("10.43.0.1:443", "sa-token-b", "Y2E="))
    return store, {"a": a, "b": b, "c": c}


def encoded(store: st.SimStore, clock: Clock) -> bytes:
    return persist.encode(
        store, api_token="token-abcde:secret", creator_id="user-xyz12", saved=clock.seconds()
    )


def reload(data: bytes, clock: Clock, **kwargs) -> st.SimStore:
    snapshot = persist.decode(json.loads(data))
    fresh = make_store(clock, seed=2, **kwargs)
    fresh.restore(snapshot.clusters, snapshot.tokens, params_changes_total=snapshot.params_changes_total)
    return fresh


def test_round_trip_keeps_clusters_tokens_and_rotation_state():
    clock = Clock()
    store, made = populated(clock)
    a = made["a"]
    [default, extra] = store.tokens(a.id)
    previous = default.previous_token
    data = encoded(store, clock)
    snapshot = persist.decode(json.loads(data))
    assert (snapshot.api_token, snapshot.creator_id) == ("token-abcde:secret", "user-xyz12")
    assert snapshot.saved == 1010

    clock.advance(5)  # the restart took 5 s
    fresh = reload(data, clock)
    assert [c.id for c in fresh.clusters()] == [c.id for c in store.clusters()]
    ra = fresh.get_cluster(a.id)
    for attr in (
        "name", "uuid", "created", "description", "labels", "annotations", "driver", "params",
        "ever_active", "agent_image",
    ):  # fmt: skip
        assert getattr(ra, attr) == getattr(a, attr), attr
    assert ra is not a and ra.params == st.ClusterParams("10.43.0.1:443", "sa-token-a", "Y2E=")
    # Runtime state is not kept: nobody is connected, the once-active cluster shows unavailable.
    assert ra.sessions == {st.MAIN: 0, st.STEVE: 0}
    assert ra.state == st.UNAVAILABLE and ra.conditions["Ready"].reason == "Disconnected"
    rb, rc = fresh.get_cluster(made["b"].id), fresh.get_cluster(made["c"].id)
    assert (rb.state, rb.driver) == (st.PENDING, "imported")
    assert (rc.state, rc.driver, rc.params) == (st.PENDING, "", None)
    assert fresh.counts() == {st.PENDING: 2, st.ACTIVE: 0, st.UNAVAILABLE: 1}
    # Tokens: current, previous (in grace), the extra CRT; ids, values and times as they were.
    assert [(t.id, t.token, t.uuid, t.created, t.issued) for t in fresh.tokens(a.id)] == [
        (t.id, t.token, t.uuid, t.created, t.issued) for t in (default, extra)
    ]
    assert fresh.lookup_token(default.token).id == default.id
    assert fresh.lookup_token(previous).id == default.id
    assert fresh.cluster_for_token(extra.token) is ra
    assert fresh.get_token(f"{a.id}:default-token").previous_expires == default.previous_expires
    # The indexes are rebuilt: names are taken, ids resolve; nothing to save until something changes.
    with pytest.raises(st.NotUnique):
        fresh.create_cluster("D-00000")
    assert fresh.find_cluster("d-00001") is rb
    assert fresh.params_changes_total == store.params_changes_total
    # The grace period still ends when it did before the restart.
    clock.advance(100)
    assert fresh.lookup_token(previous) is None
    assert fresh.lookup_token(default.token) is not None
    # Reconnecting with the same params is no params change; the tunnels make it active again.
    assert fresh.record_params(ra, st.ClusterParams("10.43.0.1:443", "sa-token-a", "Y2E=")) is False
    fresh.tunnel_opened(ra, st.MAIN)
    fresh.tunnel_opened(ra, st.STEVE)
    assert ra.state == st.ACTIVE and ra.params_changes == 0


def test_encoder_reuses_unchanged_clusters_and_matches_a_full_encode():
    clock = Clock()
    store, made = populated(clock)
    encoder = persist.Encoder()

    def check(fresh: int) -> None:
        data = encoder.encode(store, api_token="t", creator_id="u", saved=clock.seconds())
        full = persist.snapshot(store, api_token="t", creator_id="u", saved=clock.seconds())
        assert data == json.dumps(full, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        assert encoder.encoded_last == fresh

    check(4)  # local + 3
    check(0)
    store.rotate_token(made["b"].id)
    store.record_params(made["c"], st.ClusterParams("10.43.0.1:443", "t", "c"))
    check(2)
    store.tunnel_opened(made["b"], st.MAIN)  # runtime only
    check(0)
    store.delete_cluster(made["a"].id)
    store.create_cluster("d-00009")
    check(1)


def test_revision_moves_only_with_durable_changes():
    clock = Clock()
    store = make_store(clock, with_local=False)
    seen = [store.revision]

    def moved() -> bool:
        seen.append(store.revision)
        return seen[-1] != seen[-2]

    cluster = store.create_cluster("d-00000")
    assert moved()
    store.tunnel_opened(cluster, st.MAIN)  # runtime only
    store.set_condition(cluster, "Waiting", "True")
    assert not moved()
    store.record_params(cluster, st.ClusterParams("a:1", "t", "c"))
    assert moved()
    store.tunnel_opened(cluster, st.STEVE)  # first Active: ever_active is kept
    assert moved()
    store.tunnel_closed(cluster, st.STEVE)
    store.tunnel_opened(cluster, st.STEVE)
    assert not moved()
    store.rotate_token(cluster.id)
    assert moved()
    store.record_agent_image(cluster, "img")
    assert moved()
    store.record_agent_image(cluster, "img")
    assert not moved()
    store.delete_cluster(cluster.id)
    assert moved()


def test_local_cluster_is_kept_only_where_the_store_has_one():
    clock = Clock()
    store, _ = populated(clock)
    local = store.get_cluster("local")
    data = encoded(store, clock)
    fresh = reload(data, clock)
    rlocal = fresh.get_cluster("local")
    assert (rlocal.uuid, rlocal.state, rlocal.internal) == (local.uuid, st.ACTIVE, True)
    assert fresh.tokens("local")[0].token == store.tokens("local")[0].token
    without = reload(data, clock, with_local=False)
    assert [c.id for c in without.clusters(internal=True)] == [c.id for c in store.clusters()]
    assert without.tokens("local") == []
    # A document saved without it gets a fresh local cluster in a store that has one.
    plain = make_store(clock, with_local=False)
    plain.create_cluster("d-00009")
    again = reload(encoded(plain, clock), clock)
    assert {c.id for c in again.clusters(internal=True)} >= {"local"}


def tokens(document: dict) -> list:
    """The token list of the first imported cluster (index 0 is Rancher's `local`)."""
    return document["clusters"][1]["tokens"]


def document(clock: Clock) -> dict:
    store, _ = populated(clock)
    return json.loads(encoded(store, clock))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(kind="other"), "kind 'other': expected 'ranchersim-state'"),
        (lambda d: d.update(version=2), "unknown version 2: this ranchersim reads version 1"),
        (lambda d: d.pop("clusters"), "document: missing 'clusters'"),
        (lambda d: d["clusters"][1].update(tokens={}), "'tokens' has the wrong type (dict)"),
        (lambda d: d["clusters"][1].update(id="../x"), "clusters[1]: id '../x' is not a cluster id"),
        (lambda d: d["clusters"][1].update(created="yesterday"), "'created' has the wrong type (str)"),
        (lambda d: d["clusters"][1].update(labels={"a": 1}), "'labels' must map strings to strings"),
        (lambda d: d["clusters"][1].update(everActive=1), "'everActive' has the wrong type (int)"),
        (lambda d: d["clusters"][2].update(name=d["clusters"][1]["name"].upper()), "used twice"),
        (lambda d: d["clusters"][1]["params"].pop("caCert"), "params: missing 'caCert'"),
        (lambda d: d["clusters"][1]["tokens"][0].pop("token"), ":default-token: missing 'token'"),
        (lambda d: d["clusters"][2]["tokens"][0].update(name=""), "tokens[0]: empty name"),
        (lambda d: d["clusters"][2]["tokens"][0].update(token=tokens(d)[1]["token"]), "another token's"),
        (lambda d: tokens(d).append(dict(tokens(d)[0], token="x" * 54)), "default-token: listed twice"),
        (lambda d: tokens(d).append(7), "tokens[2]: expected an object"),
    ],
)
def test_bad_documents_are_refused_with_the_problem(change, problem):
    clock = Clock()
    value = document(clock)
    change(value)
    with pytest.raises(persist.PersistError) as caught:
        persist.decode(value)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"kind": "ranchersim-state", "version": 1, "clus', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, found array"),
        (b'{"kind": "ranchersim-state", "version": 99, "clusters": [], "tokens": []}', "unknown version 99"),
    ],
)
def test_a_bad_state_file_is_moved_aside_and_named(tmp_path, content, problem):
    state = StateDir(tmp_path)
    path = tmp_path / persist.STATE_FILE
    path.write_bytes(content)
    with pytest.raises(CorruptStateFile) as caught:
        persist.load(state)
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert not path.exists()
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(persist.STATE_FILE + ".corrupt-")]
    assert aside.read_bytes() == content
    assert persist.load(state) is None  # nothing there any more: the next start is a first start


def saver_for(clock: Clock, store: st.SimStore, state: StateDir, **kwargs) -> StateSaver:
    return StateSaver(
        clock,
        state,
        persist.STATE_FILE,
        lambda: encoded(store, clock),
        lambda: store.revision,
        interval=10.0,
        threaded=False,
        **kwargs,
    )


def test_saver_writes_private_file_only_after_changes(tmp_path):
    clock = Clock()
    store, made = populated(clock)
    state = StateDir(tmp_path / "state")
    saver = saver_for(clock, store, state)
    path = tmp_path / "state" / persist.STATE_FILE
    saver.start()
    assert not path.exists()
    clock.advance(10)  # nothing on disk yet: the first tick writes
    assert saver.saves == 1 and stat.S_IMODE(path.stat().st_mode) == 0o600  # tokens inside
    assert persist.load(state).clusters[1].id == made["a"].id
    clock.advance(10)
    clock.advance(10)
    assert saver.saves == 1  # unchanged: no write
    store.tunnel_closed(made["a"], st.MAIN)  # runtime only
    clock.advance(10)
    assert saver.saves == 1
    store.create_cluster("d-00003")
    clock.advance(10)
    assert saver.saves == 2 and persist.load(state).clusters[-1].name == "d-00003"
    store.rotate_token(made["b"].id)
    assert saver.save_now() is True and saver.saves == 3  # what a clean stop does
    assert saver.save_now() is True and saver.saves == 3
    saver._loop.stop()


def test_a_failing_write_is_logged_with_its_cause_retried_and_never_raises(tmp_path, logs):
    clock = Clock()
    store, made = populated(clock)
    state = StateDir(tmp_path / "state")
    target = tmp_path / "state" / persist.STATE_FILE
    target.mkdir()  # the file's place is taken by a directory: rename fails
    saver = saver_for(clock, store, state)
    saver.start()
    for _ in range(3):
        clock.advance(10)
    assert (saver.saves, saver.failures) == (0, 3)
    errors = [line for line in logs if "not written" in line]
    assert len(errors) == 1, logs  # once per distinct cause, not every tick
    assert str(target) in errors[0] and "Is a directory" in errors[0] and "keeps running" in errors[0]
    token = store.tokens(made["a"].id)[0].token
    assert not any(token in line or "sa-token-a" in line for line in logs)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]  # no temporaries left
    os.rmdir(target)
    clock.advance(10)
    assert saver.saves == 1 and any("saved to" in line and "again" in line for line in logs)
    assert persist.load(state).tokens[1].token == store.tokens()[1].token
    saver._loop.stop()


def test_a_state_dir_that_is_a_file_is_refused_at_start(tmp_path, reactor):
    from scaleagent.sim.service import RancherSim
    from scaleagent.state import StateError

    path = tmp_path / "not-a-dir"
    path.write_text("x")
    with pytest.raises(StateError) as caught:
        RancherSim(reactor, state_dir=path)
    assert str(path) in str(caught.value)


def test_stand_in_with_a_corrupt_state_file_starts_empty_and_logs_it(tmp_path, reactor, logs):
    from scaleagent.sim.service import RancherSim

    (tmp_path / persist.STATE_FILE).write_text('{"kind": "ranchersim-state", "version": 1, "clusters": [{')
    sim = RancherSim(reactor, state_dir=tmp_path, rng=random.Random(3))
    assert sim.store.clusters() == [] and sim.store.get_cluster("local").internal
    assert sim.saver is not None and sim.saver.dirty  # the empty state is written at the first tick
    lines = [line for line in logs if persist.STATE_FILE in line]
    assert any("corrupted or truncated" in line and "moved aside" in line for line in lines), logs
    assert any("starting with no clusters" in line for line in logs)
    assert any(p.name.startswith(persist.STATE_FILE + ".corrupt-") for p in tmp_path.iterdir())


def test_a_cluster_saved_before_its_default_token_gets_one_at_load(tmp_path, reactor):
    from scaleagent.sim.service import RancherSim

    clock = Clock()
    store = make_store(clock, with_local=False)
    store.default_token = False  # as with --token-delay: the cluster exists, its token not yet
    cluster = store.create_cluster("d-00000")
    StateDir(tmp_path).write_bytes(persist.STATE_FILE, encoded(store, clock), private=True)
    sim = RancherSim(reactor, state_dir=tmp_path, with_local=False)
    assert [t.name for t in sim.store.tokens(cluster.id)] == ["default-token"]
    assert sim.saver.dirty  # the new token is saved at the next tick
    assert sim.api_token == "token-abcde:secret"  # the saved API token, none given


def test_tap_state_options():
    from twisted.python.usage import UsageError

    from scaleagent.sim.tap import Options

    options = Options()
    options.parseOptions(["--state-dir", "/var/lib/ranchersim", "--save-interval", "2.5"])
    assert (options["state-dir"], options["save-interval"]) == ("/var/lib/ranchersim", 2.5)
    default = Options()
    default.parseOptions([])
    assert (default["state-dir"], default["save-interval"]) == (None, 10.0)
    for bad, message in (
        (["--save-interval", "soon"], "--save-interval 'soon': expected seconds"),
        (["--save-interval", "0"], "--save-interval: expected seconds > 0"),
        (["--state-dir", " "], "--state-dir: expected a directory"),
    ):
        with pytest.raises(UsageError) as caught:
            Options().parseOptions(bad)
        assert message in str(caught.value)
