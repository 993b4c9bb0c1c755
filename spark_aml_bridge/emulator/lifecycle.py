"""`spark-aml-bridge emulator --detach | --stop`: run the emulator in the background from a shell.

`--detach` returns only once `DIR/emulator.json` is written and the workspace answers, so the
next shell line can read it; `--stop` ends the emulator serving a state dir and waits for it.
Stdlib at import time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spark_aml_bridge.emulator.contract import INFO_FILE, LOG_FILE
from spark_aml_bridge.emulator.files import read_json

READY_TIMEOUT = 180.0


def start_detached(state_dir: Path, argv: list[str], timeout: float = READY_TIMEOUT) -> int:
    """Start `python -m spark_aml_bridge.emulator argv` in its own session; wait until ready."""
    from spark_aml_bridge.emulator.process import _answers, _tail

    state = state_dir.expanduser().resolve()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log_path = state / LOG_FILE
    with log_path.open("ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "spark_aml_bridge.emulator", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives this shell command, not killed by its Ctrl-C
        )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            print(
                f"the emulator exited with code {proc.returncode} while starting; its output "
                f"({log_path}):\n{_tail(log_path, log_start)}",
                file=sys.stderr,
            )
            return 1
        try:
            info = read_json(state / INFO_FILE)
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and info.get("pid") == proc.pid and _answers(info):
            break
        if time.monotonic() > deadline:
            proc.terminate()
            print(
                f"the emulator was not ready within {timeout:.0f} s; its output ({log_path}):\n"
                f"{_tail(log_path, log_start)}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    print(
        f"spark-aml-bridge emulator ready (pid {proc.pid})\n"
        f"  workspace  {info['tracking_uri']}\n"
        f"  MLflow UI  {info['ui_url']}\n"
        f"  settings   {state / INFO_FILE}\n"
        f"  shell      source {info['env_file']}\n"
        f"  stop       spark-aml-bridge emulator --state-dir {state_dir} --stop",
        flush=True,
    )
    return 0


def stop_detached(state_dir: Path, timeout: float = 60.0) -> int:
    """SIGTERM the emulator serving `state_dir` and wait until it has exited."""
    info_path = state_dir.expanduser().resolve() / INFO_FILE
    try:
        pid = int(read_json(info_path)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        print(f"no emulator is running for {state_dir} ({info_path} does not exist)")
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"the emulator of {state_dir} (pid {pid}) had already exited")
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"stopped the emulator of {state_dir} (pid {pid})")
            return 0
        if not info_path.exists():
            # Its servers are down; the process is finishing (or a zombie of our own shell).
            time.sleep(0.2)
            print(f"stopped the emulator of {state_dir} (pid {pid})")
            return 0
        time.sleep(0.1)
    print(f"the emulator of {state_dir} (pid {pid}) did not stop within {timeout:.0f} s")
    return 1
