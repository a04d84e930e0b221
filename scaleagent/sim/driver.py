"""The stand-in's Rancher-like traffic: what Rancher sends through each connected cluster's tunnels.

Per cluster, in Rancher's order (rancher-protocol.md §5): `GET` namespace `kube-system`; discovery;
the profile's informers; `/version`; the nodes (role labels); the impersonation account with protobuf
bodies and the wait for its token; the agent deployment check (GET the `cattle-cluster-agent`
Deployment, then kubectl apply's GET and strategic-merge PATCH). Periodically: the health check every
15 s and, over the steve tunnel, `GET http://not-used/ping` every 15 s. What it sees decides Active
(`scaleagent.sim.active`), plugged into the stand-in's store as its readiness rule.

Cheap per cluster: one `Scheduler` (one reactor timer) for every periodic check, with each cluster's
checks at a random phase; at most `setup_concurrency` clusters in the one-time setup at once (Rancher's
`cluster-controller-start-count`, 50); no objects are cached, informers only track resourceVersions.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any
from urllib.parse import quote, urlencode

from twisted.internet import defer

from scaleagent.apiserver import protobuf as pb
from scaleagent.redact import logger
from scaleagent.sim import cleanup as cleanup_objects
from scaleagent.sim import manifest
from scaleagent.sim.active import Observed, count_role_nodes, is_active, not_active_because
from scaleagent.sim.profiles import KUBE_SYSTEM, Informer, Profile, get_profile
from scaleagent.sim.records import Records
from scaleagent.sim.schedule import Scheduler, Task
from scaleagent.sim.store import DELETED, MAIN, PARAMS_CHANGED, STEVE, TUNNEL_DOWN, TUNNEL_UP, Cluster
from scaleagent.sim.tunnelhttp import ACCEPT, Answer, ClusterHTTP, TunnelHTTP, Watch

log = logger()

AGGREGATED = (
    b"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    b"application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
JSON = "application/json"
PROTOBUF = pb.CONTENT_TYPE
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
IMPERSONATION_NS = "cattle-impersonation-system"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
SETUP_RETRY = 5.0  # Rancher retries the kube-system check every 5 s
TOKEN_WAIT_STEPS = 50  # EnsureSecretForServiceAccount: 50 steps, capped at 100 ms
CLEANUP_TRIES = 3
AGENT_DEPLOYMENTS = "/apis/apps/v1/namespaces/cattle-system/deployments"
AGENT_DEPLOYMENT = AGENT_DEPLOYMENTS + "/cattle-cluster-agent"
CLEANUP_DELAY = 3.0


class StepFailed(Exception):
    """A setup step got an answer Rancher would retry on."""


def sleep(scheduler: Scheduler, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    scheduler.after(seconds, lambda: None if d.called else d.callback(None))
    return d


class InformerRun:
    """One informer of one cluster: list-then-watch (2.13) or watch-list (2.14); tracks the RV only."""

    def __init__(self, traffic: ClusterTraffic, spec: Informer, http: ClusterHTTP) -> None:
        self.traffic = traffic
        self.spec = spec
        self.http = http
        self.rv = ""
        self.synced = False
        self.stopped = False
        self.expired = False
        self.watch: Watch | None = None
        self.kind_list = f"list {spec.name}"
        self.kind_watch = f"watch {spec.name}"

    def start(self) -> None:
        d = defer.ensureDeferred(self._loop())
        d.addErrback(
            lambda f: log.failure("ranchersim driver: informer {name} failed", f, name=self.spec.name)
        )

    def stop(self) -> None:
        self.stopped = True
        if self.watch is not None:
            self.watch.cancel()

    def _query(self, **params: str) -> str:
        if self.spec.field_selector:
            params["fieldSelector"] = self.spec.field_selector
        return self.spec.path + "?" + urlencode(params)

    async def _loop(self) -> None:
        driver = self.traffic.driver
        backoff = 0.8
        while not self.stopped:
            watch_list = driver.profile.watch_list
            if not self.rv and not watch_list:
                if not await self._list():
                    await sleep(driver.scheduler, driver.jitter(backoff))
                    backoff = min(backoff * 2, 30.0)
                    continue
            outcome = await self._stream()
            if outcome == "expired":
                self.rv = ""
                await sleep(driver.scheduler, driver.jitter(0.5))
            elif outcome != "closed":
                await sleep(driver.scheduler, driver.jitter(backoff))
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 0.8

    async def _list(self) -> bool:
        query = self._query(limit="500", resourceVersion="0")
        while True:
            answer = await self.http.request(self.kind_list, "GET", query)
            if self.stopped or answer.status != 200:
                return False
            body = answer.json() or {}
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if token:
                query = self._query(limit="500", **{"continue": token})
                continue
            self.rv = str(meta.get("resourceVersion") or "")
            self._synced()
            return bool(self.rv)

    def _synced(self) -> None:
        if not self.synced:
            self.synced = True
            self.traffic.informer_synced()

    async def _stream(self) -> str:
        driver = self.traffic.driver
        low, high = driver.profile.watch_timeout
        timeout = int(driver.rng.uniform(low, high))
        if not self.rv:  # watch-list: initial events, a bookmark marks the end of them
            query = self._query(
                allowWatchBookmarks="true",
                resourceVersionMatch="NotOlderThan",
                sendInitialEvents="true",
                timeoutSeconds=str(timeout),
                watch="true",
            )
        else:
            query = self._query(
                allowWatchBookmarks="true", resourceVersion=self.rv, timeoutSeconds=str(timeout), watch="true"
            )
        self.expired = False
        opened = await self.http.watch(self.kind_watch, query, self._event, timeout=timeout)
        if isinstance(opened, Answer):
            return "error"
        self.watch = opened
        if self.stopped:
            opened.cancel()
        initial = "sendInitialEvents" in query
        try:
            result = await opened.done
        finally:
            self.watch = None
        if initial and not self.synced:
            self.rv = ""  # ended before the initial-events bookmark: a new watch-list, as client-go
        if self.expired:
            return "expired"
        return result

    def _event(self, event: dict[str, Any]) -> None:
        driver = self.traffic.driver
        driver.records.watch_events += 1
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:  # too old: relist (expected, not a failure)
                self.expired = True
            else:
                driver.records.failure(
                    driver.reactor.seconds(),
                    self.traffic.cluster.id,
                    self.kind_watch,
                    "GET",
                    self.spec.path,
                    int(obj.get("code") or 0),
                    json.dumps(obj)[:300],
                )
            if self.watch is not None:
                self.watch.cancel()
            return
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if rv:
            self.rv = str(rv)
        if kind == "BOOKMARK" and (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
            self._synced()


class ClusterTraffic:
    """Everything the driver does for one cluster, and what it observed (for the Active rule)."""

    def __init__(self, driver: TrafficDriver, cluster: Cluster) -> None:
        self.driver = driver
        self.cluster = cluster
        self.observed = Observed(informers_synced=not driver.profile.informers)
        self.http: ClusterHTTP | None = None
        self.main_up = False
        self.steve_up = False
        self.generation = 0
        self.setup_done = False
        self.setups = 0
        self.impersonator_token = ""
        self.informers: list[InformerRun] = []
        self._rvs: dict[str, str] = {}
        self._main_tasks: list[Task] = []
        self._ping: Task | None = None
        self._steve_http: ClusterHTTP | None = None
        self.stopped = False

    # -- tunnels -------------------------------------------------------------------------------------

    def sync_tunnels(self) -> None:
        main, steve = self.cluster.connected(MAIN), self.cluster.connected(STEVE)
        if main != self.main_up:
            self.main_up = main
            self._main_changed()
        if steve != self.steve_up:
            self.steve_up = steve
            self._steve_changed()

    def _main_changed(self) -> None:
        self.generation += 1
        self._stop_main()
        if not self.main_up or self.stopped:
            self.observed.healthy = None
            return
        params = self.cluster.params
        if params is None:
            return
        self.observed.provisioned = True
        # The provisioner's update() for an import: Provisioned (the store) and Pending both True.
        self.driver.set_condition(self.cluster, "Pending", "True")
        self.http = ClusterHTTP(
            self.driver.http, self.cluster.id, self.cluster.name, params.address, params.token, params.ca_cert
        )
        gen = self.generation
        self.driver.scheduler.after(
            self.driver.jitter(self.driver.start_jitter), lambda: self._start_main(gen)
        )

    def _stop_main(self) -> None:
        for task in self._main_tasks:
            task.cancel()
        self._main_tasks = []
        for informer in self.informers:
            informer.stop()
            self._rvs[informer.spec.name] = informer.rv if informer.synced else ""
        self.informers = []
        if self.http is not None:
            self.http.close()
            self.http = None

    def _steve_changed(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        if not self.steve_up or self.stopped:
            self.observed.connected = False
            return
        profile = self.driver.profile
        first = self.driver.jitter(self.driver.start_jitter)
        self._ping = self.driver.scheduler.every(profile.ping_interval, self._ping_once, first=first)

    def stop(self) -> None:
        self.stopped = True
        self.generation += 1
        self._stop_main()
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None

    # -- periodic checks -----------------------------------------------------------------------------

    def _ping_once(self) -> None:
        if self._steve_http is None:
            self._steve_http = ClusterHTTP(self.driver.http, self.cluster.id, self.cluster.name, "", "", "")
        d = defer.ensureDeferred(
            self._steve_http.request("steve ping", "GET", "/ping", steve=True, timeout=15.0)
        )
        d.addCallback(self._pinged)

    def _pinged(self, answer: Answer) -> None:
        if self.stopped or not self.steve_up:
            return
        ok = answer.status == 200 and answer.body.strip() == b"pong"
        if ok != bool(self.observed.connected):
            self.observed.connected = ok
            if ok:
                self.driver.set_condition(self.cluster, "Connected", "True")
            else:
                self.driver.set_condition(
                    self.cluster, "Connected", "False", "Disconnected", "Cluster agent is not connected"
                )
            self.driver.evaluate(self.cluster)

    def _health_once(self) -> None:
        http, gen = self.http, self.generation
        if http is None:
            return
        if self.driver.profile.health == KUBE_SYSTEM:  # Rancher <= 2.13
            kind, path, good, accept = (
                "health kube-system",
                "/api/v1/namespaces/kube-system",
                (200, 404),
                ACCEPT,
            )
        else:
            kind, path, good, accept = "health readyz", "/readyz", (200,), b"*/*"
        # A 5xx here is a health check failing (Rancher marks the cluster not Ready), not a failure
        # of the simulator: counted apart, in `health_failures`.
        d = defer.ensureDeferred(http.request(kind, "GET", path, ok=(*good, 500, 503), accept=accept))
        d.addCallback(lambda answer: self._healthy(answer.status in good, gen))

    def _healthy(self, ok: bool, gen: int) -> None:
        if gen != self.generation or self.stopped:
            return
        if not ok:
            self.driver.health_failures += 1
        else:
            self.driver.set_condition(self.cluster, "Waiting", "True")  # set with Ready by the healthsyncer
        if ok != self.observed.healthy:
            self.observed.healthy = ok
            self.driver.evaluate(self.cluster)

    def _ui_once(self) -> None:
        http = self.http
        if http is None or not self.impersonator_token:
            return
        headers = {
            "Authorization": f"Bearer {self.impersonator_token}",
            "Impersonate-User": self.driver.sim_user,
            "Impersonate-Group": "system:authenticated",
        }
        for kind, path in (("ui pods", "/api/v1/pods?limit=100"), ("ui events", "/api/v1/events?limit=100")):
            defer.ensureDeferred(http.request(kind, "GET", path, headers=headers, accept=b"application/json"))

    # -- one-time setup (Rancher's clustermanager start, impersonation, clusterdeploy) ----------------

    def _start_main(self, gen: int) -> None:
        if gen != self.generation or self.stopped:
            return
        if self.setup_done:
            self._start_periodic()
            return
        d = self.driver.setup_slots.run(lambda: defer.ensureDeferred(self._setup_until_done(gen)))
        d.addErrback(lambda f: log.failure("ranchersim driver: setup of {id} failed", f, id=self.cluster.id))

    def _start_periodic(self) -> None:
        profile = self.driver.profile
        http = self.http
        if http is None:
            return
        sched = self.driver.scheduler
        first = self.driver.jitter(self.driver.start_jitter)
        self._main_tasks.append(sched.every(profile.health_interval, self._health_once, first=first))
        if profile.ui_browsing:
            ui_first = self.driver.jitter(profile.ui_interval)
            self._main_tasks.append(sched.every(profile.ui_interval, self._ui_once, first=ui_first))
        self.informers = []
        for spec in profile.informers:
            informer = InformerRun(self, spec, http)
            informer.rv = self._rvs.get(spec.name, "")
            informer.synced = bool(informer.rv)
            self.informers.append(informer)
            informer.start()

    def informer_synced(self) -> None:
        synced = all(i.synced for i in self.informers)
        if synced != self.observed.informers_synced:
            self.observed.informers_synced = synced
            self.driver.evaluate(self.cluster)

    async def _setup_until_done(self, gen: int) -> None:
        while gen == self.generation and not self.stopped and not self.setup_done:
            self.setups += 1
            try:
                await self._setup(gen)
            except StepFailed as failure:
                log.debug("ranchersim driver: setup of {id}: {error}", id=self.cluster.id, error=str(failure))
                await sleep(self.driver.scheduler, self.driver.jitter(SETUP_RETRY))
                continue
            if gen == self.generation and not self.stopped:
                self.setup_done = True
                self.driver.setups_done += 1
                self._start_periodic()
                self.driver.evaluate(self.cluster)

    def _check(self, answer: Answer, ok: tuple[int, ...], what: str) -> Answer:
        if answer.status not in ok:
            raise StepFailed(f"{what}: {answer.status or answer.error}")
        return answer

    async def _setup(self, gen: int) -> None:
        http = self.http
        if http is None:
            raise StepFailed("no main tunnel")
        check = self._check
        # 1. the API is up: kube-system, 200 or 404
        check(
            await http.request("kube-system", "GET", "/api/v1/namespaces/kube-system", ok=(200, 404)),
            (200, 404),
            "kube-system",
        )
        # 2. discovery (RESTMapper), and the k3s probe (404 is fine)
        for path in ("/api", "/apis"):
            check(await http.request("discovery", "GET", path, accept=AGGREGATED), (200,), path)
        check(
            await http.request("discovery", "GET", "/apis/k3s.cattle.io/v1", ok=(200, 404)), (200, 404), "k3s"
        )
        # 3. version (clusterstats)
        version = check(
            await http.request("version", "GET", "/version", accept=b"application/json"), (200,), "v"
        )
        self.observed.version = str((version.json() or {}).get("gitVersion") or "")
        # 4. nodes (nodesyncer → management nodes with roles)
        nodes = check(await http.request("nodes", "GET", "/api/v1/nodes?limit=500"), (200,), "nodes")
        self.observed.role_nodes = count_role_nodes((nodes.json() or {}).get("items") or [])
        if self.observed.role_nodes and self.observed.version:
            # "waiting for full cluster configuration" ends once a version and a node exist.
            self.driver.set_condition(self.cluster, "Updated", "True")
        if gen != self.generation:
            raise StepFailed("tunnel changed")
        image = self.driver.agent_image
        if self.cluster.agent_image == image:
            # Deployed before a restart of the stand-in (with --state-dir): Rancher keeps AgentDeployed
            # and the applied image in the cluster's status, reads the downstream agent image once
            # (clusterdeploy's image cache is in memory) and applies nothing while the image is the same.
            # The impersonation account is set up again only when the k8s proxy is used (UI browsing).
            if self.driver.profile.ui_browsing:
                self.impersonator_token = await self._impersonation(http)
            self._check(
                await http.request("agent check", "GET", AGENT_DEPLOYMENT, ok=(200, 404)),
                (200, 404),
                "agent deployment",
            )
        else:
            # 5. impersonation account for the k8s proxy (typed client: protobuf bodies)
            self.impersonator_token = await self._impersonation(http)
            # 6. agent deployment check and kubectl apply
            await self._deploy_agent(http)
            self.driver.sim.store.record_agent_image(self.cluster, image)
        self.observed.agent_deployed = True
        self.driver.set_condition(self.cluster, "AgentDeployed", "True")

    async def _create(
        self,
        http: ClusterHTTP,
        kind: str,
        path: str,
        obj: dict[str, Any],
        *,
        protobuf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        body = pb.encode(obj) if protobuf else json.dumps(obj).encode()
        answer = await http.request(
            kind,
            "POST",
            path,
            body=body,
            content_type=PROTOBUF if protobuf else JSON,
            ok=(201, 409),
            headers=headers,
        )
        return self._check(answer, (201, 409), f"create {path}")

    async def _impersonation(self, http: ClusterHTTP) -> str:
        user = self.driver.sim_user
        name = f"cattle-impersonation-{user}"
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        ns = f"/api/v1/namespaces/{IMPERSONATION_NS}"
        await self._create(
            http,
            "impersonation",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IMPERSONATION_NS}},
        )
        await self._create(
            http,
            "impersonation",
            f"{rbac}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": [
                    {
                        "verbs": ["impersonate"],
                        "apiGroups": [""],
                        "resources": ["users"],
                        "resourceNames": [user],
                    },
                    {
                        "verbs": ["impersonate"],
                        "apiGroups": [""],
                        "resources": ["groups"],
                        "resourceNames": ["system:authenticated", "system:cattle:authenticated"],
                    },
                ],
            },
        )
        await self._create(
            http,
            "impersonation",
            f"{ns}/serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": IMPERSONATION_NS},
            },
        )
        await self._create(
            http,
            "impersonation",
            f"{rbac}/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": IMPERSONATION_NS}],
            },
        )
        # An existing token Secret is reused (EnsureSecretForServiceAccount lists by label first).
        selector = quote(f"cattle.io/service-account.name={name}")
        found = self._check(
            await http.request("impersonation", "GET", f"{ns}/secrets?labelSelector={selector}"),
            (200,),
            "secrets",
        )
        secret_name = ""
        for item in (found.json() or {}).get("items") or []:
            token = (item.get("data") or {}).get("token")
            if token:
                return base64.b64decode(token).decode()
            secret_name = secret_name or item["metadata"]["name"]
        if not secret_name:
            created = await self._create(
                http,
                "impersonation",
                f"{ns}/secrets",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/service-account-token",
                    "metadata": {
                        "generateName": f"{name}-token-",
                        "namespace": IMPERSONATION_NS,
                        "annotations": {"kubernetes.io/service-account.name": name},
                        "labels": {"cattle.io/service-account.name": name},
                    },
                },
            )
            secret_name = ((created.json() or {}).get("metadata") or {}).get("name", "")
            if not secret_name:
                raise StepFailed("token Secret: no name in the answer")
        # Wait for the token controller to fill data.token (backoff capped at 100 ms, 50 steps).
        delay = 0.01
        for _ in range(TOKEN_WAIT_STEPS):
            answer = self._check(
                await http.request("impersonation token", "GET", f"{ns}/secrets/{secret_name}"),
                (200,),
                "token secret",
            )
            token = ((answer.json() or {}).get("data") or {}).get("token")
            if token:
                return base64.b64decode(token).decode()
            await sleep(self.driver.scheduler, delay)
            delay = min(delay * 2, 0.1)
        raise StepFailed("unable to create impersonator account: the token Secret got no data.token")

    def _desired_deployment(self) -> dict[str, Any]:
        sim = self.driver.sim
        tokens = sim.store.tokens(self.cluster.id)
        objects = manifest.import_objects(
            server_url=sim.server_url,
            token=tokens[0].token if tokens else "",
            cacerts=sim.cacerts,
            server_version=sim.server_version,
        )
        return next(o for o in objects if o["kind"] == "Deployment")

    async def _deploy_agent(self, http: ClusterHTTP) -> None:
        path = AGENT_DEPLOYMENTS
        one = AGENT_DEPLOYMENT
        # clusterdeploy: the current agent image (404 is fine)
        self._check(
            await http.request("agent check", "GET", one, ok=(200, 404)), (200, 404), "agent deployment"
        )
        # kubectl apply through the k8s proxy: impersonated, GET then PATCH (or POST when missing)
        headers = {
            "Authorization": f"Bearer {self.impersonator_token}",
            "Impersonate-User": self.driver.sim_user,
            "Impersonate-Group": "system:authenticated",
        }
        desired = self._desired_deployment()
        applied = json.dumps(desired, sort_keys=True, separators=(",", ":"))
        live = self._check(
            await http.request(
                "kubectl apply", "GET", one, ok=(200, 404), headers=headers, accept=b"application/json"
            ),
            (200, 404),
            "apply get",
        )
        if live.status == 404:
            obj = json.loads(applied)
            obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied + "\n"
            await self._create(http, "kubectl apply", path, obj, protobuf=False, headers=headers)
            return
        patch: dict[str, Any] = {"metadata": {"annotations": {LAST_APPLIED: applied + "\n"}}}
        want = desired["spec"]["template"]["spec"]["containers"][0]
        current = (((live.json() or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        have = next((c for c in current.get("containers") or [] if c.get("name") == want["name"]), {})
        if have.get("image") != want["image"]:
            patch["spec"] = {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": want["name"]}],
                        "containers": [{"name": want["name"], "image": want["image"]}],
                    }
                }
            }
        self._check(
            await http.request(
                "kubectl apply",
                "PATCH",
                one,
                body=json.dumps(patch).encode(),
                content_type=STRATEGIC,
                headers=headers,
                accept=b"application/json",
            ),
            (200,),
            "apply patch",
        )

    # -- cleanup on delete ---------------------------------------------------------------------------

    async def send_cleanup(self) -> bool:
        """Rancher's cleanup objects for a removed import; True when all were accepted."""
        http = self.http
        if http is None:
            return False
        image = f"rancher/rancher-agent:{self.driver.sim.server_version}"
        try:
            for path, obj in cleanup_objects.objects(image):
                await self._create(http, "cleanup", path, obj, protobuf=False)
            job = (
                self._check(
                    await http.request(
                        "cleanup", "GET", cleanup_objects.JOB_PATH, accept=b"application/json"
                    ),
                    (200,),
                    "cleanup job",
                ).json()
                or {}
            )
            owner = cleanup_objects.owner_reference(job)
            for path in cleanup_objects.OWNED_PATHS:
                body = json.dumps({"metadata": {"ownerReferences": [owner]}}).encode()
                self._check(
                    await http.request("cleanup", "PATCH", path, body=body, content_type=MERGE),
                    (200,),
                    "cleanup owner",
                )
        except StepFailed as failure:
            log.info("ranchersim driver: cleanup of {id}: {error}", id=self.cluster.id, error=str(failure))
            return False
        return True


