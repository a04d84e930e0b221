"""Pure parts of the traffic driver: records, the scheduler, the Active rule, profiles, cleanup objects."""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from scaleagent.apiserver import protobuf as pb
from scaleagent.sim import cleanup
from scaleagent.sim.active import (
    Observed,
    count_role_nodes,
    has_role,
    is_active,
    not_active_because,
    plain_version,
)
from scaleagent.sim.profiles import IDLE, NAMES, PROFILES, RANCHER_213, RANCHER_214, get_profile
from scaleagent.sim.records import TRANSPORT, Histogram, Records
from scaleagent.sim.schedule import Scheduler

# -- records -----------------------------------------------------------------------------------------


def test_histogram_quantiles_are_within_a_few_percent():
    rng = random.Random(7)
    values = [rng.lognormvariate(-5, 1.2) for _ in range(20000)]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    values.sort()
    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * (len(values) - 1))]
        assert abs(histogram.quantile(q) - exact) / exact < 0.04, q
    assert histogram.count == 20000 and histogram.maximum == values[-1]
    assert Histogram().quantile(0.5) == 0.0


def test_records_count_statuses_latency_and_failures_in_constant_memory():
    records = Records(keep_failures=3)
    for _ in range(1000):
        records.record("health readyz", 200, 0.002)
    records.record("kube-system", 404, 0.001)
    records.record("watch nodes", TRANSPORT, 5.0)
    for i in range(5):
        records.failure(float(i), "c-abcde", "version", "GET", "/version", 500, "boom")
    summary = records.summary()
    assert summary["requests"] == 1002 and summary["answered"] == 1001
    assert summary["transport_errors"] == 1 and summary["failures"] == 5
    assert summary["statuses"] == {"0": 1, "200": 1000, "404": 1}
    assert 1.9 <= summary["p50_ms"] <= 2.1
    assert summary["kinds"]["health readyz"]["count"] == 1000
    assert "watch nodes" not in summary["kinds"]  # no latency for an answer that never came
    assert len(records.recent_failures) == 3 and records.recent_failures[-1].at == 4.0


def test_failure_log_lines_are_bounded_per_kind():
    from twisted.logger import LogLevel, globalLogPublisher

    seen = []

    def observe(event):
        if event.get("log_level") == LogLevel.warn and "ranchersim driver" in event.get("log_format", ""):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        records = Records()
        for _ in range(100):
            records.failure(0.0, "c-x", "version", "GET", "/version", 500, "x")
    finally:
        globalLogPublisher.removeObserver(observe)
    assert records.failures == 100
    assert 20 <= len(seen) <= 22


# -- scheduler ---------------------------------------------------------------------------------------


def test_scheduler_uses_one_timer_and_keeps_phases():
    clock = Clock()
    scheduler = Scheduler(clock)
    fired: list[tuple[str, float]] = []
    for i in range(100):
        scheduler.every(15.0, lambda i=i: fired.append((f"t{i}", clock.seconds())), first=i * 0.15)
    assert len(clock.getDelayedCalls()) == 1
    for _ in range(400):
        clock.advance(0.1)
    # Each task fired on its own grid (phase kept), twice or three times in 40 s, never early.
    times: dict[str, list[float]] = {}
    for name, at in fired:
        times.setdefault(name, []).append(at)
    for i in range(100):
        ts = times[f"t{i}"]
        assert len(ts) in (2, 3)
        for k, t in enumerate(ts):
            assert i * 0.15 + 15.0 * k <= t + 1e-9 <= i * 0.15 + 15.0 * k + 0.1 + 1e-9
    assert len(clock.getDelayedCalls()) == 1


def test_scheduler_cancel_one_shot_errors_and_stall():
    clock = Clock()
    scheduler = Scheduler(clock)
    calls = []
    task = scheduler.every(1.0, lambda: calls.append("periodic"))
    scheduler.after(0.5, lambda: calls.append("once"))
    scheduler.after(0.6, lambda: 1 / 0)  # logged and counted, the others go on
    clock.advance(0.55)
    clock.advance(0.1)
    assert calls == ["periodic", "once"] and scheduler.errors == 1
    clock.advance(10.0)  # a stall: the periodic task runs once, not ten times
    assert calls.count("periodic") == 2
    task.cancel()
    clock.advance(5.0)
    assert calls.count("periodic") == 2
    assert clock.getDelayedCalls() == []
    with pytest.raises(ValueError):
        scheduler.every(0, lambda: None)
    scheduler.every(1.0, lambda: None)
    scheduler.stop()
    assert clock.getDelayedCalls() == [] and len(scheduler) == 0


def test_scheduler_task_may_cancel_itself():
    clock = Clock()
    scheduler = Scheduler(clock)
    calls = []

    def once_then_stop():
        calls.append(clock.seconds())
        holder[0].cancel()

    holder = [scheduler.every(1.0, once_then_stop)]
    clock.advance(0)
    clock.advance(3)
    assert calls == [0.0]


# -- the Active rule ---------------------------------------------------------------------------------


def observed(**changes) -> Observed:
    values = dict(
        provisioned=True,
        connected=True,
        healthy=True,
        agent_deployed=True,
        role_nodes=1,
        version="v1.32.4",
        informers_synced=True,
    )
    values.update(changes)
    return Observed(**values)


