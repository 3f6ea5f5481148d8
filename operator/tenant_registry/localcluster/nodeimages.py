"""The node's own small images, built here with gcc and podman (no registry, no base image).

- `PAUSE`: the sandbox ("pause") image containerd starts for every Pod: a static C binary that
  sleeps until SIGTERM/SIGINT and reaps children, `FROM scratch`.
- `APP`: a test workload: prints `hello from ARG` to stdout (the kubelet's pod log), then
  sleeps until SIGTERM. Pushed to the test registries under any repository name.

Each image is labelled with a digest of its recipe; it is rebuilt only when that changes.
`save()` writes an OCI archive for `ctr images import`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tenant_registry.localcluster.image import PODMAN, ULIMITS, ImageError, source_date_epoch

RECIPE_LABEL = "dev.tenancy.registry.node-image-recipe"

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, die); signal(SIGTERM, die); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""

APP_C = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
int main(int argc, char **argv) {
  signal(SIGTERM, die); signal(SIGINT, die);
  printf("hello from %s\n", argc > 1 ? argv[1] : "app");
  fflush(stdout);
  for (;;) pause();
}
"""


@dataclass(frozen=True)
class NodeImage:
    tag: str
    source: str
    binary: str  # its path in the image, the entrypoint

    def recipe(self) -> str:
        return hashlib.sha256(f"{self.tag}\n{self.binary}\n{self.source}".encode()).hexdigest()[:16]


PAUSE = NodeImage("localhost/tro-node/pause:3.10", PAUSE_C, "/pause")
APP = NodeImage("localhost/tro-node/app:v1", APP_C, "/app")


def ensure(image: NodeImage) -> str:
    """The image's tag, built first if podman's storage lacks this recipe."""
    if _label(image.tag) == image.recipe():
        return image.tag
    if shutil.which("gcc") is None:
        raise ImageError("gcc not found: install gcc and libc6-dev (scripts/host-packages.sh)")
    with tempfile.TemporaryDirectory(prefix="tro-node-image-") as tmp:
        ctx = Path(tmp)
        (ctx / "main.c").write_text(image.source)
        name = image.binary.lstrip("/")
        cc = subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(ctx / name), str(ctx / "main.c")],
            capture_output=True,
            text=True,
            check=False,
        )
        if cc.returncode != 0:
            raise ImageError(f"gcc -static (is libc6-dev installed?): {cc.stderr.strip()}")
        (ctx / "Containerfile").write_text(
            f'FROM scratch\nCOPY {name} /{name}\nENTRYPOINT ["/{name}"]\n'
        )
        proc = subprocess.run(
            [
                *PODMAN,
                "build",
                "--quiet",
                "--network=none",
                f"--timestamp={source_date_epoch()}",
                *ULIMITS,
                "--label",
                f"{RECIPE_LABEL}={image.recipe()}",
                *("--tag", image.tag, str(ctx)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImageError(f"podman build {image.tag}: {proc.stderr.strip()[-2000:]}")
    return image.tag


def save(tag: str, archive: Path) -> Path:
    """An OCI archive of a podman image, named `tag` inside (for `ctr images import`)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    proc = subprocess.run(
        [*PODMAN, "save", "--quiet", "--format", "oci-archive", "--output", str(archive), tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(f"podman save {tag}: {proc.stderr.strip()[-2000:]}")
    return archive


def _label(tag: str) -> str | None:
    proc = subprocess.run(
        [*PODMAN, "image", "inspect", "--format", f'{{{{index .Labels "{RECIPE_LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None