class TrafficDriver:
    """Rancher's traffic for every cluster of one stand-in, and Rancher's Active rule."""

    def __init__(
        self,
        sim: Any,
        profile: Profile | str = "rancher-2.14",
        *,
        rng: random.Random | None = None,
        setup_concurrency: int = 50,
        start_jitter: float = 1.0,
        cleanup_delay: float = CLEANUP_DELAY,
    ) -> None:
        self.sim = sim
        self.reactor = sim.reactor
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.rng = rng if rng is not None else random.Random()
        self.records = Records()
        self.scheduler = Scheduler(self.reactor)
        self.http = TunnelHTTP(
            self.reactor,
            sim.tunnels.server,
            self.records,
            server_version=sim.server_version,
            scheduler=self.scheduler,
        )
        self.setup_slots = defer.DeferredSemaphore(max(1, setup_concurrency))
        self.start_jitter = start_jitter
        self.cleanup_delay = cleanup_delay
        self.clusters: dict[str, ClusterTraffic] = {}
        self.setups_done = 0
        self.health_failures = 0
        self.cleanups = {"sent": 0, "failed": 0}
        self.sim_user = getattr(sim, "creator_id", "user-admin")
        # The image clusterdeploy wants (as the import manifest's Deployment names it).
        self.agent_image = f"rancher/rancher-agent:{sim.server_version}"
        self._attached = False

    # -- wiring to the stand-in ----------------------------------------------------------------------

    def attach(self) -> TrafficDriver:
        """Become the stand-in's readiness rule, follow its tunnels, clean up deleted clusters."""
        if not self._attached:
            self._attached = True
            self.sim.store.readiness = self.readiness
            self.sim.store.add_listener(self._event)
            self.sim.on_delete = self.cleanup
            for cluster in self.sim.store.clusters():
                self._event(TUNNEL_UP, cluster)
        return self

    def stop(self) -> None:
        if self._attached:
            self._attached = False
            self.sim.store.remove_listener(self._event)
            if self.sim.on_delete == self.cleanup:
                self.sim.on_delete = None
        for traffic in self.clusters.values():
            traffic.stop()
        self.clusters.clear()
        self.scheduler.stop()

    def jitter(self, upto: float) -> float:
        return self.rng.uniform(0, upto) if upto > 0 else 0.0

    def _event(self, event: str, cluster: Cluster) -> None:
        if event in (TUNNEL_UP, TUNNEL_DOWN, PARAMS_CHANGED):
            traffic = self.clusters.get(cluster.id)
            if traffic is None:
                if cluster.removed or cluster.internal:
                    return
                traffic = self.clusters[cluster.id] = ClusterTraffic(self, cluster)
            if event == PARAMS_CHANGED and traffic.main_up:
                traffic.main_up = False  # new params: restart as Rancher restarts the controllers
                traffic._main_changed()
            traffic.sync_tunnels()
        elif event == DELETED and cluster.id in self.clusters:
            if self.sim.on_delete == self.cleanup:
                # `cleanup` runs (RancherSim.delete_cluster); a deletion that bypassed it must not
                # leave this cluster's checks running.
                self.scheduler.after(
                    CLEANUP_TRIES * (self.cleanup_delay + 60.0), lambda: self._forget(cluster)
                )
            else:
                self._forget(cluster)

    def _forget(self, cluster: Cluster) -> None:
        traffic = self.clusters.pop(cluster.id, None)
        if traffic is not None:
            traffic.stop()

    def readiness(self, cluster: Cluster) -> bool:
        traffic = self.clusters.get(cluster.id)
        return traffic is not None and is_active(traffic.observed)

    def why_not_active(self, cluster_id: str) -> list[str]:
        traffic = self.clusters.get(cluster_id)
        return not_active_because(traffic.observed) if traffic else ["no traffic yet (no tunnel seen)"]

    def set_condition(
        self, cluster: Cluster, type_: str, status: str, reason: str = "", message: str = ""
    ) -> None:
        if not cluster.removed:
            self.sim.store.set_condition(cluster, type_, status, reason, message)

    def evaluate(self, cluster: Cluster) -> None:
        if not cluster.removed:
            self.sim.store.evaluate(cluster)

    async def cleanup(self, cluster: Cluster) -> None:
        """`on_delete`: Rancher's cleanup objects through the still-open tunnel, 3 tries, then stop."""
        traffic = self.clusters.pop(cluster.id, None)
        if traffic is None:
            return
        try:
            for attempt in range(CLEANUP_TRIES):
                if traffic.http is not None and await traffic.send_cleanup():
                    self.cleanups["sent"] += 1
                    return
                if attempt < CLEANUP_TRIES - 1:
                    await sleep(self.scheduler, self.cleanup_delay)
            self.cleanups["failed"] += 1
            log.info(
                "ranchersim driver: cleanup objects for {name} ({id}) not delivered after {n} tries",
                name=cluster.name,
                id=cluster.id,
                n=CLEANUP_TRIES,
            )
        finally:
            traffic.stop()

    # -- figures -------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        informers = sum(len(t.informers) for t in self.clusters.values())
        watching = sum(1 for t in self.clusters.values() for i in t.informers if i.watch is not None)
        return {
            "profile": self.profile.name,
            "clusters": len(self.clusters),
            "setups_done": self.setups_done,
            "health_failures": self.health_failures,
            "informers": informers,
            "watches_open": watching,
            "cleanups": dict(self.cleanups),
            **self.records.summary(),
        }

    def log_summary(self) -> None:
        s = self.summary()
        log.info(
            "ranchersim driver ({profile}): {requests} requests ({failures} failures, {transport_errors} "
            "transport errors), p50 {p50_ms} ms, p99 {p99_ms} ms; {setups_done} setups done, {watches_open} "
            "watches open",
            **s,
        )


__all__ = ["ClusterTraffic", "InformerRun", "TrafficDriver"]
