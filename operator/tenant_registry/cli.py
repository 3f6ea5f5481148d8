"""`tenant-registry`: run the operator; `explain` which registry key serves an image."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any, cast

from tenant_registry import names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenant-registry")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--namespace",
        default=os.environ.get("OPERATOR_NAMESPACE", names.DEFAULT_OPERATOR_NAMESPACE),
        help="the operator's namespace (credential Secrets and Events live here)",
    )
    run.add_argument("--kubeconfig", help="default: in-cluster, then $KUBECONFIG")
    run.add_argument(
        "--concurrency", type=int, default=16, help="API requests in flight at once (default 16)"
    )
    run.add_argument(
        "--resync",
        type=float,
        default=300.0,
        help="seconds between full re-plans from the in-memory view (default 300)",
    )
    run.add_argument(
        "--relist",
        type=float,
        default=900.0,
        help="seconds between authoritative re-lists that repair the in-memory view "
        "(default 900; 0 disables)",
    )
    run.add_argument(
        "--conflict-recheck",
        type=float,
        default=30.0,
        help="seconds between re-reads of unmanaged Secrets blocking a copy",
    )
    run.add_argument("--health-port", type=int, default=8080, help="0 disables /healthz")
    run.add_argument("--metrics-port", type=int, default=9090, help="0 disables /metrics")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--verbose", action="store_true")

    explain = sub.add_parser("explain", help="which registry keys the kubelet uses for an image")
    explain.add_argument("image")
    explain.add_argument("servers", nargs="+", help="registry keys (spec.registries[].server)")
    args = parser.parse_args(argv)

    if args.cmd == "explain":
        from tenant_registry.registrykeys import keys_for

        hits = keys_for(args.servers, args.image)
        print("\n".join(hits) if hits else "no key matches: the kubelet pulls anonymously")
        return 0 if hits else 1
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from tenant_registry import handlers, metrics
    from tenant_registry.cluster import Cluster
    from tenant_registry.reconcile import Settings

    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # for Kopf's own login
    try:
        handlers.CLUSTER = Cluster.connect(
            os.environ.get("KUBECONFIG"), pool_size=args.concurrency + 8
        )
    except Exception as e:  # a missing or broken kubeconfig: one line, no stack trace
        print(f"tenant-registry: cannot load cluster credentials: {e}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("tenant_registry").setLevel(logging.INFO)
    if not args.verbose:
        # Quiet at steady state: one line per action of ours, not per Kopf handler or probe.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    handlers.SETTINGS = Settings(
        operator_namespace=args.namespace,
        concurrency=args.concurrency,
        resync_seconds=args.resync,
        relist_seconds=args.relist,
        conflict_recheck_seconds=args.conflict_recheck,
    )
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=liveness,
        identity=cast(Any, identity()),  # kopf's Identity is a NewType of str, not exported
    )
    return 0


def identity() -> str:
    """Who this process is, for Kopf and the logs: the Pod's name, else host and PID.

    Explicit because Kopf would otherwise ask getpass.getuser(), which fails for a UID without
    a passwd entry: the image runs as 65532 and the kubelet writes no passwd file."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


if __name__ == "__main__":
    sys.exit(main())
