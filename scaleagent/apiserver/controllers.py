"""What kube-controller-manager and the apiserver's virtual resources would do: tokens and reviews.

* `TokenController` acts as the service-account token controller: a Secret of type
  `kubernetes.io/service-account-token` whose `kubernetes.io/service-account.name` annotation names an
  existing ServiceAccount gets `data.token`, `data.ca.crt` and `data.namespace` right after it is
  written (one MODIFIED event), and the token authenticates against this cluster as
  `system:serviceaccount:<ns>:<name>`.  Rancher creates such Secrets for its impersonation accounts and
  polls until `data.token` is filled.  Tokens already in stored Secrets (a restart) are accepted again.
* `handler_for(req)` / `handle(req)` serve the POST-only virtual resources: the
  `serviceaccounts/<name>/token` subresource (TokenRequest), TokenReview, SubjectAccessReview,
  LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview (everything is allowed: the
  simulated cluster authorises every caller) and SelfSubjectReview (the caller after impersonation).

Tokens are opaque, JWT-shaped (so log redaction recognises them) and never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from scaleagent.apiserver import status
from scaleagent.apiserver.auth import User
from scaleagent.apiserver.kinds import ResourceType
from scaleagent.apiserver.store import ADDED, DELETED, MODIFIED, Entry, Watch, timestamp
from scaleagent.redact import logger

log = logger()

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
DEFAULT_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 600
EXTRA_KEY = "token_controller"

AUTHN = "authentication.k8s.io"
AUTHZ = "authorization.k8s.io"


# --- identities and tokens ----------------------------------------------------------------------


def service_account_user(namespace: str, name: str, uid: str = "") -> User:
    """The user a service-account token authenticates as (name and groups as Kubernetes reports them)."""
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        uid,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(claims: dict[str, Any]) -> str:
    """A JWT-shaped bearer token carrying `claims`; the signature is random (nobody verifies it)."""
    header = {"alg": "RS256", "kid": _b64url(secrets.token_bytes(16))}
    parts = [
        _b64url(json.dumps(header, separators=(",", ":")).encode()),
        _b64url(json.dumps(claims, separators=(",", ":")).encode()),
        _b64url(secrets.token_bytes(64)),
    ]
    return ".".join(parts)


def secret_token(namespace: str, secret: str, sa_name: str, sa_uid: str) -> str:
    """A legacy (non-expiring) token as the token controller puts it into a Secret."""
    return make_token(
        {
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}",
        }
    )


def _clock_seconds(clock: Any) -> float:
    seconds = getattr(clock, "seconds", None)
    return float(seconds()) if callable(seconds) else time.time()


# --- the token controller -----------------------------------------------------------------------


def _needs_token(obj: dict[str, Any]) -> str | None:
    """The service account a token Secret names, if the Secret is one the controller serves."""
    if obj.get("type") != SA_TOKEN_TYPE:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(SA_NAME_ANNOTATION)
    return name if isinstance(name, str) and name else None


def _decoded(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


class TokenController:
    """Fills service-account token Secrets and keeps their tokens accepted by the cluster.

    It watches Secrets and ServiceAccounts in the cluster's store.  Writes happen on the next reactor
    turn (`clock.callLater(0, …)`): a write from inside a watch delivery would reach later watchers
    before the event that caused it.
    """

    def __init__(self, api: Any) -> None:
        self.api = api
        self.store = api.store
        secrets_rt = api.kinds.by_resource("", "v1", "secrets")
        sa_rt = api.kinds.by_resource("", "v1", "serviceaccounts")
        if secrets_rt is None or sa_rt is None:
            raise ValueError("the cluster serves no secrets or serviceaccounts")
        self.secrets: ResourceType = secrets_rt
        self.service_accounts: ResourceType = sa_rt
        #: (namespace, secret name) → the token it carries and we accept
        self._tokens: dict[tuple[str, str], str] = {}
        self._pending: set[tuple[str, str]] = set()
        self._scheduled: Any = None
        self._watches: list[Watch] = []

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> TokenController:
        """Start watching; existing Secrets are seen at once (their tokens accepted, gaps queued)."""
        if not self._watches:
            self._watches.append(self.store.watch(self.secrets, self._on_secret))
            self._watches.append(self.store.watch(self.service_accounts, self._on_service_account))
        return self

    def stop(self) -> None:
        for watch in self._watches:
            watch.cancel()
        self._watches.clear()
        if self._scheduled is not None and getattr(self._scheduled, "active", lambda: False)():
            self._scheduled.cancel()
        self._scheduled = None
        self._pending.clear()

    # -- events --------------------------------------------------------------------------------------

    def _on_secret(self, kind: str, entry: Entry) -> None:
        obj = entry.obj
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if kind == DELETED:
            self._forget(key)
            return
        if kind not in (ADDED, MODIFIED):
            return
        sa_name = _needs_token(obj)
        if sa_name is None:
            self._forget(key)
            return
        token = _decoded(obj.get("data") or {}, "token")
        if token:
            self._accept(key, token, sa_name, meta.get("annotations", {}).get(SA_UID_ANNOTATION, ""))
        else:
            self._forget(key)
            self._queue(key)

    def _on_service_account(self, kind: str, entry: Entry) -> None:
        if kind != ADDED:
            return
        meta = entry.obj.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name")
        # Secrets created before their ServiceAccount are filled once it exists.
        for item in self.store.list(self.secrets, namespace=namespace).objects():
            if _needs_token(item) == name and not _decoded(item.get("data") or {}, "token"):
                self._queue((namespace, item["metadata"]["name"]))

    def _accept(self, key: tuple[str, str], token: str, sa_name: str, sa_uid: str) -> None:
        old = self._tokens.get(key)
        if old == token:
            return
        if old is not None:
            self.api.auth.revoke(old)
        self._tokens[key] = token
        self.api.auth.issue(service_account_user(key[0], sa_name, sa_uid), token)

    def _forget(self, key: tuple[str, str]) -> None:
        token = self._tokens.pop(key, None)
        if token is not None:
            self.api.auth.revoke(token)

    def _queue(self, key: tuple[str, str]) -> None:
        self._pending.add(key)
        if self._scheduled is None:
            call_later = getattr(self.api.clock, "callLater", None)
            if call_later is None:
                self._scheduled = True
                self.run_pending()
            else:
                self._scheduled = call_later(0, self.run_pending)

    # -- the work ------------------------------------------------------------------------------------

    def run_pending(self) -> None:
        """Fill every queued Secret whose ServiceAccount exists (tests may call this directly)."""
        self._scheduled = None
        pending, self._pending = self._pending, set()
        for key in sorted(pending):
            try:
                self._fill(key)
            except status.ApiError as e:
                # Deleted or changed meanwhile: a later event queues it again if it still matters.
                log.debug("token controller skipped {key}: {reason}", key=key, reason=e.reason)
            except Exception:
                log.failure("token controller failed for {key}", key=key)

    def _fill(self, key: tuple[str, str]) -> None:
        namespace, name = key
        secret = self.store.lookup(self.secrets, namespace, name)
        if secret is None:
            return
        sa_name = _needs_token(secret)
        data = dict(secret.get("data") or {})
        if sa_name is None or _decoded(data, "token"):
            return
        sa = self.store.lookup(self.service_accounts, namespace, sa_name)
        if sa is None:
            return  # filled when the ServiceAccount appears
        sa_uid = sa["metadata"].get("uid", "")
        annotations = dict(secret["metadata"].get("annotations") or {})
        wanted_uid = annotations.get(SA_UID_ANNOTATION)
        if wanted_uid and wanted_uid != sa_uid:
            return  # meant for an earlier account of that name; the real controller would not fill it
        token = secret_token(namespace, name, sa_name, sa_uid)
        data["token"] = base64.b64encode(token.encode()).decode()
        data["ca.crt"] = base64.b64encode(self.api.ca_pem or b"").decode()
        data["namespace"] = base64.b64encode(namespace.encode()).decode()
        annotations[SA_UID_ANNOTATION] = sa_uid
        new = dict(secret)
        new["metadata"] = dict(secret["metadata"], annotations=annotations)
        new["data"] = data
        self.store.replace(self.secrets, new, namespace=namespace)


def start(api: Any) -> TokenController:
    """The cluster's token controller, started once and kept in `api.extras`."""
    controller = api.extras.get(EXTRA_KEY)
    if controller is None:
        controller = api.extras[EXTRA_KEY] = TokenController(api)
    return controller.start()


