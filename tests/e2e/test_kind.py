"""kind end-to-end: build the image, load it into kind, install deploy/ and examples/.

Runs where a Docker engine answers; elsewhere every test here is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
def cluster(kind_cluster):  # type: ignore[no-untyped-def]
    from tenant_registry.localcluster import image

    # The same hermetic build as `make image`, on Docker's default base (python:3.11-slim).
    context = image.stage_context(image.ensure_wheels())
    subprocess.run(
        ["docker", "build", "-f", str(image.DOCKERFILE), "-t", IMAGE, str(context)], check=True
    )
    kind_cluster.load_docker_image(IMAGE)
    return kind_cluster


def test_install_and_onboard_a_tenant(cluster) -> None:  # type: ignore[no-untyped-def]
    import pykube

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
