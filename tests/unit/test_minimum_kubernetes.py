"""The README's minimum Kubernetes version holds for everything the manifests use, and the
clusters the tests run on (the local control plane, kind's node image) are at least that."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenant_registry.localcluster import K8S_VERSION
from tests.e2e.test_kind import KIND_NODE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
MINIMUM = (1, 33)
README_CLAIM = "Kubernetes 1.33 or newer"

# The first Kubernetes release that serves each API (GA, on by default). A manifest using a
# kind not listed here fails below: add it, and raise MINIMUM and the README if need be.
SERVED_SINCE: dict[tuple[str, str], tuple[int, int]] = {
    ("v1", "Namespace"): (1, 0),
    ("v1", "ServiceAccount"): (1, 0),
    ("v1", "Secret"): (1, 0),
    ("v1", "Service"): (1, 0),
    ("v1", "ConfigMap"): (1, 0),
    ("apps/v1", "Deployment"): (1, 9),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (1, 8),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (1, 8),
    ("rbac.authorization.k8s.io/v1", "Role"): (1, 8),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (1, 8),
    ("policy/v1", "PodDisruptionBudget"): (1, 21),
    ("coordination.k8s.io/v1", "Lease"): (1, 14),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (1, 16),
    # admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy, with matchConditions and
    # variables, is GA in 1.30 (beta APIs before that are off by default).
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): (1, 30),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): (1, 30),
    ("registry.tenancy.dev/v1alpha1", "TenantRegistry"): (0, 0),  # ours, from crds/
    # deploy/monitoring/ (optional): the Prometheus Operator's CRD, not Kubernetes'.
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (0, 0),
}
# Fields inside a manifest that need a newer release than their kind.
FIELDS_SINCE = {
    "x-kubernetes-validations": (1, 29),  # CRD validation rules (CEL), GA in 1.29
    "matchConditions": (1, 30),  # in a ValidatingAdmissionPolicy: part of its v1
}
# CEL functions in policies and validation rules that need a newer release: a library is
# accepted in stored expressions one release after it arrives (kubernetes/kubernetes#128593).
CEL_SINCE = {"transformList(": (1, 33), "transformMapEntry(": (1, 33), "transformMap(": (1, 33)}


def _documents() -> list[Any]:
    docs = []
    for folder in ("crds", "deploy", "examples"):
        for path in sorted((ROOT / folder).rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not (isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc):
                    continue  # e.g. a kustomize JSON 6902 patch
                if doc["kind"] not in ("Kustomization", "Component"):
                    where = str(path.relative_to(ROOT))
                    name = (doc.get("metadata") or {}).get("name", "")
                    docs.append(pytest.param(where, doc, id=f"{where}:{doc['kind']}/{name}"))
    return docs


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def _version(text: str) -> tuple[int, int]:
    m = re.search(r"v?(\d+)\.(\d+)", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize(("path", "doc"), _documents())
def test_every_manifest_is_served_by_the_minimum_version(path: str, doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    assert key in SERVED_SINCE, f"{path}: since which Kubernetes release is {key} served?"
    needed = [SERVED_SINCE[key]] + [v for k, v in FIELDS_SINCE.items() if k in _keys(doc)]
    text = yaml.safe_dump(doc, width=10**6)
    needed += [v for fn, v in CEL_SINCE.items() if fn in text]
    assert max(needed) <= MINIMUM, f"{path}: {key} needs {max(needed)}"


def test_the_readme_states_the_minimum() -> None:
    assert README_CLAIM in (ROOT / "README.md").read_text()


# "minimum is 1.30", "minimum Kubernetes version 1.33", "Kubernetes 1.33 or newer", across
# comment lines too.
_STATED = re.compile(
    r"minimum[\s#*]+(?:Kubernetes[\s#*]+)?(?:version[\s#*]+)?(?:is[\s#*]+)?v?(1\.\d+)"
    r"|Kubernetes[\s#*]+v?(1\.\d+)[\s#*]+or[\s#*]+newer",
    re.I,
)


def _stating_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "Dockerfile"]
    for folder, pattern in (("operator", "*.py"), ("tests", "*.py"), ("deploy", "*.yaml")):
        files += sorted((ROOT / folder).rglob(pattern))
    return [f for f in files if f.exists() and f != Path(__file__)]


def test_no_file_states_another_minimum() -> None:
    stale = [
        f"{path.relative_to(ROOT)}: {m.group(0)!r}"
        for path in _stating_files()
        for m in _STATED.finditer(path.read_text())
        if _version(m.group(1) or m.group(2)) != MINIMUM
    ]
    assert not stale, f"the minimum is {MINIMUM[0]}.{MINIMUM[1]}: {stale}"


def test_the_test_clusters_are_at_least_the_minimum() -> None:
    assert _version(K8S_VERSION) >= MINIMUM
    assert _version(KIND_NODE_IMAGE.split(":", 1)[1]) >= MINIMUM
    assert "@sha256:" in KIND_NODE_IMAGE, "pin kind's node image by digest"