# --- virtual resources: token subresource and reviews --------------------------------------------


def _body(req: Any, api_version: str, kind: str) -> dict[str, Any]:
    try:
        obj = req.decode_body()
    except status.ApiError:
        raise
    except Exception as exc:
        raise status.bad_request(f"the request body could not be decoded: {exc}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise status.bad_request("the request body must be an object")
    sent_version, sent_kind = obj.get("apiVersion"), obj.get("kind")
    if sent_version not in (None, "", api_version):
        raise status.bad_request(
            f"the API version in the data ({sent_version}) does not match the expected API version "
            f"({api_version})"
        )
    if sent_kind not in (None, "", kind):
        raise status.bad_request(
            f'{sent_kind} in version "v1" cannot be handled as a {kind}: no kind "{sent_kind}" is '
            f'registered for version "{api_version}"'
        )
    for part in ("metadata", "spec"):
        if part in obj and obj[part] is not None and not isinstance(obj[part], dict):
            raise status.bad_request(f"{part} must be an object")
    out = {"kind": kind, "apiVersion": api_version}
    out.update((k, v) for k, v in obj.items() if k not in ("kind", "apiVersion"))
    out["metadata"] = dict(obj.get("metadata") or {})
    out["spec"] = dict(obj.get("spec") or {})
    return out


def _invalid(kind: str, group: str, field: str, value: Any, message: str) -> status.ApiError:
    return status.invalid(
        group,
        kind,
        "",
        [{"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: {message}", "field": field}],
    )


def token_request(req: Any) -> tuple[int, dict[str, Any]]:
    """POST …/serviceaccounts/<name>/token: a bound token for an existing ServiceAccount."""
    obj = _body(req, f"{AUTHN}/v1", "TokenRequest")
    sa_rt = req.rt
    sa = req.store.get(sa_rt, req.namespace, req.name)
    spec = obj["spec"]
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        seconds = DEFAULT_TOKEN_SECONDS
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise _invalid("TokenRequest", AUTHN, "spec.expirationSeconds", seconds, "must be an integer")
    if seconds < MIN_TOKEN_SECONDS:
        raise _invalid(
            "TokenRequest", AUTHN, "spec.expirationSeconds", seconds,
            "may not specify a duration less than 10 minutes",
        )
    if seconds > 1 << 32:
        raise _invalid(
            "TokenRequest", AUTHN, "spec.expirationSeconds", seconds,
            "may not specify a duration larger than 2^32 seconds",
        )
    audiences = spec.get("audiences") or [DEFAULT_AUDIENCE]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _invalid("TokenRequest", AUTHN, "spec.audiences", audiences, "must be a list of strings")
    now = int(_clock_seconds(req.api.clock))
    namespace, name, sa_uid = req.namespace or "", req.name, sa["metadata"].get("uid", "")
    claims: dict[str, Any] = {
        "aud": audiences,
        "exp": now + seconds,
        "iat": now,
        "iss": DEFAULT_AUDIENCE,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}},
        "nbf": now,
        "sub": f"system:serviceaccount:{namespace}:{name}",
    }
    bound = spec.get("boundObjectRef")
    if isinstance(bound, dict) and bound.get("kind") and bound.get("name"):
        claims["kubernetes.io"][str(bound["kind"]).lower()] = {
            "name": bound.get("name"),
            "uid": bound.get("uid", ""),
        }
    token = make_token(claims)
    if not req.dry_run:
        req.api.auth.issue(service_account_user(namespace, name, sa_uid), token)
    meta = dict(obj["metadata"])
    meta.update(name=name, namespace=namespace, creationTimestamp=timestamp(now))
    obj["metadata"] = meta
    spec = dict(spec, audiences=audiences, expirationSeconds=seconds)
    obj["spec"] = spec
    obj["status"] = {"token": token, "expirationTimestamp": timestamp(now + seconds)}
    return 201, obj


