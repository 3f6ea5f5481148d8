"""The operator under test: the real process, as its own ServiceAccount, with deploy/'s RBAC."""

from __future__ import annotations

from collections.abc import Iterator

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane
from tenant_registry.localcluster.harness import OperatorProcess, install
from tests.cluster.tenants import Cluster

OPERATOR_ARGS = (
    "--conflict-recheck=1",
    "--resync=60",
    "--relist=5",
    "--log-format=json",
    "--verify-interval=3",  # test_credential_verification: a registry that goes away
    "--rename-grace=2",  # test_drift_and_cleanup: the old copy after a secretName change
)


class RunningOperator:
    """The session's operator; `restart()` replaces the process (same identity and args)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.generation = 0
        self.process = self._new()

    def _new(self, env: dict[str, str] | None = None) -> OperatorProcess:
        self.generation += 1
        return OperatorProcess(
            self.cp, *OPERATOR_ARGS, log_name=f"operator-{self.generation}", env=env
        )

    def start(self) -> None:
        self.process.start()

    def stop(self) -> float:
        return self.process.stop()

    def restart(self, env: dict[str, str] | None = None) -> None:
        """A new process; `env` (only for it) over the test's environment."""
        self.stop()
        self.process = self._new(env)
        self.start()

    def log_text(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.cp.logs_dir.glob("operator-*.log"))
        )


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane) -> Iterator[RunningOperator]:
    install(control_plane)
    running = RunningOperator(control_plane)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def k8s(control_plane: ControlPlane, operator: RunningOperator) -> Cluster:
    api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(control_plane.kubeconfig)))
    return Cluster(api, control_plane)
