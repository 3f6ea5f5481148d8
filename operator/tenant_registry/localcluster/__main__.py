"""`python -m tenant_registry.localcluster build [--node]|up|image`: build the binaries (the
control plane's, or the node's), run a cluster, or build the operator's image with podman."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from tenant_registry.localcluster.build import BuildError, ensure_binaries, ensure_node_binaries
from tenant_registry.localcluster.controlplane import ControlPlane, StartError
from tenant_registry.localcluster.image import ImageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenant_registry.localcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build (or find cached) binaries; print their dir")
    build.add_argument(
        "--node",
        action="store_true",
        help="kubelet and kube-scheduler (localcluster/node.py) instead of the control plane",
    )
    up = sub.add_parser("up", help="run a local control plane until interrupted")
    up.add_argument("--state-dir", type=Path)
    img = sub.add_parser("image", help="build the operator's image with podman; print its tag")
    img.add_argument("--tag", default=None)
    img.add_argument("--base", help="a base image instead of the local Debian one")
    img.add_argument(
        "--refresh-base",
        action="store_true",
        help="make the local Debian base again now, with Debian's latest packages",
    )
    img.add_argument(
        "--context-only",
        action="store_true",
        help="only stage the build context (for docker build); print its path",
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            print(ensure_node_binaries() if args.node else ensure_binaries())
            return 0
        if args.cmd == "image":
            return _image(
                args.tag, args.base, context_only=args.context_only, refresh=args.refresh_base
            )
        cp = ControlPlane(args.state_dir)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with cp:
            print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        return 0
    except (BuildError, StartError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _image(tag: str | None, base: str | None, *, context_only: bool, refresh: bool) -> int:
    from tenant_registry.localcluster import image

    if context_only:
        print(image.stage_context(image.ensure_wheels()))
        return 0
    built = image.build(tag=tag or image.IMAGE, base=base, quiet=False, refresh_base=refresh)
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in built.timings.items())
    print(f"{built.tag}: {built.id}, {built.size / 1e6:.0f} MB ({steps})", file=sys.stderr)
    print(built.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
