"""`tenant-registry`: run the operator; `explain` and `plan` (read-only: explain.py,
plan.py); `uninstall` what the operator wrote, when it is gone. Also installed as the kubectl
plugin `kubectl-treg` (`kubectl treg ...`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, cast

from tenant_registry import names

READ_ONLY_COMMANDS = ("explain", "plan")


def main(argv: list[str] | None = None, prog: str = "tenant-registry") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in READ_ONLY_COMMANDS:
        # Their own parsers: every error one line, exit 2 (session.py).
        if argv[0] == "explain":
            from tenant_registry.explain import main as read_only
        else:
            from tenant_registry.plan import main as read_only
        return read_only(argv[1:], prog=f"{prog} {argv[0]}")
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--namespace",
        default=os.environ.get("OPERATOR_NAMESPACE", names.DEFAULT_OPERATOR_NAMESPACE),
        help="the operator's namespace (credential Secrets and Events live here)",
    )
    run.add_argument("--kubeconfig", help="default: in-cluster, then $KUBECONFIG")
    run.add_argument(
        "--concurrency",
        type=_at_least_one,
        default=16,
        help="API requests in flight at once (default 16)",
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
        help="seconds between re-reads of unmanaged Secrets blocking a copy (one found "
        "unchanged: twice the interval before, up to 300)",
    )
    run.add_argument(
        "--rename-grace",
        type=float,
        default=600.0,
        help="seconds a copy under a previous secretName stays after the ServiceAccount "
        "entries moved to the new name, so Pods admitted with the old name still start "
        "(default 600; 0 deletes it at once)",
    )
    run.add_argument(
        "--watch-timeout",
        type=int,
        default=290,
        help="seconds the API server keeps each watch stream open before the operator opens "
        "it again (default 290)",
    )
    run.add_argument(
        "--watch-silence",
        type=float,
        default=400.0,
        help="/livez fails when a watch has received nothing (no event, bookmark, list or "
        "reconnect) for this many seconds; must exceed --watch-timeout (default 400)",
    )
    run.add_argument(
        "--audit-interval",
        type=float,
        default=2.0,
        help="seconds between passes of the pull-readiness audit; a pass re-audits only "
        "namespaces whose Pods, Events or ServiceAccounts changed (default 2)",
    )
    run.add_argument(
        "--pod-restarts-per-minute",
        type=int,
        default=6,
        help="at most this many Pod deletions per minute by spec.restartStuckPods, for the "
        "whole operator (default 6; 0 disables the restarts everywhere)",
    )
    run.add_argument(
        "--verify-interval",
        type=float,
        default=600.0,
        help="seconds between re-checks of every tenant's credentials against its registries "
        "(besides the check on every change); 0: only on changes (default 600)",
    )
    run.add_argument(
        "--verify-timeout",
        type=float,
        default=10.0,
        help="seconds one credential check (all its requests) may take (default 10)",
    )
    run.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a Lease in the operator's namespace before writing anything (default on)",
    )
    run.add_argument("--lease-name", default=names.COMPONENT, help="the Lease's name")
    run.add_argument(
        "--health-port", type=int, default=8080, help="/livez, /readyz; 0 disables them"
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="0 disables /metrics")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--verbose", action="store_true")

    sub.add_parser(
        "explain",
        add_help=False,
        help="which registry keys the kubelet tries for an image; why a namespace is served",
    )
    sub.add_parser("plan", add_help=False, help="what applying a TenantRegistry file would change")

    uninstall = sub.add_parser(
        "uninstall",
        help="remove every copy, entry, annotation and finalizer of the operator, once it is gone",
    )
    uninstall.add_argument("--kubeconfig", help="the admin's kubeconfig (default: $KUBECONFIG)")
    uninstall.add_argument(
        "--namespace",
        default=names.DEFAULT_OPERATOR_NAMESPACE,
        help="the operator's namespace, where its Deployment would be",
    )
    uninstall.add_argument(
        "--yes", action="store_true", help="remove what is listed (without it: a dry run)"
    )
    uninstall.add_argument(
        "--concurrency",
        type=_at_least_one,
        default=8,
        help="namespaces worked on at once (default 8)",
    )
    args = parser.parse_args(argv)
    if args.cmd == "run" and not 1 <= args.watch_timeout < args.watch_silence:
        # A healthy watch on a quiet cluster reconnects once per stream lifetime: a silence
        # limit below it would fail liveness for nothing.
        parser.error("--watch-silence must exceed --watch-timeout (and that be at least 1)")

    if args.cmd == "uninstall":
        from tenant_registry.uninstall import command

        return command(args)

    return _run(args)


def kubectl_plugin() -> int:
    """`kubectl-treg`: kubectl runs it for `kubectl treg ...`, with the arguments after treg."""
    return main(prog="kubectl treg")


def _run(args: argparse.Namespace) -> int:
    import kopf

    from tenant_registry import election, handlers, metrics
    from tenant_registry.cluster import Cluster
    from tenant_registry.cluster import version as cluster_version
    from tenant_registry.health import LEADING, STOPPING, HealthServer
    from tenant_registry.reconcile import Settings

    me = identity()
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # for Kopf's own login
    try:
        cluster = Cluster.connect(
            os.environ.get("KUBECONFIG"), pool_size=args.concurrency + 8, identity=me
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
    handlers.CLUSTER = cluster
    handlers.SETTINGS = Settings(
        operator_namespace=args.namespace,
        concurrency=args.concurrency,
        resync_seconds=args.resync,
        relist_seconds=args.relist,
        conflict_recheck_seconds=args.conflict_recheck,
        watch_timeout_seconds=args.watch_timeout,
        watch_silence_seconds=args.watch_silence,
        audit_interval=args.audit_interval,
        restarts_per_minute=args.pod_restarts_per_minute,
        verify_interval_seconds=args.verify_interval,
        verify_timeout_seconds=args.verify_timeout,
        rename_grace_seconds=args.rename_grace,
    )
    health = handlers.HEALTH
    if args.health_port:
        HealthServer(health, args.health_port).start()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    metrics.BUILD_INFO.info({"version": cluster_version(), "identity": me})

    stopping = Stopping()
    elector = election.Elector(
        cluster,
        args.namespace,
        args.lease_name,
        me,
        on_lost=stopping.lease_lost,
        on_attempt=health.elector_tried,
    )

    def interrupted(*_: Any) -> None:
        stopping.request()
        elector.stopped.set()

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.leader_election:
            if not elector.acquire():
                return 0  # stopped while standing by
            cluster.may_write = elector.leading
            handlers.ELECTOR = elector
            elector.start_renewing()
        health.become(LEADING)
        metrics.LEADER.set(1)
        asyncio.run(
            stopping.run(
                lambda flag: kopf.operator(
                    clusterwide=True,
                    standalone=True,
                    identity=cast(Any, me),  # kopf's Identity is a NewType of str, not exported
                    stop_flag=flag,
                    memo=kopf.Memo(stop_flag=flag),  # set on cleanup: see handlers.stop
                )
            )
        )
    finally:
        health.become(STOPPING)
        metrics.LEADER.set(0)
        elector.release()  # no-op unless leading: a standby takes over at once
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping.lost.is_set():
        # Exit rather than stand by again: a fresh process rebuilds everything from the API.
        print("tenant-registry: lost the Lease to another replica; exiting", file=sys.stderr)
        return 1
    return 0


class Stopping:
    """Why and when the operator stops: SIGTERM/SIGINT (before or while Kopf runs) or a lost
    Lease (from the elector's thread). Kopf's stop flag is an asyncio.Event made on Kopf's own
    loop: a threading.Event would park a thread of the loop's default executor in `wait()`,
    which asyncio then waits for forever at shutdown."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.lost = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flag: asyncio.Event | None = None

    async def run(self, operator: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._loop, self._flag = asyncio.get_running_loop(), asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.request)
        if self.requested.is_set():  # a signal came before this loop could hear it
            self._flag.set()
        await operator(self._flag)

    def request(self) -> None:
        self.requested.set()
        if self._loop is not None and self._flag is not None:
            self._loop.call_soon_threadsafe(self._flag.set)

    def lease_lost(self) -> None:
        self.lost.set()
        self.request()


def identity() -> str:
    """Who this process is, for the Lease, Kopf and the logs: the Pod's name, else host, PID
    and a random suffix (two hostNetwork replicas without $POD_NAME share host and PID 1).

    A Pod's name is unique while it exists, so a restarted container of the same Pod takes its
    Lease back at once. Explicit because Kopf would otherwise ask getpass.getuser(), which
    fails for a UID without a passwd entry: the image runs as 65532 and the kubelet writes no
    passwd file."""
    return os.environ.get("POD_NAME") or (
        f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
