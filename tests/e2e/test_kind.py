"""kind end-to-end: build the image, load it into kind, install crds/, deploy/ and examples/.

Runs where a Docker engine answers; elsewhere every test here is skipped with the reason.
The kind release and its node image are pinned (pytest-kind's defaults are too old for the
admission policy); `--kind-image` (pytest-kind's option) runs the same test on another node
image, e.g. the minimum Kubernetes version the README states.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# kind v0.33.0's release notes, "Images pre-built for this release": the digest selects the
# build made for this kind release (a bare tag may point at a build for another one).
# Kubernetes 1.37, the minor the local control plane runs (versions.py); at least the README's
# minimum (tests/unit/test_minimum_kubernetes.py checks both).
KIND_VERSION = "v0.33.0"
KIND_NODE_IMAGE = (
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
)
KIND_CLUSTER = "tro-e2e"


def _docker_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "no Docker engine answers `docker info` (kind needs one)"
    return None


_REASON = _docker_reason()
pytestmark = [
    pytest.mark.kind,
    pytest.mark.skipif(_REASON is not None, reason=f"kind e2e skipped: {_REASON}"),
]

IMAGE = "tenant-registry-operator:e2e"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[object]:
    """pytest-kind's KindCluster with the pinned kind binary and node image (its own
    `kind_cluster` fixture takes kind's version from an environment variable read at import),
    and the kubectl the rest of the suite uses."""
    from pytest_kind import KindCluster

    from tenant_registry.localcluster import ensure_binaries

    kind_bin = request.config.getoption("kind_bin")
    kind = KindCluster(
        KIND_CLUSTER,
        image=request.config.getoption("kind_image") or KIND_NODE_IMAGE,
        kind_path=Path(kind_bin)
        if kind_bin
        else Path(".pytest-kind") / KIND_CLUSTER / f"kind-{KIND_VERSION}",
        kubectl_path=ensure_binaries() / "kubectl",
    )
    url = os.environ.get(
        "KIND_DOWNLOAD_URL",
        f"https://github.com/kubernetes-sigs/kind/releases/download/{KIND_VERSION}/kind-linux-amd64",
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KIND_DOWNLOAD_URL", url)  # read by KindCluster.ensure_kind()
        kind.create()
    try:
        from tenant_registry.localcluster import image

        # The same hermetic build as `make image`, on Docker's default base (python:3.11-slim).
        context = image.stage_context(image.ensure_wheels())
        subprocess.run(
            ["docker", "build", "-f", str(image.DOCKERFILE), "-t", IMAGE, str(context)],
            check=True,
        )
        kind.load_docker_image(IMAGE)
        yield kind
    finally:
        if not request.config.getoption("keep_cluster"):
            kind.delete()


def test_install_and_onboard_a_tenant(cluster) -> None:  # type: ignore[no-untyped-def]
    import pykube

    # README "Install": the CRDs first, served before anything uses them, then the operator.
    cluster.kubectl("apply", "-k", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "customresourcedefinition/tenantregistries.registry.tenancy.dev",
    )
    cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    cluster.kubectl(
        "-n",
        "tenant-registry-system",
        "set",
        "image",
        "deployment/tenant-registry-operator",
        f"operator={IMAGE}",
    )
    cluster.kubectl(
        "-n",
        "tenant-registry-system",
        "rollout",
        "status",
        "deployment/tenant-registry-operator",
        "--timeout=180s",
    )
    cluster.kubectl("apply", "-f", str(ROOT / "examples"))
    api = cluster.api
    from tests.waiting import wait_for

    wait_for(
        lambda: pykube.Secret.objects(api, namespace="acme-web").get_or_none(name="acme-pull"),
        what="the copy in acme-web",
        timeout=120,
    )
    wait_for(
        lambda: any(
            p.get("name") == "acme-pull"
            for p in pykube.ServiceAccount.objects(api, namespace="acme-web")
            .get(name="default")
            .obj.get("imagePullSecrets")
            or []
        ),
        what="the patched default ServiceAccount",
        timeout=60,
    )
