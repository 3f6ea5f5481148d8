"""`python -m tenant_registry.localcluster build|up`: build the binaries, or run a cluster."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from tenant_registry.localcluster.build import BuildError, ensure_binaries
from tenant_registry.localcluster.controlplane import ControlPlane, StartError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenant_registry.localcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find cached) control-plane binaries; print the dir")
    up = sub.add_parser("up", help="run a local control plane until interrupted")
    up.add_argument("--state-dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            print(ensure_binaries())
            return 0
        cp = ControlPlane(args.state_dir)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with cp:
            print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        return 0
    except (BuildError, StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
