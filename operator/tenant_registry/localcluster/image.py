"""Build the operator's image with podman, hermetically, from pinned and hashed wheels.

Dev and test tooling: none of this is in the image. Cached steps, each under a file lock
(as the control-plane build) so concurrent runs neither build twice nor see half a result:

- the base: Debian bookworm (minbase with python3 and python3-venv) made by mmdebstrap from
  Debian's packages and imported with `podman import`. The tarball stays in the cache for the
  calendar month (UTC) it was made in, so a fresh podman storage re-imports it instead of
  building it again, and the next month's build picks up Debian's (security) updates;
- the wheels pinned in requirements.lock, for linux/amd64 and linux/arm64, downloaded on the
  host, every hash checked by pip, cached by the lock's digest (inside a container the package
  index's TLS certificate does not verify on this kind of machine, and a build that fetches
  nothing is reproducible);
- the build backend pinned in build-requirements.lock (setuptools, hashed), in a venv of its
  own, so the project's wheel is built without pip's build isolation fetching an unpinned one;
- the build context, `build/image/` (git-ignored): those wheels with the lock, and the
  project's own wheel, built from its sources without the dev tooling (`NOT_SHIPPED`), with
  a requirements file that pins it by hash.

`podman build --network=none` then shows that the build fetches nothing. podman's storage is
the machine's (per user), shared by every checkout: builds take one machine-wide lock, and the
tests run the image by its ID under a tag of their checkout's own.
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
BUILD_LOCK = REPO / "build-requirements.lock"  # the build backend, for the project's wheel
CONTEXT = REPO / "build" / "image"
IMAGE = "localhost/tenant-registry-operator:dev"  # `make image`'s, for users to push

# What the project's wheel in the image leaves out: the local control plane and its harness,
# and `make run`'s demo. Paths under operator/.
NOT_SHIPPED = ("tenant_registry/localcluster", "tenant_registry/demo.py")

# The Python of both bases (Debian bookworm's python3, and python:3.11-slim-bookworm): the
# wheels are downloaded for it, and requirements.lock is resolved with it.
PYTHON_VERSION = "3.11"
# The wheels' platforms: the image builds for linux/amd64 and linux/arm64 (`docker build
# --platform`). Bookworm's glibc is 2.36, so any manylinux tag up to that fits.
ARCHES = ("x86_64", "aarch64")


def wheel_platforms(arch: str) -> list[str]:
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [
        f"manylinux2014_{arch}"
    ]


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
BASE_REPOSITORY = "localhost/tenant-registry-base"
BASE_RECIPE_LABEL = "dev.tenancy.registry.base-recipe"

# This kind of machine: its cgroup v1/hybrid layout makes crun (podman's default runtime)
# refuse to start containers, and its default ulimits cannot be raised, which podman tries.
PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
TOOLS = ("podman", "runc", "mmdebstrap")  # installed by scripts/host-packages.sh


def source_date_epoch() -> str:
    """The time in the project's wheel and in the image (file times, its creation date):
    $SOURCE_DATE_EPOCH if set, else the last commit's time, else the newest source file's. One
    commit (with one base and one lock) gives the same wheel bytes and the same image ID; and
    a new image is dated when its sources are, not 1980, which age-based pruning and retention
    of registries and podman would take for ancient."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    proc = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0 and proc.stdout.strip().isdigit():
        return proc.stdout.strip()
    sources = [REPO / "pyproject.toml", DOCKERFILE, LOCK, *(REPO / "operator").rglob("*.py")]
    return str(int(max(p.stat().st_mtime for p in sources if p.exists())))


class ImageError(RuntimeError):
    """The image could not be built; the message says why and where the log is."""


@dataclass
class Built:
    """The built image: its tag, its ID (run this: a tag can move), its size, its date (the
    SOURCE_DATE_EPOCH it was built with), and how long each step took (seconds)."""

    tag: str
    id: str
    size: int
    epoch: str
    timings: dict[str, float] = field(default_factory=dict)


