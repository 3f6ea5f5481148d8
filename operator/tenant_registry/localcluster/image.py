"""Build the operator's image with podman, hermetically, from pinned and hashed wheels.

Dev and test tooling: none of this is in the image. Three cached steps, each under a file lock
(as the control-plane build) so concurrent runs neither build twice nor see half a result:

- the base: Debian bookworm (minbase with python3 and python3-venv) made by mmdebstrap from
  Debian's packages and imported with `podman import`. The tarball stays in the cache, so a
  fresh podman storage re-imports it instead of building it again;
- the wheels pinned in requirements.lock, downloaded on the host, every hash checked by pip,
  cached by the lock's digest (inside a container the package index's TLS certificate does
  not verify on this kind of machine, and a build that fetches nothing is reproducible);
- the build context, `build/image/` (git-ignored): those wheels with the lock, and the
  project's own wheel, built from its sources without the dev tooling (`NOT_SHIPPED`), with
  a requirements file that pins it by hash.

`podman build --network=none` then shows that the build fetches nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tenant_registry.localcluster.build import cache_root

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"
CONTEXT = REPO / "build" / "image"
IMAGE = "localhost/tenant-registry-operator:dev"

# What the project's wheel in the image leaves out: the local control plane and its harness,
# and `make run`'s demo. Paths under operator/.
NOT_SHIPPED = ("tenant_registry/localcluster", "tenant_registry/demo.py")

# The Python of both bases (Debian bookworm's python3, and python:3.11-slim-bookworm): the
# wheels are downloaded for it, and requirements.lock is resolved with it.
PYTHON_VERSION = "3.11"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
# As Debian's slim images: no manuals, documentation or translations (copyright files stay).
BASE_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
BASE_IMAGE = f"localhost/tenant-registry-base:{BASE_SUITE}"
BASE_RECIPE_LABEL = "dev.tenancy.registry.base-recipe"

# This kind of machine: its cgroup v1/hybrid layout makes crun (podman's default runtime)
# refuse to start containers, and its default ulimits cannot be raised, which podman tries.
PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
TOOLS = ("podman", "runc", "mmdebstrap")  # installed by scripts/host-packages.sh

# Fixed times in the project's wheel and in the image (file times and its creation date): the
# same base, lock and sources give the same wheel bytes and the same image ID, and podman's
# layer cache is hit when nothing changed (1980-01-01, the earliest a zip file can say).
SOURCE_DATE_EPOCH = "315532800"


class ImageError(RuntimeError):
    """The image could not be built; the message says why and where the log is."""


@dataclass
class Built:
    """The built image, its size, and how long each step took (seconds)."""

    tag: str
    size: int
    timings: dict[str, float] = field(default_factory=dict)


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def build(*, tag: str = IMAGE, base: str | None = None, quiet: bool = True) -> Built:
    """Build the image (podman's layer cache makes an unchanged rebuild quick)."""
    missing = [t for t in missing_tools() if base is None or t != "mmdebstrap"]
    if missing:
        raise ImageError(
            f"{', '.join(missing)} not installed: run scripts/host-packages.sh as root"
        )
    timings: dict[str, float] = {}
    with _timed(timings, "base"):
        base = base or ensure_base(quiet=quiet)
    with _timed(timings, "wheels"):
        wheels = ensure_wheels(quiet=quiet)
    with file_lock(CONTEXT.parent / ".image.lock"):  # one build per checkout at a time
        with _timed(timings, "context"):
            context = stage_context(wheels)
        with _timed(timings, "build"):
            _podman_build(context, base=base, tag=tag, quiet=quiet)
    return Built(tag=tag, size=image_size(tag), timings=timings)


def image_size(tag: str) -> int:
    out = _podman("image", "inspect", "--format", "{{.Size}}", tag).stdout
    return int(out.strip())


# -- the base ------------------------------------------------------------------------------
def base_recipe() -> str:
    """A digest of what the base is made of: a new recipe means a new base."""
    recipe = [BASE_SUITE, "minbase", *BASE_PACKAGES, *BASE_DPKG_OPTIONS]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def ensure_base(*, quiet: bool = True) -> str:
    """The local base image's tag: imported from the cached tarball, built first if needed."""
    recipe = base_recipe()
    if _base_label() == recipe:
        return BASE_IMAGE
    cache = cache_root() / "image"
    tarball = cache / f"base-{BASE_SUITE}-{recipe}.tar"
    with file_lock(cache / ".base.lock"):
        if _base_label() == recipe:
            return BASE_IMAGE
        if not tarball.exists():
            _mmdebstrap(tarball, quiet=quiet)
        _podman(
            "import",
            "--change",
            f"LABEL={BASE_RECIPE_LABEL}={recipe}",
            "--change",
            "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--message",
            f"mmdebstrap --variant=minbase --include={','.join(BASE_PACKAGES)} {BASE_SUITE}",
            str(tarball),
            BASE_IMAGE,
        )
    return BASE_IMAGE


def _base_label() -> str | None:
    proc = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", "{{json .Labels}}", BASE_IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout.strip() or "null") or {}
    return labels.get(BASE_RECIPE_LABEL)


def _mmdebstrap(tarball: Path, *, quiet: bool) -> None:
    log = tarball.parent / "base-build.log"
    if not quiet:
        print(
            f"building the base image with mmdebstrap (first time only, about a minute; "
            f"log: {log})",
            file=sys.stderr,
            flush=True,
        )
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=tarball.parent))
    try:
        # No mirror given: mmdebstrap uses Debian's, with the suite's updates and security.
        _run_logged(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                *(f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTIONS),
                BASE_SUITE,
                str(staging / "base.tar"),
            ],
            log,
            what="building the base image",
        )
        (staging / "base.tar").rename(tarball)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- the wheels ----------------------------------------------------------------------------
