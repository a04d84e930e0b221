"""The import manifest, `GET /v3/import/<token>_<clusterId>.yaml`, as Rancher renders it.

What an agent needs from it is the server URL, the registration token (in the `cattle-credentials-*`
Secret) and `CATTLE_CA_CHECKSUM`; the other objects are there so a simulated cluster that loads the
manifest into its store holds what a real imported cluster holds (rancher-protocol.md §6.4).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import yaml


def ca_checksum(cacerts: str) -> str:
    """`CATTLE_CA_CHECKSUM`: sha256 hex of the `cacerts` setting, newline-terminated; "" if none."""
    if not cacerts:
        return ""
    if not cacerts.endswith("\n"):
        cacerts += "\n"
    return hashlib.sha256(cacerts.encode()).hexdigest()


def credential_name(url: str, token: str, namespace: str = "") -> str:
    """Name of the `cattle-credentials-<key>` Secret: 10 hex digits of sha256("url.token.namespace")."""
    digest = hashlib.sha256(f"{url}.{token}.{namespace}".encode()).hexdigest()
    return "cattle-credentials-" + digest[:10]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def import_objects(
    *, server_url: str, token: str, cacerts: str, server_version: str, namespace: str = ""
) -> list[dict[str, Any]]:
    """The Kubernetes objects of the import manifest, in Rancher's order."""
    secret = credential_name(server_url, token, namespace)
    agent_image = f"rancher/rancher-agent:{server_version}"
    env = [
        ("CATTLE_SERVER", server_url),
        ("CATTLE_CA_CHECKSUM", ca_checksum(cacerts)),
        ("CATTLE_CLUSTER", "true"),
        ("CATTLE_K8S_MANAGED", "true"),
        ("CATTLE_CREDENTIAL_NAME", secret),
        ("CATTLE_SERVER_VERSION", server_version),
        ("STRICT_VERIFY", "true"),
    ]
    crb_admin = {"cattle.io/creator": "norman"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "proxy-clusterrole-kubeapiserver"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/metrics", "nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec"],
                    "verbs": ["get", "list", "watch", "create"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "proxy-role-binding-kubernetes-master"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "proxy-clusterrole-kubeapiserver",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver"}],
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cattle-system"}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "cattle", "namespace": "cattle-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "cattle-admin-binding", "namespace": "cattle-system", "labels": crb_admin},
            "subjects": [{"kind": "ServiceAccount", "name": "cattle", "namespace": "cattle-system"}],
            "roleRef": {
                "kind": "ClusterRole",
                "name": "cattle-admin",
                "apiGroup": "rbac.authorization.k8s.io",
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": "cattle-system"},
            "type": "Opaque",
            "data": {"url": _b64(server_url), "token": _b64(token), "namespace": _b64(namespace)},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "cattle-admin", "labels": crb_admin},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "cattle-cluster-agent", "namespace": "cattle-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "cattle-cluster-agent"}},
                "template": {
                    "metadata": {"labels": {"app": "cattle-cluster-agent"}},
                    "spec": {
                        "serviceAccountName": "cattle",
                        "tolerations": [
                            {
                                "effect": "NoSchedule",
                                "key": "node-role.kubernetes.io/controlplane",
                                "value": "true",
                            },
                            {
                                "effect": "NoSchedule",
                                "key": "node-role.kubernetes.io/control-plane",
                                "operator": "Exists",
                            },
                        ],
                        "containers": [
                            {
                                "name": "cluster-register",
                                "imagePullPolicy": "IfNotPresent",
                                "image": agent_image,
                                "env": [{"name": name, "value": value} for name, value in env],
                                "volumeMounts": [
                                    {
                                        "name": "cattle-credentials",
                                        "mountPath": "/cattle-credentials",
                                        "readOnly": True,
                                    }
                                ],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "cattle-credentials",
                                "secret": {"secretName": secret, "defaultMode": 320},
                            }
                        ],
                    },
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "cattle-cluster-agent", "namespace": "cattle-system"},
            "spec": {
                "ports": [
                    {"port": 80, "targetPort": 80, "protocol": "TCP", "name": "http"},
                    {"port": 443, "targetPort": 444, "protocol": "TCP", "name": "https-internal"},
                ],
                "selector": {"app": "cattle-cluster-agent"},
            },
        },
    ]


def render(objects: list[dict[str, Any]]) -> bytes:
    """A multi-document YAML stream, each document introduced by `---` as Rancher's template does."""
    parts = [yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects]
    return "".join("---\n" + part for part in parts).encode()


def import_manifest(*, server_url: str, token: str, cacerts: str, server_version: str) -> bytes:
    """The manifest's bytes."""
    return render(
        import_objects(server_url=server_url, token=token, cacerts=cacerts, server_version=server_version)
    )