def checkout_tag(repo: Path = REPO) -> str:
    """A tag of this checkout's own (the tests'): podman's storage is shared by every
    checkout on the machine, so `IMAGE` is whichever checkout built last."""
    return f"{IMAGE}-{hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:10]}"


def podman_lock() -> Path:
    """One lock for every podman build of this user on the machine (a podman storage is per
    user): a build and its tagging are not interleaved with another checkout's."""
    return Path(tempfile.gettempdir()) / f"tenant-registry-operator-podman-{os.getuid()}.lock"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def build(
    *, tag: str = IMAGE, base: str | None = None, quiet: bool = True, refresh_base: bool = False
) -> Built:
    """Build the image (podman's layer cache makes an unchanged rebuild quick)."""
    missing = [t for t in missing_tools() if base is None or t != "mmdebstrap"]
    if missing:
        raise ImageError(
            f"{', '.join(missing)} not installed: run scripts/host-packages.sh as root"
        )
    timings: dict[str, float] = {}
    epoch = source_date_epoch()
    with _timed(timings, "base"):
        base = base or ensure_base(quiet=quiet, refresh=refresh_base)
    with _timed(timings, "wheels"):
        wheels = ensure_wheels(quiet=quiet)
    with file_lock(CONTEXT.parent / ".image.lock"):  # the context: one build per checkout
        with _timed(timings, "context"):
            context = stage_context(wheels, epoch=epoch)
        with file_lock(podman_lock()), _timed(timings, "build"):
            image_id = _podman_build(context, base=base, tag=tag, epoch=epoch, quiet=quiet)
    return Built(tag=tag, id=image_id, size=image_size(image_id), epoch=epoch, timings=timings)


def image_size(image: str) -> int:
    out = _podman("image", "inspect", "--format", "{{.Size}}", image).stdout
    return int(out.strip())


# -- the base ------------------------------------------------------------------------------
def base_recipe() -> str:
    """A digest of what the base is made of: a new recipe means a new base."""
    recipe = [BASE_SUITE, "minbase", *BASE_PACKAGES, *BASE_DPKG_OPTIONS]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def base_period() -> str:
    """The base's cache period, the calendar month (UTC): a base is made again each month
    (1.5-2 minutes, once), with the Debian updates published since. `make image-base-refresh`
    makes it again at once."""
    return time.strftime("%Y-%m", time.gmtime())


def base_image() -> str:
    """The local base's tag: one per recipe and period, so checkouts with other recipes, or a
    build of last month's, never move it under a running build."""
    return f"{BASE_REPOSITORY}:{BASE_SUITE}-{base_recipe()}-{base_period()}"


def ensure_base(*, quiet: bool = True, refresh: bool = False) -> str:
    """The local base image's tag: imported from the cached tarball, built first if needed
    (or if `refresh`: Debian's packages again, now)."""
    recipe, period = base_recipe(), base_period()
    tag = base_image()
    if not refresh and _base_label(tag) == f"{recipe}-{period}":
        return tag
    cache = cache_root() / "image"
    tarball = cache / f"base-{BASE_SUITE}-{recipe}-{period}.tar"
    with file_lock(cache / ".base.lock"):
        if not refresh and _base_label(tag) == f"{recipe}-{period}":
            return tag
        if refresh or not tarball.exists():
            _mmdebstrap(tarball, quiet=quiet)
        # Earlier months' tarballs of this recipe are stale (other recipes: other checkouts').
        for old in cache.glob(f"base-{BASE_SUITE}-{recipe}-*.tar"):
            if old != tarball:
                old.unlink(missing_ok=True)
        with file_lock(podman_lock()):
            _podman(
                "import",
                "--change",
                f"LABEL={BASE_RECIPE_LABEL}={recipe}-{period}",
                "--change",
                "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--message",
                f"mmdebstrap --variant=minbase --include={','.join(BASE_PACKAGES)} "
                f"{BASE_SUITE} ({period})",
                str(tarball),
                tag,
            )
    return tag


