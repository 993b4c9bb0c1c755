"""The spark-aml-bridge command: help, doctor, demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spark_aml_bridge.cli import main


def _run(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "spark_aml_bridge.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("doctor", "emulator", "demo", "settings"):
        assert command in out


def test_settings_lists_env_and_conf_names(capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "SPARK_AML_BRIDGE_WORKSPACE" in out and "spark.aml.bridge.workspace" in out
    assert "never: sensitive" in out


def test_doctor_passes_against_the_emulator(use_emulator):
    result = _run("doctor", env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "workspace reachable" in result.stdout and "all checks passed" in result.stdout
    assert use_emulator.info["client_secret"] not in result.stdout + result.stderr


def test_doctor_fails_with_a_fix_line(emulator):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env["SPARK_AML_BRIDGE_WORKSPACE"] = emulator.info["tracking_uri"]
    env["PATH"] = os.path.dirname(sys.executable)
    result = _run("doctor", env=env)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "fix:" in result.stdout


def test_demo_runs_end_to_end(tmp_path):
    result = _run("demo", "--state-dir", str(tmp_path / "demo"), "--no-serve", env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "best accuracy" in result.stdout
    # The UI stops with the demo: it says so, and prints no address that is already dead.
    assert "demo --serve" in result.stdout and "http://" not in result.stdout


def test_emulator_command_takes_its_options_and_help(capsys):
    # argparse.REMAINDER under a sub-command dropped `--state-dir` and broke `--help`.
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--state-dir" in out and "--detach" in out and "--stop" in out
    assert main(["emulator", "--state-dir", "/nonexistent/i9-state", "--stop"]) == 1
    assert "no emulator is running" in capsys.readouterr().out
