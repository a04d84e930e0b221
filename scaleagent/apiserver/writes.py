"""The write half of the simulated apiserver: create, update, patch, delete, subresources and CRDs.

`handle(req)` is the hook the resource tree calls for POST/PUT/PATCH/DELETE on resource paths (and GET
on the `scale` subresource).  It returns `(HTTP code, JSON body)` or raises `ApiError`.  The policy a
real apiserver applies on top of storage lives here:

* bodies are checked against the URL (apiVersion, kind, name, namespace → 400, bad names → 422);
* creating in a missing namespace is 404, in a terminating one 403 (NamespaceLifecycle admission);
* PUT/PATCH keep server-owned metadata (uid, creationTimestamp, deletionTimestamp) and the status of
  types with a `status` subresource; `…/status` changes only status; `…/scale` reads and writes
  `spec.replicas` of workloads;
* DELETE honours finalizers (deletionTimestamp first, removal when an update empties them), namespace
  deletion removes the namespace's contents, CRD deletion removes its objects and its type;
* creating or updating a CustomResourceDefinition registers its served versions in the cluster's
  `Registry` (discovery and routing follow); `dryRun=All` computes everything and stores nothing;
* non-apply writes record an `Update` entry in `managedFields`, server-side apply an `Apply` entry.

Every change goes through the store, so every change produces its watch event.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from typing import Any

from scaleagent.apiserver import controllers, status
from scaleagent.apiserver import patch as patches
from scaleagent.apiserver.kinds import ResourceType, Subresource, split_api_version
from scaleagent.apiserver.selectors import format_label_selector, parse_labels
from scaleagent.apiserver.status import ApiError
from scaleagent.apiserver.store import Store, timestamp
from scaleagent.redact import logger

log = logger()

CRD_GROUP = "apiextensions.k8s.io"
#: kinds whose DELETE answers with the deleted object instead of a Status (registry ReturnDeletedObject)
_RETURN_DELETED = frozenset(
    {("", "pods"), ("", "serviceaccounts"), ("", "persistentvolumes"), ("", "persistentvolumeclaims")}
)
#: workloads whose `scale` subresource and replica status this module keeps
_SCALABLE = frozenset(
    {
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
    }
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def handle(req: Any) -> tuple[int, dict[str, Any]]:
    """Serve one write request (see module docstring); `req` is an `ApiRequest`.

    The POST-only virtual resources (TokenRequest, token and access reviews) belong to `controllers`;
    they are handed there even when the caller routes them here, so they are never stored.
    """
    handler = controllers.handler_for(req)
    if handler is not None:
        return handler(req)
    return Writer(req).run()


def _now(req: Any) -> float:
    clock = getattr(getattr(req, "api", None), "clock", None)
    seconds = getattr(clock, "seconds", None)
    return float(seconds()) if callable(seconds) else time.time()


class Writer:
    """One write request: the checks and steps shared by every verb."""

    def __init__(self, req: Any) -> None:
        self.req = req
        self.rt: ResourceType = req.rt
        self.store: Store = req.store
        dry_run = req.param("dryRun")
        if dry_run not in ("", "All"):
            raise status.bad_request(f'dryRun: Unsupported value: "{dry_run}": supported values: "All"')
        self.dry_run: bool = dry_run == "All"
        self.now = _now(req)
        self.propagation = "Background"
        self.dependents = Dependents(self.store)

    # -- dispatch ------------------------------------------------------------------------------------

    def run(self) -> tuple[int, dict[str, Any]]:
        method, sub, name = self.req.method, self.req.subresource, self.req.name
        if self.rt.namespaced and self.req.namespace is None:
            raise status.method_not_allowed()  # the all-namespaces path serves only list and watch
        if sub is None:
            if method == "POST" and name is None:
                if self.rt.storage_key == ("", "bindings"):
                    return self.bind(None)
                if self.rt.verbs == ("create",):
                    return self.virtual()
                return self._verb("create", self.create)
            if method == "PUT" and name is not None:
                return self._verb("update", self.update)
            if method == "PATCH" and name is not None:
                return self._verb("patch", self.patch)
            if method == "DELETE":
                if name is None:
                    return self._verb("deletecollection", self.delete_collection)
                return self._verb("delete", self.delete)
            raise status.method_not_allowed()
        resource = self.rt.subresource(sub)
        if resource is None or name is None:
            raise status.path_not_found()
        if method == "GET" and "get" in resource.verbs:
            if sub == "scale":
                return 200, self._scale_of(self.store.get(self.rt, self.req.namespace, name))
            raise status.method_not_allowed()
        if method == "POST" and self.rt.storage_key == ("", "pods") and sub in ("eviction", "binding"):
            return self.evict() if sub == "eviction" else self.bind(name)
        if sub in ("status", "scale", "approval") and method in ("PUT", "PATCH"):
            verb = "update" if method == "PUT" else "patch"
            if verb not in resource.verbs:
                raise status.method_not_allowed()
            if sub in ("status", "approval"):  # a CSR's approval is its status conditions
                return self.write_status(resource)
            return self.write_scale()
        if sub == "finalize" and method == "PUT" and self.rt.storage_key == ("", "namespaces"):
            return self.finalize_namespace()
        raise status.method_not_allowed()

    def finalize_namespace(self) -> tuple[int, dict[str, Any]]:
        """`namespaces/<n>/finalize`: set spec.finalizers.  Emptying them on a terminating namespace
        removes it at once, whatever is left inside (the known way to clear a stuck namespace)."""
        name = self.req.name
        body = self._object_body(name=name)
        old = self.store.get(self.rt, None, name)
        finalizers = (body.get("spec") or {}).get("finalizers") or []
        if not isinstance(finalizers, list):
            raise status.bad_request("spec.finalizers must be a list")
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["finalizers"] = finalizers
        if not finalizers:
            new["spec"].pop("finalizers")
        sent_rv = body["metadata"].get("resourceVersion")
        if sent_rv:
            new["metadata"]["resourceVersion"] = sent_rv
        stored = self.store.replace(self.rt, new, dry_run=self.dry_run)
        meta = stored["metadata"]
        if (
            not finalizers
            and meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not self.dry_run
        ):
            self.store.delete(self.rt, None, name)
        return 200, stored

    def _verb(
        self, verb: str, action: Callable[[], tuple[int, dict[str, Any]]]
    ) -> tuple[int, dict[str, Any]]:
        if verb not in self.rt.verbs:
            raise status.method_not_allowed()
        return action()

    # -- bodies --------------------------------------------------------------------------------------

    def _body(self) -> Any:
        try:
            return self.req.decode_body()
        except ApiError:
            raise
        except Exception as exc:  # a decoder failing in an unexpected way is still the client's body
            raise status.bad_request(f"the request body could not be decoded: {exc}") from None

    def _object_body(self, *, name: str | None) -> dict[str, Any]:
        """The request body as an object of this URL's type, checked as a real apiserver checks it."""
        obj = self._body()
        if not isinstance(obj, dict):
            raise status.bad_request("the request body must be a JSON or YAML object")
        rt = self.rt
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version not in (None, "") and not isinstance(api_version, str):
            raise status.bad_request("apiVersion must be a string")
        if kind not in (None, "") and not isinstance(kind, str):
            raise status.bad_request("kind must be a string")
        if api_version:
            group, _ = split_api_version(api_version)
            if (
                group != rt.group
                or self.store.kinds.by_api_version_kind(api_version, kind or rt.kind) is None
            ):
                raise status.bad_request(
                    f"the API version in the data ({api_version}) does not match the expected API version "
                    f"({rt.api_version})"
                )
        if kind and kind != rt.kind:
            raise status.bad_request(
                f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f'no kind "{kind}" is registered for version "{api_version or rt.api_version}"'
            )
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        body_ns = meta.get("namespace")
        if rt.namespaced and body_ns and self.req.namespace is not None and body_ns != self.req.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if name is not None and meta.get("name") and meta["name"] != name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if name is not None and not meta.get("name"):
            meta["name"] = name
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    def _check_name(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name = meta.get("name") or ""
        causes = []
        if name:
            causes.extend(_name_problems(self.rt, name))
        elif meta.get("generateName"):
            prefix = str(meta["generateName"])
            if (
                not _DNS_SUBDOMAIN.match(prefix.rstrip("-") or "a")
                and self.rt.group != "rbac.authorization.k8s.io"
            ):
                causes.append(_cause("metadata.generateName", prefix, _SUBDOMAIN_HELP))
        if causes:
            raise status.invalid(self.rt.group, self.rt.kind, name, causes)

    # -- create --------------------------------------------------------------------------------------

    def create(self) -> tuple[int, dict[str, Any]]:
        obj = self._object_body(name=None)
        if obj["metadata"].get("resourceVersion"):
            raise status.bad_request("resourceVersion should not be set on objects to be created")
        self._check_name(obj)
        return 201, self._create(obj)

    def _create(self, obj: dict[str, Any]) -> dict[str, Any]:
        rt = self.rt
        self._check_namespace(obj)
        meta = obj["metadata"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        meta.pop("resourceVersion", None)
        obj = apply_defaults(self.store, rt, obj)
        obj = self._settle(obj)
        manager = self._manager()
        if manager:
            obj = patches.record_update(
                None, obj, manager, schema=self._schema(), api_version=rt.api_version, now=timestamp(self.now)
            )
        if self._is_crd():
            self._validate_crd(obj)
            obj = _crd_accepted(obj)
        created = self.store.create(rt, obj, namespace=self.req.namespace, dry_run=self.dry_run)
        if self._is_crd() and not self.dry_run:
            register_crd(self.store, created)
        return created

    def _check_namespace(self, obj: dict[str, Any]) -> None:
        """NamespaceLifecycle: 404 for a missing namespace, 403 for a terminating one."""
        if not self.rt.namespaced:
            return
        name = self.req.namespace or obj["metadata"].get("namespace")
        if not name:
            return
        ns_type = self.store.kinds.by_resource("", "v1", "namespaces")
        if ns_type is None:
            return
        ns = self.store.lookup(ns_type, None, name)
        if ns is None:
            raise status.not_found("", "namespaces", name)
        if ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            what = obj["metadata"].get("name") or obj["metadata"].get("generateName") or ""
            raise ApiError(
                403,
                "Forbidden",
                f'{self.rt.qualified} "{what}" is forbidden: unable to create new content in namespace '
                f"{name} because it is being terminated",
                group=self.rt.group,
                kind=self.rt.plural,
                name=what,
                causes=[
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {name} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    # -- update and patch ----------------------------------------------------------------------------

    def update(self) -> tuple[int, dict[str, Any]]:
        name = self.req.name
        obj = self._object_body(name=name)
        old = self.store.get(self.rt, self.req.namespace, name)
        return 200, self._update(old, obj)

    def patch(self) -> tuple[int, dict[str, Any]]:
        name = self.req.name
        kind = self.req.content_type
        old = self.store.lookup(self.rt, self.req.namespace, name)
        if kind == patches.APPLY_PATCH:
            return self._apply(old)
        if old is None:
            raise status.not_found(self.rt.group, self.rt.plural, name)
        new = self._patched(old, kind)
        _check_patched_identity(self.rt, old, new)
        code = 200
        return code, self._update(old, new, patched=True)

    def _patched(self, current: dict[str, Any], kind: str) -> dict[str, Any]:
        body = self._body()
        try:
            if kind == patches.JSON_PATCH:
                return patches.json_patch(current, body)
            if kind == patches.MERGE_PATCH:
                if not isinstance(body, dict):
                    raise patches.PatchError("a merge patch must be a JSON object", 400)
                return patches.merge_patch(current, body)
            if kind == patches.STRATEGIC_MERGE_PATCH:
                return patches.strategic_merge_patch(current, body, self._schema())
        except patches.PatchError as exc:
            raise _patch_error(exc) from None
        raise status.unsupported_media_type(list(patches.PATCH_TYPES))

    def _apply(self, old: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        name = self.req.name
        applied = self._body()
        if not isinstance(applied, dict):
            raise status.bad_request("the applied configuration must be an object")
        manager = self.req.param("fieldManager")
        if not manager:
            raise status.bad_request("PATCH with apply requires a fieldManager")
        force = self.req.param("force") == "true"
        meta = applied.get("metadata")
        if not isinstance(meta, dict):
            meta = applied["metadata"] = {}
        if meta.get("name") and meta["name"] != name:
            raise status.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        if self.rt.namespaced and meta.get("namespace") and meta["namespace"] != self.req.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        applied["apiVersion"] = applied.get("apiVersion") or self.rt.api_version
        applied["kind"] = applied.get("kind") or self.rt.kind
        if (
            applied["kind"] != self.rt.kind
            or split_api_version(str(applied["apiVersion"]))[0] != self.rt.group
        ):
            raise status.bad_request(
                f"the API version or kind in the data ({applied['apiVersion']}, {applied['kind']}) does not "
                f"match the expected ({self.rt.api_version}, {self.rt.kind})"
            )
        try:
            merged = patches.server_side_apply(
                old,
                applied,
                manager,
                schema=self._schema(),
                api_version=self.rt.api_version,
                now=timestamp(self.now),
                force=force,
            )
        except patches.ApplyConflictError as exc:
            causes = [
                {
                    "reason": "FieldManagerConflict",
                    "message": f"conflict with {c.owner}",
                    "field": c.field,
                }
                for c in exc.conflicts
            ]
            raise ApiError(
                409,
                "Conflict",
                exc.message,
                group=self.rt.group,
                kind=self.rt.plural,
                name=name,
                causes=causes,
            ) from None
        except patches.PatchError as exc:
            raise _patch_error(exc) from None
        if old is None:
            merged["metadata"].pop("resourceVersion", None)
            self._check_name(merged)
            managed = merged["metadata"].get("managedFields")
            self._check_namespace(merged)
            merged = apply_defaults(self.store, self.rt, merged)
            merged = self._settle(merged)
            if self._is_crd():
                self._validate_crd(merged)
                merged = _crd_accepted(merged)
            if managed is not None:
                merged["metadata"]["managedFields"] = managed
            created = self.store.create(self.rt, merged, namespace=self.req.namespace, dry_run=self.dry_run)
            if self._is_crd() and not self.dry_run:
                register_crd(self.store, created)
            return 201, created
        return 200, self._update(old, merged, patched=True, managed=True)

    def _update(
        self, old: dict[str, Any], new: dict[str, Any], *, patched: bool = False, managed: bool = False
    ) -> dict[str, Any]:
        """Store `new` in place of `old` with the server-owned parts restored; returns the result."""
        rt = self.rt
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        if not isinstance(meta, dict):
            raise status.bad_request("metadata must be an object")
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if patched and meta.get("resourceVersion") in (None, ""):
            meta["resourceVersion"] = old_meta.get("resourceVersion")
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or ()) - set(old_meta.get("finalizers") or ())
            if added:
                raise status.invalid(
                    rt.group,
                    rt.kind,
                    old_meta.get("name", ""),
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "message": "Forbidden: no new finalizers can be added if the object is being "
                            f"deleted, found new finalizers {sorted(added)!r}",
                            "field": "metadata.finalizers",
                        }
                    ],
                )
        if rt.subresource("status") is not None:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if self._is_crd():
            self._validate_crd(new)
            new = _crd_accepted(new)
        _keep_allocated(rt, old, new)
        if "generation" in old_meta:  # what the store will assign; status reports it as observed
            meta["generation"] = old_meta["generation"] + (new.get("spec") != old.get("spec"))
        new = self._settle(new)
        if not managed:
            new = self._record(old, new)
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._finish_deletion(old, new)
        result = self.store.replace(rt, new, namespace=self.req.namespace, dry_run=self.dry_run)
        if self._is_crd() and not self.dry_run:
            register_crd(self.store, result)
        return result

    def _record(
        self, old: dict[str, Any], new: dict[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        """Managed fields for a non-apply write; a body rewriting managedFields itself is taken as sent."""
        sent = new.get("metadata", {}).get("managedFields")
        if sent is not None and sent != old["metadata"].get("managedFields"):
            if sent == [] or sent == [{}]:
                new["metadata"].pop("managedFields", None)
            return new
        manager = self._manager()
        if not manager:
            return new
        return patches.record_update(
            old,
            new,
            manager,
            schema=self._schema(),
            api_version=self.rt.api_version,
            now=timestamp(self.now),
            subresource=subresource,
        )

    def _finish_deletion(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """The last finalizer went: the object is removed (a real apiserver deletes during the update)."""
        rt, meta = self.rt, new["metadata"]
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"].get("resourceVersion"):
            raise status.conflict(rt.group, rt.plural, meta.get("name", ""))
        if self.dry_run:
            return new
        final = self.store.replace(rt, new, namespace=self.req.namespace, check_resource_version=False)
        _remove(self.store, rt, final, now=self.now, dependents=self.dependents)
        return final

    # -- status and scale ----------------------------------------------------------------------------

    def write_status(self, resource: Subresource) -> tuple[int, dict[str, Any]]:
        name = self.req.name
        old = self.store.get(self.rt, self.req.namespace, name)
        if self.req.method == "PUT":
            body = self._object_body(name=name)
        else:
            body = self._patched(old, self.req.content_type)
            _check_patched_identity(self.rt, old, body)
        new = copy.deepcopy(old)
        if "status" in body:
            new["status"] = body["status"]
        else:
            new.pop("status", None)
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if self.req.method == "PUT" and sent_rv:
            new["metadata"]["resourceVersion"] = sent_rv
        manager = self._manager()
        if manager:
            new = patches.record_update(
                old,
                new,
                manager,
                schema=self._schema(),
                api_version=self.rt.api_version,
                now=timestamp(self.now),
                subresource="status",
            )
        return 200, self.store.replace(self.rt, new, namespace=self.req.namespace, dry_run=self.dry_run)

    def _scale_of(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.rt.storage_key not in _SCALABLE and self.rt.subresource("scale") is None:
            raise status.path_not_found()
        meta = obj["metadata"]
        spec, st = obj.get("spec") or {}, obj.get("status") or {}
        scale_meta = {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        }
        replicas = spec.get("replicas", 1 if self.rt.storage_key in _SCALABLE else 0)
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_meta,
            "spec": {"replicas": replicas},
            "status": {"replicas": st.get("replicas", 0), "selector": _selector_string(spec.get("selector"))},
        }

    def write_scale(self) -> tuple[int, dict[str, Any]]:
        name = self.req.name
        old = self.store.get(self.rt, self.req.namespace, name)
        current = self._scale_of(old)
        if self.req.method == "PUT":
            body = self._body()
            if not isinstance(body, dict):
                raise status.bad_request("the request body must be a Scale object")
        else:
            body = self._patched(current, self.req.content_type)
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise status.invalid(
                "autoscaling",
                "Scale",
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                        "field": "spec.replicas",
                    }
                ],
            )
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        if "generation" in new["metadata"] and replicas != (old.get("spec") or {}).get("replicas"):
            new["metadata"]["generation"] += 1
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv:
            if sent_rv != old["metadata"].get("resourceVersion"):
                raise status.conflict(self.rt.group, self.rt.plural, name)
        new = self._settle(new)
        new = self._record(old, new)
        stored = self.store.replace(self.rt, new, namespace=self.req.namespace, dry_run=self.dry_run)
        return 200, self._scale_of(stored)

    # -- POST-only resources -------------------------------------------------------------------------

    def virtual(self) -> tuple[int, dict[str, Any]]:
        """A create-only kind nothing here computes: answered as sent, never stored."""
        obj = self._object_body(name=None)
        obj.setdefault("status", {})
        return 201, obj

    def _success(self, code: int = 201) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}

    def evict(self) -> tuple[int, dict[str, Any]]:
        """`pods/<name>/eviction` (kubectl drain): the pod is deleted; no disruption budget applies."""
        name = self.req.name
        body = self._body()
        if not isinstance(body, dict):
            raise status.bad_request("the request body must be an Eviction object")
        sent = (body.get("metadata") or {}).get("name")
        if sent and sent != name:
            raise status.bad_request(f"name in URL does not match name in Eviction object ({sent} != {name})")
        pod = self.store.get(self.rt, self.req.namespace, name)
        options = body.get("deleteOptions") or {}
        if "All" in (options.get("dryRun") or ()):
            self.dry_run = True
        delete_object(
            self.store, self.rt, pod, now=self.now, dry_run=self.dry_run, dependents=self.dependents
        )
        return 201, self._success()

    def bind(self, name: str | None) -> tuple[int, dict[str, Any]]:
        """A Binding (`pods/<name>/binding` or `bindings`): what the scheduler does, set spec.nodeName."""
        body = self._body()
        if not isinstance(body, dict):
            raise status.bad_request("the request body must be a Binding object")
        pod_name = name or (body.get("metadata") or {}).get("name") or ""
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        node = target.get("name")
        if not node:
            raise status.invalid(
                "",
                "Binding",
                pod_name,
                [{"reason": "FieldValueRequired", "message": "Required value", "field": "target.name"}],
            )
        pods = self.store.kinds.by_resource("", "v1", "pods")
        assert pods is not None
        pod = self.store.get(pods, self.req.namespace, pod_name)
        assigned = (pod.get("spec") or {}).get("nodeName")
        if assigned:
            raise status.conflict(
                "", "pods", pod_name, f'pod {pod_name} is already assigned to node "{assigned}"'
            )
        bound = copy.deepcopy(pod)
        bound.setdefault("spec", {})["nodeName"] = node
        self.store.replace(pods, bound, check_resource_version=False, dry_run=self.dry_run)
        return 201, self._success()

    # -- delete --------------------------------------------------------------------------------------

    def _delete_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.req.body and self.req.body.strip():
            body = self._body()
            if body is not None and not isinstance(body, dict):
                raise status.bad_request("DeleteOptions must be an object")
            options = body or {}
        if "All" in (options.get("dryRun") or ()):
            self.dry_run = True
        policy = options.get("propagationPolicy") or self.req.param("propagationPolicy")
        if not policy and (
            options.get("orphanDependents") is True or self.req.param("orphanDependents") == "true"
        ):
            policy = "Orphan"
        if policy and policy not in PROPAGATION_POLICIES:
            raise ApiError(
                422,
                "Invalid",
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": '
                'supported values: "Foreground", "Background", "Orphan"',
                group="meta.k8s.io",
                kind="DeleteOptions",
                name="",
                causes=[
                    {
                        "reason": "FieldValueNotSupported",
                        "message": f'Unsupported value: "{policy}"',
                        "field": "propagationPolicy",
                    }
                ],
            )
        self.propagation = policy or "Background"
        return options

    def delete(self) -> tuple[int, dict[str, Any]]:
        options = self._delete_options()
        pre = options.get("preconditions") or {}
        name = self.req.name
        if self.rt.storage_key == ("", "namespaces") and name in IMMORTAL_NAMESPACES:
            raise status.forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                group="",
                kind="namespaces",
                name=name,
            )
        obj = self.store.get(self.rt, self.req.namespace, name)
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise status.conflict(
                self.rt.group,
                self.rt.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise status.conflict(
                self.rt.group,
                self.rt.plural,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
            )
        result, removed = self._delete_one(obj)
        if self.rt.storage_key == ("", "namespaces"):
            return 200, result
        if not removed or self.rt.storage_key in _RETURN_DELETED or self.rt.crd is not None:
            return 200, result
        return 200, status.success_status(
            name=name, group=self.rt.group, kind=self.rt.plural, uid=meta.get("uid")
        )

    def delete_collection(self) -> tuple[int, dict[str, Any]]:
        self._delete_options()
        q = self.req.param
        listed = self.store.list(
            self.rt,
            namespace=self.req.namespace if self.rt.namespaced else None,
            label_selector=q("labelSelector"),
            field_selector=q("fieldSelector"),
        )
        items = []
        for obj in listed.objects():
            meta = obj["metadata"]
            current = self.store.lookup(self.rt, meta.get("namespace"), meta["name"])
            if current is None:  # collected along with an owner deleted before it
                continue
            result, _ = self._delete_one(current)
            items.append(result)
        return 200, {
            "kind": self.rt.list_kind,
            "apiVersion": self.rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": items,
        }

    def _delete_one(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Delete or start deleting one object; (what to answer, whether it is gone)."""
        return delete_object(
            self.store,
            self.rt,
            obj,
            now=self.now,
            dry_run=self.dry_run,
            propagation=self.propagation,
            dependents=self.dependents,
        )

    # -- helpers -------------------------------------------------------------------------------------

    def _manager(self) -> str:
        manager = self.req.param("fieldManager")
        if manager:
            return manager[:128]
        agent = self.req.header("user-agent")
        return agent.split("/", 1)[0][:128] if agent else ""

    def _schema(self) -> patches.Struct:
        return patches.schema_for(self.rt.group, self.rt.kind)

    def _is_crd(self) -> bool:
        return self.rt.storage_key == (CRD_GROUP, "customresourcedefinitions")

    def _settle(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Controllers that converge at once: workloads report their replicas ready."""
        if self.rt.storage_key in _SCALABLE and isinstance(obj.get("spec"), dict):
            return settle_workload(obj)
        return obj

    def _validate_crd(self, obj: dict[str, Any]) -> None:
        problems = crd_problems(obj)
        if problems:
            raise status.invalid(
                CRD_GROUP, "CustomResourceDefinition", obj["metadata"].get("name", ""), problems
            )


# --------------------------------------------------------------------------------------------------
# Deletion


PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")


class Dependents:
    """Who names whom in ownerReferences, for the garbage collection of one request.

    Built on first use with one scan per namespace, then shared by every deletion of the request (a
    deletecollection, a chain of owners), so a batch costs one scan instead of one per object.  Stale
    entries are harmless: each candidate is looked up again before it is touched.  `enabled=False`
    collects nothing (a namespace being emptied deletes every dependent anyway).
    """

    __slots__ = ("store", "enabled", "_tables")

    def __init__(self, store: Store, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self._tables: dict[str | None, dict[str, list[tuple[ResourceType, str]]]] = {}

    def of(self, uid: str, namespace: str | None) -> list[tuple[ResourceType, str]]:
        """(type, name) of the objects in `namespace` (None: cluster-scoped) that name `uid`."""
        if not self.enabled:
            return []
        table = self._tables.get(namespace)
        if table is None:
            table = self._tables[namespace] = {}
            types = _namespaced_types(self.store) if namespace else _cluster_types(self.store)
            for rt in types:
                for entry in self.store.list(rt, namespace=namespace).items:
                    meta = entry.obj["metadata"]
                    for ref in meta.get("ownerReferences") or ():
                        if isinstance(ref, dict) and ref.get("uid"):
                            table.setdefault(ref["uid"], []).append((rt, meta["name"]))
        return table.get(uid, [])


def delete_object(
    store: Store,
    rt: ResourceType,
    obj: dict[str, Any],
    *,
    now: float,
    dry_run: bool = False,
    propagation: str = "Background",
    dependents: Dependents | None = None,
) -> tuple[dict[str, Any], bool]:
    """Delete `obj` honouring its finalizers; returns (the object to answer with, removed now?).

    An object with finalizers gets `deletionTimestamp` (MODIFIED) and stays until an update empties
    them.  A namespace is marked Terminating, its contents deleted, and it goes once they are gone.
    Objects whose ownerReferences named it are collected as the garbage collector would (deleted for
    Background/Foreground, their reference dropped for Orphan).
    """
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    is_namespace = rt.storage_key == ("", "namespaces")
    if meta.get("deletionTimestamp") and not is_namespace:
        return obj, False
    if is_namespace:
        return _delete_namespace(store, rt, obj, now=now, dry_run=dry_run)
    if meta.get("finalizers"):
        marked = copy.deepcopy(obj)
        marked["metadata"]["deletionTimestamp"] = timestamp(now)
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        if dry_run:
            return marked, False
        return store.replace(rt, marked, namespace=namespace, check_resource_version=False), False
    if dry_run:
        return obj, True
    return _remove(store, rt, obj, now=now, propagation=propagation, dependents=dependents), True


def _remove(
    store: Store,
    rt: ResourceType,
    obj: dict[str, Any],
    *,
    now: float,
    propagation: str = "Background",
    dependents: Dependents | None = None,
) -> dict[str, Any]:
    """Remove now, then whatever depended on it: dependents, a CRD's objects and type, a terminating
    namespace.  Foreground removes the dependents first, as the owner waits for them there."""
    meta = obj["metadata"]
    index = dependents if dependents is not None else Dependents(store)
    if propagation == "Foreground":
        _collect_dependents(store, rt, obj, index, now=now, orphan=False, foreground=True)
    if rt.storage_key == (CRD_GROUP, "customresourcedefinitions"):
        unregister_crd(store, obj)  # its objects go first, as the CRD's cleanup finalizer does
    gone = store.delete(rt, meta.get("namespace"), meta["name"])
    if propagation != "Foreground":
        _collect_dependents(store, rt, obj, index, now=now, orphan=propagation == "Orphan")
    namespace = meta.get("namespace")
    if rt.namespaced and namespace and index.enabled:  # a namespace's own cascade checks once, at its end
        _maybe_finish_namespace(store, namespace)
    return gone


def _namespace_type(store: Store) -> ResourceType | None:
    return store.kinds.by_resource("", "v1", "namespaces")


def _delete_namespace(
    store: Store, rt: ResourceType, ns: dict[str, Any], *, now: float, dry_run: bool
) -> tuple[dict[str, Any], bool]:
    name = ns["metadata"]["name"]
    terminating = copy.deepcopy(ns)
    terminating["metadata"].setdefault("deletionTimestamp", timestamp(now))
    terminating["metadata"].setdefault("deletionGracePeriodSeconds", 0)
    terminating.setdefault("status", {})["phase"] = "Terminating"
    if dry_run:
        return terminating, False
    if terminating != ns:
        terminating = store.replace(rt, terminating, check_resource_version=False)
    everything = Dependents(store, enabled=False)  # all of it goes: no owner lookups needed
    for content_type in _namespaced_types(store):
        for obj in store.list(content_type, namespace=name).objects():
            current = store.lookup(content_type, name, obj["metadata"]["name"])
            if current is not None:
                delete_object(store, content_type, current, now=now, dependents=everything)
    finished = _maybe_finish_namespace(store, name)
    return terminating, finished


def _collect_dependents(
    store: Store,
    owner_rt: ResourceType,
    owner: dict[str, Any],
    index: Dependents,
    *,
    now: float,
    orphan: bool,
    foreground: bool = False,
) -> None:
    """The garbage collector's part: objects whose ownerReferences name `owner`.

    A dependent with another owner that still exists, or any dependent under Orphan, loses the
    reference; the others are deleted (recursively, honouring their finalizers).  Dependents of a
    namespaced owner live in its namespace; of a cluster-scoped owner, only cluster-scoped dependents
    are looked for (a full scan of every namespace per deletion is not worth it here).
    """
    uid = owner["metadata"].get("uid")
    if not uid:
        return
    namespace = owner["metadata"].get("namespace") if owner_rt.namespaced else None
    for rt, name in index.of(uid, namespace):
        current = store.lookup(rt, namespace, name)
        if current is None:
            continue
        refs = current["metadata"].get("ownerReferences") or ()
        if not any(isinstance(r, dict) and r.get("uid") == uid for r in refs):
            continue
        remaining = [r for r in refs if not (isinstance(r, dict) and r.get("uid") == uid)]
        if orphan or any(_owner_exists(store, ref, namespace) for ref in remaining):
            changed = copy.deepcopy(current)
            if remaining:
                changed["metadata"]["ownerReferences"] = remaining
            else:
                changed["metadata"].pop("ownerReferences", None)
            store.replace(rt, changed, check_resource_version=False)
        else:
            policy = "Foreground" if foreground else "Background"
            delete_object(store, rt, current, now=now, propagation=policy, dependents=index)


def _owner_exists(store: Store, ref: Any, namespace: str | None) -> bool:
    """Whether an owner reference resolves to a live object (unknown kinds count as present)."""
    if not isinstance(ref, dict):
        return False
    rt = store.kinds.by_api_version_kind(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
    if rt is None:
        return True
    obj = store.lookup(rt, namespace if rt.namespaced else None, str(ref.get("name", "")))
    return obj is not None and obj["metadata"].get("uid") == ref.get("uid")


def _cluster_types(store: Store) -> list[ResourceType]:
    seen: set[tuple[str, str]] = set()
    types = []
    for rt in store.kinds:
        if not rt.namespaced and "list" in rt.verbs and rt.storage_key not in seen:
            seen.add(rt.storage_key)
            types.append(rt)
    return types


def _namespaced_types(store: Store) -> list[ResourceType]:
    seen: set[tuple[str, str]] = set()
    types = []
    for rt in store.kinds:
        if rt.namespaced and "list" in rt.verbs and rt.storage_key not in seen:
            seen.add(rt.storage_key)
            types.append(rt)
    return types


def _maybe_finish_namespace(store: Store, name: str) -> bool:
    """Remove a terminating namespace once nothing is left in it (and it has no finalizers)."""
    ns_type = _namespace_type(store)
    if ns_type is None:
        return False
    ns = store.lookup(ns_type, None, name)
    if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
        return False
    only_here = f"metadata.namespace={name}"  # with a selector the store stops at the first match
    for rt in _namespaced_types(store):
        if store.list(rt, namespace=name, limit=1, field_selector=only_here).items:
            return False
    store.delete(ns_type, None, name)
    return True


# --------------------------------------------------------------------------------------------------
# Defaults a real apiserver fills in on create

IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
SERVICE_CIDR_PREFIX = "10.43."  # the k3s/RKE2 default service network (10.43.0.0/16)


def apply_defaults(store: Store, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The defaulting a client sees in the created object, for the kinds where it shows (kubectl get).

    Namespaces: phase Active, the `kubernetes` finalizer, the `kubernetes.io/metadata.name` label.
    Services: type ClusterIP with an allocated cluster IP, TCP ports targeting themselves.
    Pods: phase Pending (no kubelet runs them).
    """
    key = rt.storage_key
    if key == ("", "namespaces"):
        out = copy.deepcopy(obj)
        meta = out["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
        spec = out.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("finalizers", ["kubernetes"])
        status_ = out.setdefault("status", {})
        if isinstance(status_, dict):
            status_.setdefault("phase", "Active")
        return out
    if key == ("", "services") and isinstance(obj.get("spec"), dict):
        out = copy.deepcopy(obj)
        spec = out["spec"]
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = _allocate_cluster_ip(store, rt, out)
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        return out
    if key == ("", "pods") and not (obj.get("status") or {}).get("phase"):
        out = dict(obj)
        out["status"] = {**(obj.get("status") or {}), "phase": "Pending"}
        return out
    return obj


def _allocate_cluster_ip(store: Store, rt: ResourceType, svc: dict[str, Any]) -> str:
    """A free address in the service network, stable for a given namespace/name when it is free."""
    used = {
        (o.get("spec") or {}).get("clusterIP")
        for o in store.list(rt).objects()
        if isinstance(o.get("spec"), dict)
    }
    meta = svc["metadata"]
    seed = sum(
        ord(ch) * (i + 1) for i, ch in enumerate(f"{meta.get('namespace', '')}/{meta.get('name', '')}")
    )
    for attempt in range(65_000):
        n = (seed + attempt * 7919) % 65_024 + 256  # skip 10.43.0.x (the apiserver lives at .0.1)
        address = f"{SERVICE_CIDR_PREFIX}{n // 256}.{n % 256}"
        if address not in used:
            return address
    raise status.internal_error("the service network is full")


def _keep_allocated(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """An update that omits a Service's allocated addresses keeps them (they are immutable)."""
    if rt.storage_key != ("", "services"):
        return
    old_spec, new_spec = old.get("spec") or {}, new.get("spec")
    if not isinstance(new_spec, dict):
        return
    for key in ("clusterIP", "clusterIPs"):
        if key in old_spec and not new_spec.get(key):
            new_spec[key] = copy.deepcopy(old_spec[key])


# --------------------------------------------------------------------------------------------------
# Workloads


def settle_workload(obj: dict[str, Any]) -> dict[str, Any]:
    """What the workload controllers would report at once: every desired replica ready and current."""
    spec = obj.get("spec") or {}
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        return obj
    out = dict(obj)
    st = dict(out.get("status") or {})
    st.update(
        {
            "observedGeneration": (obj.get("metadata") or {}).get("generation", 1),
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
    )
    if obj.get("kind") in ("Deployment", "StatefulSet"):
        st["updatedReplicas"] = replicas
    if obj.get("kind") == "ReplicaSet" or obj.get("kind") == "ReplicationController":
        st["fullyLabeledReplicas"] = replicas
    for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "fullyLabeledReplicas"):
        if key in st and st[key] == 0:
            del st[key]
    out["status"] = st
    return out


def _selector_string(selector: Any) -> str:
    """A LabelSelector as the `key=value,key in (a,b)` text Scale.status.selector carries."""
    if not isinstance(selector, dict):
        return ""
    text = format_label_selector(selector)  # a ReplicationController's plain map included
    try:
        parse_labels(text)
    except ApiError:
        return ""
    return text


# --------------------------------------------------------------------------------------------------
# CustomResourceDefinitions


def crd_problems(crd: dict[str, Any]) -> list[dict[str, str]]:
    """The causes of a 422 for a CRD whose spec cannot define a type (empty when it is fine)."""
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    problems = []
    group, plural = spec.get("group") or "", names.get("plural") or ""
    if not group:
        problems.append(_cause("spec.group", "", "Required value"))
    if not plural:
        problems.append(_cause("spec.names.plural", "", "Required value"))
    if not names.get("kind"):
        problems.append(_cause("spec.names.kind", "", "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{spec.get("scope", "")}": '
                'supported values: "Cluster", "Namespaced"',
                "field": "spec.scope",
            }
        )
    expected = f"{plural}.{group}"
    name = (crd.get("metadata") or {}).get("name", "")
    if group and plural and name != expected:
        problems.append(_cause("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        problems.append(
            _cause(
                "spec.versions", "", "Required value: must have exactly one version marked as storage version"
            )
        )
    else:
        storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
        if len(storage) != 1:
            problems.append(
                _cause(
                    "spec.versions",
                    "",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            )
        for index, version in enumerate(versions):
            if not isinstance(version, dict) or not version.get("name"):
                problems.append(_cause(f"spec.versions[{index}].name", "", "Required value"))
    return problems


def _crd_accepted(crd: dict[str, Any]) -> dict[str, Any]:
    """The status the apiextensions controllers give an accepted CRD (Established, NamesAccepted)."""
    out = dict(crd)
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    storage = [v.get("name") for v in spec.get("versions") or () if isinstance(v, dict) and v.get("storage")]
    created = (crd.get("metadata") or {}).get("creationTimestamp") or timestamp(time.time())
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "lastTransitionTime": created,
            "reason": "NoConflicts",
            "message": "no conflicts found",
        },
        {
            "type": "Established",
            "status": "True",
            "lastTransitionTime": created,
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    out["status"] = {"conditions": conditions, "acceptedNames": names, "storedVersions": storage}
    return out


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = spec.get("group", ""), names.get("kind", ""), names.get("plural", "")
    types = []
    for version in spec.get("versions") or ():
        if not isinstance(version, dict) or not version.get("served", True):
            continue
        subs = []
        declared = version.get("subresources") or {}
        if "status" in declared:
            subs.append(Subresource("status", kind, ("get", "patch", "update")))
        if "scale" in declared:
            subs.append(
                Subresource("scale", "Scale", ("get", "patch", "update"), group="autoscaling", version="v1")
            )
        types.append(
            ResourceType(
                group,
                version["name"],
                kind,
                plural,
                spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(subs),
                singular=names.get("singular") or kind.lower(),
                crd=crd["metadata"]["name"],
            )
        )
    return types


def register_crd(store: Store, crd: dict[str, Any]) -> None:
    """Serve the CRD's versions from now on (an update replaces what an earlier version served)."""
    name = crd["metadata"]["name"]
    wanted = crd_types(crd)
    keep = {(t.group, t.version, t.plural) for t in wanted}
    for rt in list(store.kinds):
        if rt.crd == name and (rt.group, rt.version, rt.plural) not in keep:
            store.kinds.unregister(rt.group, rt.version, rt.plural)
    for rt in wanted:
        if store.kinds.by_resource(rt.group, rt.version, rt.plural) != rt:
            store.kinds.register(rt)
    log.debug("CRD {name} serves {versions}", name=name, versions=[t.version for t in wanted])


def unregister_crd(store: Store, crd: dict[str, Any]) -> None:
    """Remove the CRD's objects (DELETED events) and stop serving its types."""
    name = crd["metadata"]["name"]
    served = [rt for rt in store.kinds if rt.crd == name]
    if served:
        rt = served[0]
        for obj in store.list(rt).objects():
            meta = obj["metadata"]
            store.delete(rt, meta.get("namespace"), meta["name"])
    for rt in served:
        store.kinds.unregister(rt.group, rt.version, rt.plural)


# --------------------------------------------------------------------------------------------------
# Validation helpers

_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
#: types whose names are path segments rather than DNS names (RBAC's `system:…` roles and the like)
_PATH_SEGMENT_NAMES = frozenset(
    {"rbac.authorization.k8s.io", "authorization.k8s.io", "authentication.k8s.io"}
)


def _cause(field: str, value: str, detail: str) -> dict[str, str]:
    message = f'Invalid value: "{value}": {detail}' if value else detail
    reason = "FieldValueRequired" if detail.startswith("Required") else "FieldValueInvalid"
    return {"reason": reason, "message": message, "field": field}


def _name_problems(rt: ResourceType, name: str) -> list[dict[str, str]]:
    if name in (".", "..") or "/" in name or "%" in name:
        return [_cause("metadata.name", name, 'may not contain "/" or "%" and may not be "." or ".."')]
    if rt.group in _PATH_SEGMENT_NAMES or rt.crd is not None:
        return []
    if rt.storage_key == ("", "namespaces"):
        if len(name) > 63 or not _DNS_LABEL.match(name):
            return [_cause("metadata.name", name, _LABEL_HELP)]
        return []
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [_cause("metadata.name", name, _SUBDOMAIN_HELP)]
    return []


def _check_patched_identity(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """A patch may not rename, move or retype an object (a real apiserver answers 422/400)."""
    if not isinstance(new, dict):
        raise status.bad_request("the patch did not produce an object")
    meta, old_meta = new.get("metadata"), old["metadata"]
    if not isinstance(meta, dict):
        raise status.bad_request("metadata must be an object")
    causes = []
    for key in ("name", "namespace", "uid"):
        if key in old_meta and meta.get(key, old_meta[key]) != old_meta[key]:
            detail = "field is immutable"
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{meta.get(key)}": {detail}',
                    "field": f"metadata.{key}",
                }
            )
    if causes:
        raise status.invalid(rt.group, rt.kind, old_meta.get("name", ""), causes)
    if new.get("kind", old.get("kind")) != old.get("kind") or new.get(
        "apiVersion", old.get("apiVersion")
    ) != old.get("apiVersion"):
        raise status.bad_request("a patch may not change an object's apiVersion or kind")
    meta.setdefault("name", old_meta.get("name"))


def _patch_error(exc: patches.PatchError) -> ApiError:
    if exc.code == 400:
        return status.bad_request(exc.message)
    if exc.code == 409:
        return ApiError(409, "Conflict", exc.message)
    return ApiError(422, "Invalid", exc.message)