def test_active_needs_every_condition():
    assert is_active(observed())
    for change, words in (
        ({"provisioned": False}, "Provisioned"),
        ({"connected": None}, "Connected"),
        ({"connected": False}, "Connected"),
        ({"healthy": False}, "Ready"),
        ({"agent_deployed": False}, "AgentDeployed"),
        ({"role_nodes": 0}, "node role cannot be determined"),
        ({"role_nodes": None}, "node role"),
        ({"version": "v1.32.4+k3s1"}, "not plain"),
        ({"version": "v1.31.2+rke2r1"}, "not plain"),
        ({"version": ""}, "version unknown"),
        ({"informers_synced": False}, "informers"),
    ):
        reasons = not_active_because(observed(**change))
        assert len(reasons) == 1 and words in reasons[0], (change, reasons)
        assert not is_active(observed(**change))


def test_version_and_node_roles():
    assert plain_version("v1.32.4") and plain_version("v1.9.11")
    for bad in ("1.32.4", "v1.32", "v1.32.4-k3s1", "v1.32.4+k3s1", "v1.30.1+rke2r1", "v1.32.4-rc.1"):
        assert not plain_version(bad), bad
    nodes = [
        {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "true"}}},
        {"metadata": {"labels": {"node-role.kubernetes.io/worker": "true"}}},
        {"metadata": {"labels": {"node-role.kubernetes.io/etcd": ""}}},  # kubeadm style
        {"metadata": {"labels": {"kubernetes.io/os": "linux"}}},
        {"metadata": {"labels": {"node-role.kubernetes.io/worker": "false"}}},
        {"metadata": {}},
    ]
    assert [has_role(n) for n in nodes] == [True, True, True, False, False, False]
    assert count_role_nodes(nodes) == 3


def test_the_default_template_nodes_have_roles():
    from scaleagent.cluster.template import ClusterTemplate, SeedBuilder

    builder = SeedBuilder(
        ClusterTemplate.load(None),
        ca_pem=b"",
        kubernetes_version="v1.32.4",
        api_host="10.43.0.1",
        api_port=443,
        created=0.0,
    )
    seed = builder.seed(0, "t-00000")
    nodes = [o for o in seed.objects() if o.get("kind") == "Node"]
    assert nodes and count_role_nodes(nodes) == len(nodes)


# -- profiles and cleanup objects --------------------------------------------------------------------


def test_profiles():
    assert NAMES == (IDLE, RANCHER_213, RANCHER_214)
    assert PROFILES[IDLE].informers == () and PROFILES[IDLE].health == "readyz"
    assert PROFILES[RANCHER_213].health == "kube-system" and not PROFILES[RANCHER_213].watch_list
    assert PROFILES[RANCHER_214].watch_list and PROFILES[RANCHER_214].health == "readyz"
    names = [i.name for i in PROFILES[RANCHER_214].informers]
    assert names == [
        "namespaces",
        "nodes",
        "secrets",
        "serviceaccounts",
        "resourcequotas",
        "limitranges",
        "clusterroles",
        "clusterrolebindings",
        "roles",
        "rolebindings",
        "apiservices",
    ]
    secrets = PROFILES[RANCHER_214].informers[2]
    assert secrets.field_selector == "metadata.namespace=cattle-system,metadata.name=stv-aggregation"
    assert get_profile(IDLE, ui_browsing=True).ui_browsing
    with pytest.raises(ValueError, match="rancher-2.14"):
        get_profile("rancher-3")


def test_cleanup_objects_are_rancher_s_and_encode():
    objects = cleanup.objects("rancher/rancher-agent:v2.14.0")
    kinds = [obj["kind"] for _, obj in objects]
    assert kinds == ["ClusterRole", "ServiceAccount", "ClusterRoleBinding", "Job"]
    job = objects[-1][1]
    assert job["metadata"]["name"].startswith("cattle-cleanup")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CLUSTER_CLEANUP", "value": "true"} in container["env"]
    for _, obj in objects:
        assert pb.decode(pb.encode(obj))["kind"] == obj["kind"]  # well-formed for a typed client too
    owner = cleanup.owner_reference({"metadata": {"name": cleanup.JOB, "uid": "u-1"}})
    assert owner == {"apiVersion": "batch/v1", "kind": "Job", "name": cleanup.JOB, "uid": "u-1"}


# -- twistd ranchersim options -----------------------------------------------------------------------


def test_ranchersim_profile_options():
    from twisted.python import usage

    from scaleagent.sim.tap import Options, build

    def built(*argv: str):
        options = Options()
        options.parseOptions(["--ca-file", "", "--token-file", "", *argv])
        return build(options, Clock())

    assert built().driver.profile.name == "rancher-2.14"
    assert built("--profile", "none").driver is None
    sim = built("--profile", "rancher-2.13", "--ui-browsing")
    assert sim.driver.profile.name == "rancher-2.13" and sim.driver.profile.ui_browsing
    assert sim.store.readiness == sim.driver.readiness and sim.on_delete == sim.driver.cleanup
    with pytest.raises(usage.UsageError, match="expected one of idle, rancher-2.13, rancher-2.14, none"):
        Options().parseOptions(["--profile", "rancher-9"])