def ensure_wheels(*, quiet: bool = True) -> Path:
    """A directory with every wheel of requirements.lock, hashes checked by pip."""
    _check_lock_python()
    digest = hashlib.sha256(LOCK.read_bytes() + PYTHON_VERSION.encode()).hexdigest()[:16]
    dest = cache_root() / "image" / "wheels" / digest
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".download.lock"):
        if (dest / ".complete").exists():
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            _run_logged(
                [
                    sys.executable,
                    *("-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"),
                    # Wheels only, for the image's Python whatever runs this: nothing is
                    # built from source, and the host's Python version does not leak in.
                    *("--only-binary=:all:", "--implementation=cp"),
                    f"--python-version={PYTHON_VERSION}",
                    *("--dest", str(staging), "--requirement", str(LOCK)),
                ],
                dest.parent / "download.log",
                what="downloading the locked wheels",
            )
            (staging / ".complete").touch()
            staging.chmod(0o755)  # mkdtemp makes it private
            if dest.exists():  # an incomplete leftover
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _check_lock_python() -> None:
    header = LOCK.read_text().splitlines()[:5]
    if not any(f"with Python {PYTHON_VERSION}" in line for line in header):
        raise ImageError(
            f"{LOCK.name} was not resolved with Python {PYTHON_VERSION}, the image's: run "
            f"`make lock` with a Python {PYTHON_VERSION} venv"
        )


# -- the build context ---------------------------------------------------------------------
def stage_context(wheels: Path, context: Path = CONTEXT) -> Path:
    """The build context: `wheels/` and `requirements.lock` (the locked dependencies),
    `project/` and `requirements.txt` (the project's wheel, by its hash). Two steps, so a
    change of the sources alone leaves the dependencies' layer in podman's cache."""
    if context.exists():
        shutil.rmtree(context)
    (context / "wheels").mkdir(parents=True)
    for wheel in sorted(wheels.glob("*.whl")):
        target = context / "wheels" / wheel.name
        try:
            os.link(wheel, target)
        except OSError:  # another file system
            shutil.copy2(wheel, target)
    shutil.copy2(LOCK, context / "requirements.lock")
    (context / "project").mkdir()
    own = _project_wheel(context / "project")
    digest = hashlib.sha256(own.read_bytes()).hexdigest()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (context / "requirements.txt").write_text(
        f"{project['name']}=={project['version']} \\\n    --hash=sha256:{digest}\n"
    )
    return context


def _project_wheel(dest: Path) -> Path:
    """`pip wheel --no-deps` of the project's sources without NOT_SHIPPED."""
    with tempfile.TemporaryDirectory(prefix="tro-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        skipped = {REPO / "operator" / path for path in NOT_SHIPPED}
        shutil.copytree(
            REPO / "operator",
            src / "operator",
            ignore=lambda d, names: [
                n for n in names if Path(d) / n in skipped or n in ("__pycache__", ".mypy_cache")
            ],
        )
        before = set(dest.iterdir())
        _run_logged(
            [
                sys.executable,
                *("-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest)),
                str(src),
            ],
            dest.parent.parent / "project-wheel.log",
            what="building the project's wheel",
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
        )
    (own,) = set(dest.iterdir()) - before
    return own


# -- the image -----------------------------------------------------------------------------
def _podman_build(context: Path, *, base: str, tag: str, quiet: bool) -> None:
    log = context.parent / "image-build.log"
    if not quiet:
        print(f"podman build -t {tag} (log: {log})", file=sys.stderr, flush=True)
    _run_logged(
        [
            *PODMAN,
            "build",
            "--pull=never",  # the base is local (or named by BASE for a registry's)
            "--network=none",  # hermetic: every input is in the context
            f"--timestamp={SOURCE_DATE_EPOCH}",
            *ULIMITS,
            *("--build-arg", f"BASE={base}"),
            *("--file", str(DOCKERFILE), "--tag", tag),
            str(context),
        ],
        log,
        what="podman build",
    )


# -- plumbing ------------------------------------------------------------------------------
def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"podman {' '.join(args[:2])}: {proc.stderr.strip()}")
    return proc


def _run_logged(cmd: list[str], log: Path, *, what: str, env: dict[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ImageError(f"{what} failed (exit {proc.returncode}); log: {log}\n{tail}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive file lock: a concurrent run waits here, then finds the work done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[step] = round(time.monotonic() - started, 2)