def token_review(req: Any) -> tuple[int, dict[str, Any]]:
    """POST tokenreviews: authenticated for tokens this cluster issued."""
    obj = _body(req, f"{AUTHN}/v1", "TokenReview")
    token = obj["spec"].get("token")
    if not isinstance(token, str) or not token:
        raise _invalid("TokenReview", AUTHN, "spec.token", "", "token is required")
    user = req.api.auth.user(token)
    audiences = obj["spec"].get("audiences") or [DEFAULT_AUDIENCE]
    if user is None:
        obj["status"] = {"user": {}, "error": "invalid bearer token"}
    else:
        obj["status"] = {"authenticated": True, "user": user.to_json(), "audiences": list(audiences)}
    return 201, obj


def _allowed(obj: dict[str, Any], *, self_review: bool) -> dict[str, Any]:
    spec = obj["spec"]
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        raise _invalid(
            obj["kind"], AUTHZ, "spec.resourceAttributes", resource,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )
    if not isinstance(resource or non_resource, dict):
        raise status.bad_request("resourceAttributes and nonResourceAttributes must be objects")
    if not self_review and not spec.get("user") and not spec.get("groups"):
        raise _invalid(obj["kind"], AUTHZ, "spec.user", "", "at least one of user or group must be specified")
    obj["status"] = {"allowed": True, "reason": "the simulated cluster authorises every request"}
    return obj


