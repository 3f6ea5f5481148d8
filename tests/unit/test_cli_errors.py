"""Every error of `explain` and `plan` is one line naming the bad argument, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tenant_registry.cli import main


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["explain", "Bad Image!!", "docker.io"],
            "tenant-registry explain: IMAGE 'Bad Image!!' is not an image reference the kubelet "
            "accepts",
        ),
        (
            ["explain", "nginx", "bad key"],
            "tenant-registry explain: SERVER 'bad key' is not a key the kubelet can use",
        ),
        (["explain"], "tenant-registry explain: the following arguments are required: IMAGE"),
        (
            ["explain", "nginx"],
            "tenant-registry explain: give the registry keys to check (SERVER...) or --namespace",
        ),
        (
            ["explain", "nginx", "docker.io", "--namespace", "team"],
            "tenant-registry explain: SERVER 'docker.io': give either SERVER... or --namespace",
        ),
        (
            ["explain", "nginx", "--bogus"],
            "tenant-registry explain: unrecognized arguments: --bogus",
        ),
        (
            ["explain", "nginx", "docker.io", "--service-account", "x"],
            "tenant-registry explain: --service-account needs --namespace",
        ),
        (
            ["explain", "namespace"],
            "tenant-registry explain: namespace: give exactly one NAMESPACE",
        ),
        (
            ["explain", "Bad Image!!", "--namespace", "team"],
            "tenant-registry explain: IMAGE 'Bad Image!!' is not an image reference",
        ),
        (
            ["explain", "namespace", "team", "--kubeconfig", "/nonexistent/kubeconfig"],
            "tenant-registry explain: --kubeconfig /nonexistent/kubeconfig: no such file",
        ),
        (["plan"], "tenant-registry plan: the following arguments are required: -f/--filename"),
        (
            ["plan", "-f", "/nonexistent.yaml"],
            "tenant-registry plan: -f /nonexistent.yaml: no such file",
        ),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(message), err


def test_an_unreachable_cluster_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path)
    for argv in (
        ["explain", "namespace", "team", f"--kubeconfig={kubeconfig}"],
        ["explain", "nginx", "-n", "team", f"--kubeconfig={kubeconfig}"],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [
            f"tenant-registry {argv[0]}: cannot reach the API server at https://127.0.0.1:1 "
            "(network: MaxRetryError)"
        ], err


def test_the_plugin_names_itself_kubectl_treg(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "nginx", "bad key"], prog="kubectl treg") == 2
    assert capsys.readouterr().err.startswith("kubectl treg explain: SERVER 'bad key'")


def test_the_console_script_prints_no_traceback() -> None:
    script = Path(sys.executable).parent / "tenant-registry"
    proc = subprocess.run(
        [str(script), "explain", "Bad Image!!", "docker.io"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
