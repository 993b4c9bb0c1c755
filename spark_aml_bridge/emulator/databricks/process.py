"""Start the Databricks workspace double as a child process and wait until it answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.databricks.server import INFO_FILE


class DatabricksDouble:
    """A running workspace double: `.info` has host, token, org_id and pid."""

    def __init__(self, proc: subprocess.Popen[bytes], state_dir: Path) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.info: dict[str, Any] = {}

    @classmethod
    def spawn(cls, state_dir: Path, log_requests: bool = False) -> DatabricksDouble:
        """Start it without waiting (it imports MLflow meanwhile); output goes to ours."""
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "spark_aml_bridge.emulator.databricks",
            "--state-dir",
            str(state_dir),
            "--exit-with-parent",
        ]
        if log_requests:
            command.append("--log-requests")
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        return cls(proc, state_dir)

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        path = self.state_dir / INFO_FILE
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the Databricks workspace double exited with code {self.proc.returncode}"
                )
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = None
            if info and info.get("pid") == self.proc.pid and _answers(info["host"]):
                self.info = info
                return info
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Databricks workspace double did not start in time")
            time.sleep(0.05)

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(host + "/health", timeout=5) as response:  # loopback only
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
