"""What `explain` and `plan` share: the user's kubeconfig, and errors as one line.

Every error of these commands is one line naming the bad argument (or the cluster that could
not be read), on stderr, exit code 2; never a traceback. They only read: the connection
refuses every write before it is sent (cluster.Cluster.for_user).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from tenant_registry.cluster import FORBIDDEN, GONE, TRANSIENT, ApiError, Cluster

USAGE_ERROR = 2


class UsageError(Exception):
    """A bad argument, or a cluster that cannot be read: one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) through UsageError."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", help="the kubeconfig context (default: its current one)")


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """A read-only connection with the user's kubeconfig, or a UsageError naming the flag."""
    if kubeconfig and not os.path.exists(kubeconfig):
        raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return Cluster.for_user(kubeconfig, context)
    except Exception as e:  # the client raises ConfigException, yaml and OS errors alike
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "kubeconfig"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{where}: cannot load cluster credentials: {first}") from None


def api_error_line(e: ApiError, cluster: Cluster | None) -> str:
    host = getattr(getattr(cluster, "api", None), "configuration", None)
    where = f" at {host.host}" if host is not None else ""
    if e.kind == TRANSIENT and e.status == 0:
        return f"cannot reach the API server{where} ({e.message})"
    if e.kind == TRANSIENT:
        return f"the API server{where} is not answering ({e.status}: {e.message})"
    if e.kind == FORBIDDEN:
        return f"the API server{where} refused a read: {e.message}"
    if e.kind == GONE:
        return f"not found on the API server{where}: {e.message}"
    return f"the API server{where} answered {e.status}: {e.message}"


def run(prog: str, command: Callable[[list[Cluster]], int]) -> int:
    """Run a command; every failure becomes one line on stderr and exit code 2. The command
    appends the connection it opens to the list it is given, for the messages and closing."""
    opened: list[Cluster] = []
    try:
        return command(opened)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
    except ApiError as e:
        print(f"{prog}: {api_error_line(e, opened[0] if opened else None)}", file=sys.stderr)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, never a traceback with data in it
        print(f"{prog}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        for cluster in opened:
            cluster.close()
    return USAGE_ERROR