def subject_access_review(req: Any) -> tuple[int, dict[str, Any]]:
    """POST subjectaccessreviews (and localsubjectaccessreviews): always allowed."""
    obj = _body(req, f"{AUTHZ}/v1", req.rt.kind)
    if req.rt.namespaced:
        attrs = obj["spec"].get("resourceAttributes")
        if isinstance(attrs, dict) and attrs.get("namespace") not in (None, "", req.namespace):
            raise _invalid(
                req.rt.kind, AUTHZ, "spec.resourceAttributes.namespace", attrs.get("namespace"),
                "must match metadata.namespace",
            )
        obj["metadata"]["namespace"] = req.namespace
    return 201, _allowed(obj, self_review=False)


def self_subject_access_review(req: Any) -> tuple[int, dict[str, Any]]:
    """POST selfsubjectaccessreviews: always allowed (steve's schema refresh, `kubectl auth can-i`)."""
    return 201, _allowed(_body(req, f"{AUTHZ}/v1", "SelfSubjectAccessReview"), self_review=True)


ALL_RULES: dict[str, Any] = {
    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    "incomplete": False,
}


def self_subject_rules_review(req: Any) -> tuple[int, dict[str, Any]]:
    """POST selfsubjectrulesreviews: every verb on everything (`kubectl auth can-i --list`)."""
    obj = _body(req, f"{AUTHZ}/v1", "SelfSubjectRulesReview")
    if not obj["spec"].get("namespace"):
        raise _invalid("SelfSubjectRulesReview", AUTHZ, "spec.namespace", "", "namespace is required")
    obj["status"] = json.loads(json.dumps(ALL_RULES))
    return 201, obj


def self_subject_review(req: Any) -> tuple[int, dict[str, Any]]:
    """POST selfsubjectreviews: who the caller is, after impersonation (`kubectl auth whoami`)."""
    obj = _body(req, f"{AUTHN}/v1", "SelfSubjectReview")
    obj.pop("spec", None)
    obj["status"] = {"userInfo": req.user.to_json()}
    return 201, obj


Handler = Callable[[Any], tuple[int, dict[str, Any]]]

REVIEWS: dict[tuple[str, str], Handler] = {
    (AUTHN, "tokenreviews"): token_review,
    (AUTHN, "selfsubjectreviews"): self_subject_review,
    (AUTHZ, "subjectaccessreviews"): subject_access_review,
    (AUTHZ, "localsubjectaccessreviews"): subject_access_review,
    (AUTHZ, "selfsubjectaccessreviews"): self_subject_access_review,
    (AUTHZ, "selfsubjectrulesreviews"): self_subject_rules_review,
}


def handler_for(req: Any) -> Handler | None:
    """The handler for a request this module serves, or None (then it is an ordinary write)."""
    if req.method != "POST":
        return None
    key = (req.rt.group, req.rt.plural)
    if req.subresource is None and req.name is None and key in REVIEWS:
        return REVIEWS[key]
    if key == ("", "serviceaccounts") and req.subresource == "token" and req.name:
        return token_request
    return None


def handle(req: Any) -> tuple[int, dict[str, Any]]:
    """Serve a request `handler_for` accepts: (HTTP code, JSON body), or raise ApiError."""
    handler = handler_for(req)
    if handler is None:
        raise status.method_not_allowed()
    return handler(req)