def _base_label(tag: str) -> str | None:
    proc = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", "{{json .Labels}}", tag],
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
    """A directory with every wheel of requirements.lock for each of ARCHES (a pure-Python
    wheel serves all), hashes checked by pip."""
    _check_lock_python()
    key = LOCK.read_bytes() + json.dumps([PYTHON_VERSION, *ARCHES]).encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    dest = cache_root() / "image" / "wheels" / digest
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".download.lock"):
        if (dest / ".complete").exists():
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            for arch in ARCHES:
                _run_logged(
                    [
                        sys.executable,
                        *("-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"),
                        # Wheels only, for the image's Python and platforms whatever runs
                        # this: nothing is built from source, and the host does not leak in.
                        *("--only-binary=:all:", "--implementation=cp"),
                        f"--python-version={PYTHON_VERSION}",
                        *(f"--platform={p}" for p in wheel_platforms(arch)),
                        *("--dest", str(staging), "--requirement", str(LOCK)),
                    ],
                    dest.parent / f"download-{arch}.log",
                    what=f"downloading the locked wheels for {arch}",
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


# -- the build backend ---------------------------------------------------------------------
def ensure_build_backend() -> Path:
    """A venv with build-requirements.lock installed (hashes checked, nothing else), cached
    by the lock's digest and the host's Python: what builds the project's wheel."""
    key = BUILD_LOCK.read_bytes() + sys.version.encode()
    dest = cache_root() / "image" / "build-backend" / hashlib.sha256(key).hexdigest()[:16]
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".install.lock"):
        if (dest / ".complete").exists():
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        log = dest.parent / "install.log"
        _run_logged([sys.executable, "-m", "venv", str(dest)], log, what="making its venv")
        _run_logged(
            [
                str(dest / "bin" / "python"),
                *("-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes"),
                *("--only-binary=:all:", "--requirement", str(BUILD_LOCK)),
            ],
            log,
            what="installing the locked build backend",
        )
        (dest / ".complete").touch()
    return dest


# -- the build context ---------------------------------------------------------------------
def stage_context(wheels: Path, context: Path = CONTEXT, *, epoch: str = "") -> Path:
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
    own = _project_wheel(context / "project", epoch or source_date_epoch())
    digest = hashlib.sha256(own.read_bytes()).hexdigest()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (context / "requirements.txt").write_text(
        f"{project['name']}=={project['version']} \\\n    --hash=sha256:{digest}\n"
    )
    return context


def _project_wheel(dest: Path, epoch: str) -> Path:
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
                str(ensure_build_backend() / "bin" / "python"),
                *("-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"),
                # The locked setuptools of that venv, not one pip would fetch to build in.
                *("--no-build-isolation", "--check-build-dependencies"),
                *("--wheel-dir", str(dest), str(src)),
            ],
            dest.parent.parent / "project-wheel.log",
            what="building the project's wheel",
            env={**os.environ, "SOURCE_DATE_EPOCH": epoch},
        )
    (own,) = set(dest.iterdir()) - before
    return own


# -- the image -----------------------------------------------------------------------------
def _podman_build(context: Path, *, base: str, tag: str, epoch: str, quiet: bool) -> str:
    """Build and tag; the image's ID."""
    log = context.parent / "image-build.log"
    iidfile = context.parent / "image-id"
    iidfile.unlink(missing_ok=True)
    if not quiet:
        print(f"podman build -t {tag} (log: {log})", file=sys.stderr, flush=True)
    _run_logged(
        [
            *PODMAN,
            "build",
            f"--iidfile={iidfile}",
            "--pull=never",  # the base is local (or named by BASE for a registry's)
            "--network=none",  # hermetic: every input is in the context
            f"--timestamp={epoch}",
            *ULIMITS,
            *("--build-arg", f"BASE={base}"),
            *("--file", str(DOCKERFILE), "--tag", tag),
            str(context),
        ],
        log,
        what="podman build",
    )
    return iidfile.read_text().strip()


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
