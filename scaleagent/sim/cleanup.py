"""Rancher's cleanup objects for a removed imported cluster (rancher-protocol.md §6.5).

When an imported cluster is deleted, Rancher creates, through the still-open tunnel, a ClusterRole,
a ServiceAccount, a ClusterRoleBinding and a Job `cattle-cleanup-*` whose container has
`CLUSTER_CLEANUP=true`, and makes the Job own the other three. 3 tries, 3 s apart, then it removes
the cluster anyway. Pure data: the driver sends them.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "default"
ROLE = "cattle-cleanup-role"
ACCOUNT = "cattle-cleanup-sa"
BINDING = "cattle-cleanup-binding"
JOB = "cattle-cleanup-job"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
JOB_PATH = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{JOB}"
OWNED_PATHS = (
    f"{RBAC}/clusterroles/{ROLE}",
    f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}",
    f"{RBAC}/clusterrolebindings/{BINDING}",
)


def objects(image: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) to POST, in Rancher's order."""
    return [
        (
            f"{RBAC}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": ROLE},
                "rules": [
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ],
            },
        ),
        (
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": ACCOUNT, "namespace": NAMESPACE},
            },
        ),
        (
            f"{RBAC}/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": BINDING},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
            },
        ),
        (
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": JOB, "namespace": NAMESPACE, "labels": {"rancher-cleanup": "true"}},
                "spec": {
                    "backoffLimit": 6,
                    "completions": 1,
                    "parallelism": 1,
                    "template": {
                        "metadata": {"labels": {"rancher-cleanup": "true"}},
                        "spec": {
                            "serviceAccountName": ACCOUNT,
                            "restartPolicy": "OnFailure",
                            "containers": [
                                {
                                    "name": "cleanup-agent",
                                    "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "env": [{"name": "CLUSTER_CLEANUP", "value": "true"}],
                                }
                            ],
                        },
                    },
                },
            },
        ),
    ]


def owner_reference(job: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference naming the cleanup Job (so the objects go when the Job goes)."""
    meta = job.get("metadata") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta.get("name", JOB),
        "uid": meta.get("uid", ""),
    }


__all__ = ["JOB", "JOB_PATH", "OWNED_PATHS", "objects", "owner_reference"]
