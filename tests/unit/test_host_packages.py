"""scripts/host-packages.sh never leaves a policy-rc.d behind that blocks services: not when
two runs overlap, not when one is SIGKILLed. Run on stand-in paths (the script takes them from
the environment) with a stand-in apt-get that only waits, as root (the script installs only
as root; CI is root)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "host-packages.sh"
ORIGINAL = "#!/bin/sh\n# the admin's own\nexit 0\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the script installs only as root")


class Host:
    def __init__(self, tmp: Path) -> None:
        self.policy = tmp / "policy-rc.d"
        self.apt_log = tmp / "apt.log"
        apt = tmp / "apt-get"
        # `install` waits, so a test can act while the policy-rc.d is in place.
        apt.write_text(
            "#!/bin/sh\n"
            f'echo "$PPID begin $*" >>{self.apt_log}\n'
            'case "$*" in *install*) sleep "${FAKE_APT_SLEEP:-0}";; esac\n'
            f'echo "$PPID end $*" >>{self.apt_log}\n'
        )
        apt.chmod(0o755)
        missing = tmp / "missing.txt"
        missing.write_text("tro-no-such-package  # never installed\n")
        (tmp / "none.txt").write_text("# nothing wanted\n")
        self.env = {
            **os.environ,
            "HOST_PACKAGES_POLICY": str(self.policy),
            "HOST_PACKAGES_LOCK": str(tmp / "lock"),
            "HOST_PACKAGES_APT_GET": str(apt),
            "HOST_PACKAGES_LIST": str(missing),
        }
        self.none = tmp / "none.txt"

    def start(self, sleep: float = 0, *, nothing_missing: bool = False) -> subprocess.Popen[str]:
        env = {**self.env, "FAKE_APT_SLEEP": str(sleep)}
        if nothing_missing:
            env["HOST_PACKAGES_LIST"] = str(self.none)
        return subprocess.Popen(
            ["bash", str(SCRIPT)],
            env=env,
            text=True,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def run(self, **kwargs: bool) -> None:
        proc = self.start(**kwargs)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

    def ours_in_place(self) -> bool:
        return self.policy.exists() and "exit 101" in self.policy.read_text()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


@pytest.mark.parametrize("before", ["none", "the admin's own"])
def test_overlapping_runs_restore_what_was_there(host: Host, before: str) -> None:
    if before != "none":
        host.policy.write_text(ORIGINAL)
    first = host.start(sleep=1.5)
    wait_for(host.ours_in_place, what="the first run's policy-rc.d", timeout=10)
    second = host.start(sleep=0.2)
    for proc in (first, second):
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    if before == "none":
        assert not host.policy.exists(), host.policy.read_text()
    else:
        assert host.policy.read_text() == ORIGINAL
    # They took turns: no apt-get of one run between those of the other.
    runs = [line.split()[0] for line in host.apt_log.read_text().splitlines()]
    assert runs == [runs[0]] * 4 + [runs[-1]] * 4 and runs[0] != runs[-1], runs


@pytest.mark.parametrize("before", ["none", "the admin's own"])
def test_a_run_killed_mid_install_is_cleaned_up_by_the_next(host: Host, before: str) -> None:
    if before != "none":
        host.policy.write_text(ORIGINAL)
    run = host.start(sleep=30)
    wait_for(lambda: "begin -q" in _installs(host), what="its apt-get install", timeout=10)
    os.killpg(run.pid, signal.SIGKILL)  # no trap runs
    run.wait(timeout=10)
    assert host.ours_in_place()  # what SIGKILL leaves
    host.run(nothing_missing=True)  # any later run, even one with nothing to install
    if before == "none":
        assert not host.policy.exists()
    else:
        assert host.policy.read_text() == ORIGINAL


def _installs(host: Host) -> str:
    lines = host.apt_log.read_text().splitlines() if host.apt_log.exists() else []
    return "\n".join(line for line in lines if "install" in line)


def test_sigterm_restores_at_once(host: Host) -> None:
    """SIGTERM to the run's process group (as a cancelled CI job, or Ctrl-C's SIGINT)."""
    run = host.start(sleep=30)
    wait_for(lambda: "begin -q" in _installs(host), what="its apt-get install", timeout=10)
    os.killpg(run.pid, signal.SIGTERM)
    run.wait(timeout=10)
    assert not host.policy.exists()


def test_someone_elses_policy_rc_d_is_never_removed(host: Host) -> None:
    host.policy.write_text(ORIGINAL)
    host.run(nothing_missing=True)
    host.run()
    assert host.policy.read_text() == ORIGINAL
