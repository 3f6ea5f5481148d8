"""The image, built here with podman, runs as deploy/deployment.yaml runs the Pod, and works.

The container gets what the kubelet would give it (tenant_registry.localcluster.pod): the
Deployment's user and group, a read-only root, no capabilities, no privilege escalation, its
emptyDir as the only writable place, its env and args, the ServiceAccount token where the
kubelet mounts it, no passwd entry. Given that, it logs in in-cluster, onboards a tenant and
stops on SIGTERM. It has its own control plane: the session's may have the process operator
running, and two operators on one cluster would fight.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykube
import pytest
import yaml

from tenant_registry.localcluster import image as image_mod
from tenant_registry.localcluster import pod as pod_mod
from tenant_registry.localcluster.harness import install
from tests.cluster.tenants import Cluster
from tests.planes import own_control_plane

ROOT = Path(__file__).resolve().parents[2]
_MISSING = image_mod.missing_tools()

pytestmark = [
    pytest.mark.image,
    pytest.mark.cluster,
    pytest.mark.timeout(900),  # a first build: the base (1-2 min), the wheels, the image
]
# In CI the packages are there (make test runs scripts/host-packages.sh as root): a missing
# tool fails the tests there instead.
if _MISSING and not os.environ.get("CI"):
    pytest.skip(
        f"image tests skipped: {', '.join(_MISSING)} not installed "
        "(scripts/host-packages.sh installs them as root; make test runs it)",
        allow_module_level=True,
    )


def _deployment() -> dict[str, Any]:
    return next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "deployment.yaml").read_text())
        if d and d.get("kind") == "Deployment"
    )


DEPLOYMENT = _deployment()
POD_SPEC = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = pod_mod.container_of(DEPLOYMENT)
NAMESPACE = DEPLOYMENT["metadata"]["namespace"]
SERVICE_ACCOUNT = POD_SPEC["serviceAccountName"]
SECURITY = {
    **(POD_SPEC.get("securityContext") or {}),
    **(CONTAINER.get("securityContext") or {}),
}
UID, GID = int(SECURITY["runAsUser"]), int(SECURITY["runAsGroup"])


@pytest.fixture(scope="module")
def built(measured: dict[str, str]) -> image_mod.Built:
    # This checkout's tag, and every run by the ID: podman's storage is the machine's, and
    # another checkout's build may move any tag at any time.
    built = image_mod.build(tag=image_mod.checkout_tag())
    measured["size"] = f"{built.size / 1e6:.0f} MB"
    measured.update({step: f"{s:.1f} s" for step, s in built.timings.items()})
    return built


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_control_plane("control plane (and the container's log)") as cp:
        install(cp)
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(cp.kubeconfig)))
        yield Cluster(api, cp)


@pytest.fixture(scope="module")
def pod(
    built: image_mod.Built, cluster: Cluster, measured: dict[str, str]
) -> Iterator[pod_mod.PodContainer]:
    cp = cluster.cp
    with pod_mod.host_ports_lock():
        container = pod_mod.PodContainer.for_deployment(
            DEPLOYMENT,
            image=built.id,
            state_dir=cp.dir,
            token=cp.token(NAMESPACE, SERVICE_ACCOUNT),
            ca=cp.ca_path.read_bytes(),
            api_port=cp.port,
        )
        container.start()
        try:
            measured["start → ready"] = f"{container.wait_ready():.1f} s"
            yield container
        finally:
            (cp.logs_dir / "pod.log").write_text(container.logs())
            container.remove()


def _in_image(tag: str, script: str) -> subprocess.CompletedProcess[str]:
    """Python in a throw-away container of the image, as the Deployment's user, no passwd."""
    return subprocess.run(
        [
            *image_mod.PODMAN,
            *("run", "--rm", "--network=none", "--passwd=false", "--read-only"),
            *image_mod.ULIMITS,
            *(f"--user={UID}:{GID}", "--entrypoint=python", tag, "-c", script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _locked_names() -> set[str]:
    text = image_mod.LOCK.read_text()
    return {_normal(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


INVENTORY = """
import importlib.metadata, importlib.util, json
print(json.dumps({
    "distributions": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "modules": {m: importlib.util.find_spec(m) is not None for m in (
        "tenant_registry.cli", "tenant_registry.localcluster", "tenant_registry.demo",
        "pip", "setuptools", "pytest", "pykube", "cryptography")},
}))
"""


def test_the_image_holds_the_operator_and_its_locked_dependencies_only(
    built: image_mod.Built,
) -> None:
    proc = _in_image(built.id, INVENTORY)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    names = {_normal(n) for n in found["distributions"]}
    assert names == _locked_names() | {"tenant-registry-operator"}
    assert found["modules"] == {
        "tenant_registry.cli": True,
        "tenant_registry.localcluster": False,  # the local control plane and its harness
        "tenant_registry.demo": False,  # make run
        "pip": False,
        "setuptools": False,
        "pytest": False,
        "pykube": False,
        "cryptography": False,
    }


def test_what_runs_is_the_image_built_here_whatever_its_tag_says(built: image_mod.Built) -> None:
    """Another checkout building meanwhile moves tags (`make image`'s is shared by all): the
    tests run the ID they built, so moving even this checkout's tag changes nothing."""
    assert built.tag == image_mod.checkout_tag() != image_mod.IMAGE
    moved = subprocess.run(
        [*image_mod.PODMAN, "tag", image_mod.base_image(), built.tag],
        capture_output=True,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr
    try:
        proc = _in_image(built.id, "import tenant_registry.cli; print('ours')")
        assert (proc.returncode, proc.stdout.strip()) == (0, "ours"), proc.stderr
    finally:
        subprocess.run([*image_mod.PODMAN, "tag", built.id, built.tag], check=True)


@pytest.mark.parametrize("arch", image_mod.ARCHES)
def test_the_build_context_installs_on_amd64_and_arm64(built: image_mod.Built, arch: str) -> None:
    """`make image-context && docker build --platform linux/arm64` finds every locked
    distribution among the context's wheels, hash-checked, as the Dockerfile's pip does."""
    context = image_mod.CONTEXT
    proc = subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--no-index"),
            *("--find-links", str(context / "wheels"), "--require-hashes"),
            *("--only-binary=:all:", "--implementation=cp"),
            f"--python-version={image_mod.PYTHON_VERSION}",
            *(f"--platform={p}" for p in image_mod.wheel_platforms(arch)),
            *("--target", str(context / f"dry-run-{arch}")),
            *("--requirement", str(context / "requirements.lock")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = {_normal(i["metadata"]["name"]) for i in json.loads(proc.stdout)["install"]}
    assert installed == _locked_names()


def test_the_project_wheel_is_built_by_the_locked_setuptools(built: image_mod.Built) -> None:
    (wheel,) = (image_mod.CONTEXT / "project").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        generator = re.search(r"^Generator: (.*)$", z.read(meta).decode(), re.M)
    locked = re.search(r"^setuptools==(\S+)", image_mod.BUILD_LOCK.read_text(), re.M)
    assert generator and locked
    assert generator.group(1) == f"setuptools ({locked.group(1)})"


YEAR_1990 = 631152000


def test_the_image_is_dated_by_a_commit_not_1980(built: image_mod.Built) -> None:
    """Reproducible (one commit, one date) and recent, so age-based pruning and retention keep
    it: the last commit's time when it was built. (podman's layer cache reuses an image whose
    content did not change, with the date of its first build: the commit of that build.)"""
    created = subprocess.run(
        [*image_mod.PODMAN, "image", "inspect", "--format", "{{.Created.Unix}}", built.id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert YEAR_1990 < int(created) <= int(built.epoch)  # it was 1980-01-01 (315532800)
    (wheel,) = (image_mod.CONTEXT / "project").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        stamped = {i.date_time for i in z.infolist()}
    assert len(stamped) == 1, stamped  # one time in the wheel too: SOURCE_DATE_EPOCH's
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return  # the builder chose the date
    commits = subprocess.run(
        ["git", "-C", str(ROOT), "log", "--format=%ct"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert built.epoch == commits[0], "a commit since the build? build again"
    assert created in commits


def test_the_deployments_user_has_no_passwd_entry_in_the_image(built: image_mod.Built) -> None:
    """What made Kopf crash at start (getpass.getuser()) is so in this image: no entry."""
    proc = _in_image(
        built.id,
        "import getpass, json, os, pwd\n"
        "try:\n    getpass.getuser(); user = 'found'\n"
        "except (KeyError, OSError) as e:\n    user = repr(e)\n"
        "print(json.dumps({'user': user, 'home': os.environ.get('HOME'),"
        " 'expanduser': os.path.expanduser('~'),"
        f" 'listed': any(p.pw_uid == {UID} for p in pwd.getpwall())}}))",
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["user"] == f"KeyError('getpwuid(): uid not found: {UID}')"
    assert found["listed"] is False
    assert found["home"] == found["expanduser"] == "/"


def test_the_operator_starts_without_a_passwd_entry(pod: pod_mod.PodContainer) -> None:
    assert pod.running()
    logs = pod.logs()
    assert "getpwuid" not in logs and "Traceback" not in logs, logs[-3000:]
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        url = pod_mod.probe_url(CONTAINER, kind)
        assert url is None or pod_mod.probe_ok(url), f"{kind} {url} fails"


PROCESS = """
import json, os, sys
status = dict(line.split(":\\t", 1) for line in open("/proc/1/status").read().splitlines())
writable = []
for top in os.listdir("/"):
    if top in ("proc", "sys", "dev"):
        continue
    for d, dirs, files in os.walk("/" + top):
        writable += [p for p in [d, *(os.path.join(d, f) for f in files)]
                     if os.access(p, os.W_OK, follow_symlinks=False)]
tmp = os.statvfs("/tmp")
print(json.dumps({
    "uid": status["Uid"].split(), "gid": status["Gid"].split(),
    "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "writable": sorted(writable), "tmp_bytes": tmp.f_blocks * tmp.f_frsize,
    "cmdline": open("/proc/1/cmdline").read().split("\\0")[:-1],
    "env": dict(v.split("=", 1) for v in open("/proc/1/environ").read().split("\\0") if v),
    "serviceaccount": sorted(os.listdir(sys.argv[1])),
    "hostname": os.uname().nodename,
}))
"""


def test_the_container_runs_as_the_deployment_says(pod: pod_mod.PodContainer) -> None:
    proc = pod.exec("python", "-c", PROCESS, pod_mod.SERVICEACCOUNT_DIR)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["uid"] == [str(UID)] * 4 and found["gid"] == [str(GID)] * 4
    if "ALL" in SECURITY["capabilities"]["drop"] and not SECURITY["capabilities"].get("add"):
        assert found["caps"] == dict.fromkeys(found["caps"], 0)
    assert found["no_new_privs"] == ("1" if SECURITY["allowPrivilegeEscalation"] is False else "0")
    assert found["seccomp"] == "2"  # a filter: the runtime's default profile

    # With a read-only root, the emptyDir volumes are the only writable places, sized.
    volumes = {v["name"]: v for v in POD_SPEC["volumes"]}
    scratch = {m["mountPath"]: volumes[m["name"]] for m in CONTAINER["volumeMounts"]}
    assert SECURITY["readOnlyRootFilesystem"] is True
    assert {p for p in found["writable"] if not any(p.startswith(s) for s in scratch)} == set()
    assert set(scratch) <= set(found["writable"])
    if "/tmp" in scratch:
        assert found["tmp_bytes"] == pod_mod.quantity_bytes(
            scratch["/tmp"]["emptyDir"]["sizeLimit"]
        )

    # Env and args as the kubelet resolves and expands them; Pod facts from fieldRef.
    env = found["env"]
    for var in CONTAINER.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        if ref == "metadata.namespace":
            assert env[var["name"]] == NAMESPACE
        elif ref == "metadata.name":
            assert env[var["name"]] == found["hostname"]
        else:
            assert var["name"] in env
    assert "KUBECONFIG" not in env  # the in-cluster login, nothing else
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    expected = [pod_mod.expand(a, env) for a in CONTAINER.get("args") or []]
    assert found["cmdline"][len(found["cmdline"]) - len(expected) :] == expected
    assert not any("$(" in a for a in expected), expected
    assert found["serviceaccount"] == ["ca.crt", "namespace", "token"]


def test_it_logs_in_as_its_serviceaccount_and_onboards_a_tenant(
    pod: pod_mod.PodContainer, cluster: Cluster, unique: str
) -> None:
    name = f"img-{unique}"
    try:
        cluster.onboard(name, [f"{name}-a", f"{name}-b"])
    except AssertionError as e:
        raise AssertionError(f"{e}\ncontainer log:\n{pod.logs()[-3000:]}") from None
    assert cluster.copy(f"{name}-a", f"{name}-pull") is not None
    user = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
    writes = {
        (e["verb"], e["objectRef"]["resource"], e["objectRef"].get("namespace"))
        for e in cluster.cp.audit_events()
        if (e.get("user") or {}).get("username") == user
    }
    for ns in (f"{name}-a", f"{name}-b"):
        assert ("create", "secrets", ns) in writes
        assert ("patch", "serviceaccounts", ns) in writes


def test_sigterm_stops_it_cleanly_within_seconds(
    pod: pod_mod.PodContainer, measured: dict[str, str]
) -> None:
    code, seconds = pod.terminate()
    measured["SIGTERM → exit"] = f"{seconds:.1f} s"
    assert code == 0, pod.logs()[-3000:]
    assert seconds < 10
