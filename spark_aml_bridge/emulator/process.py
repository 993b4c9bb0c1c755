"""Start the emulator as a subprocess and drive its admin API (for tests, the demo, scripts).

Stdlib at import time; `requests` loads on the first admin call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.contract import ADMIN_KEY_HEADER, INFO_FILE, LOG_FILE
from spark_aml_bridge.errors import BridgeError


class EmulatorError(BridgeError):
    """The emulator did not start, is not running, or refused an admin request."""


def load_emulator_info(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The running emulator's emulator.json for `state_dir`."""
    path = Path(state_dir) / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmulatorError(
            f"No emulator is running for {Path(state_dir)} ({path} does not exist).",
            f"start one: spark-aml-bridge emulator --state-dir {Path(state_dir)}",
        ) from None


def _tail(path: Path, start: int, limit: int = 4000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text[-limit:]


class EmulatorProcess:
    """A running emulator subprocess: its emulator.json as `.info`, admin helpers, `stop()`."""

    def __init__(
        self, proc: subprocess.Popen[bytes], state_dir: Path, info: dict[str, Any]
    ) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.info = info
        self._session: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        """Environment a client process needs to use this emulator through the bridge."""
        return dict(self.info["env"])

    def running(self) -> bool:
        return self.proc.poll() is None

    # -- admin API -------------------------------------------------------------------------

    def admin(self, method: str, path: str, payload: Any = None, timeout: float = 30) -> Any:
        """Call `/_emulator/<path>` with the admin key; returns the decoded JSON answer."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers[ADMIN_KEY_HEADER] = self.info["admin_key"]
        url = f"{self.info['admin_url']}/{path.lstrip('/')}"
        # `verify` per request: requests lets REQUESTS_CA_BUNDLE override `Session.verify`.
        response = self._session.request(
            method, url, json=payload, timeout=timeout, verify=self.info["ca_bundle"]
        )
        if response.status_code >= 400:
            raise EmulatorError(
                f"Emulator admin call {method} {path} failed: {response.status_code} "
                f"{response.text}"
            )
        return response.json()

    def inject_faults(
        self,
        status: int = 503,
        count: int = 1,
        retry_after: float | None = None,
        path_contains: str | None = None,
        when: str = "before",
    ) -> dict[str, Any]:
        """The next `count` workspace requests matching `path_contains` get `status`.

        `when="before"` rejects them unprocessed; `when="after"` lets MLflow apply them and then
        answers with the error, as when a response is lost.
        """
        return self.admin(
            "POST",
            "faults",
            {
                "status": status,
                "count": count,
                "retry_after": retry_after,
                "path_contains": path_contains,
                "when": when,
            },
        )

    def outage(self, seconds: float) -> dict[str, Any]:
        """Every workspace request gets 503 (Retry-After: 1) for `seconds`."""
        return self.admin("POST", "outage", {"seconds": seconds})

    def revoke_tokens(self) -> dict[str, Any]:
        """Reject every token issued before now (401 at ARM and the workspace)."""
        return self.admin("POST", "revoke")

    def reset(self) -> dict[str, Any]:
        """Clear pending faults, any outage and token revocation."""
        return self.admin("POST", "reset")

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "stats")

    def reset_stats(self) -> dict[str, Any]:
        return self.admin("POST", "stats/reset")

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait for a clean exit (SIGKILL after `timeout`); returns the exit code."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.proc.returncode}"
        return f"EmulatorProcess(pid={self.pid}, state_dir={str(self.state_dir)!r}, {state})"


def _answers(info: dict[str, Any]) -> bool:
    import requests

    try:
        response = requests.get(info["admin_url"] + "/health", verify=info["ca_bundle"], timeout=5)
    except requests.RequestException:
        return False
    return response.ok


def start_emulator(
    state_dir: str | os.PathLike[str],
    token_lifetime: int = 3600,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
    *,
    sas_lifetime: int | None = None,
    artifact_page_size: int | None = None,
    blob_backend: str | None = None,
    azurite_url: str | None = None,
    azurite_key: str | None = None,
) -> EmulatorProcess:
    """Launch `python -m spark_aml_bridge.emulator` and wait until its workspace answers.

    Output goes to `<state_dir>/emulator.log`. The emulator exits by itself if this process
    dies, so a crashed test run leaves no server behind. `blob_backend="azurite"` with
    `azurite_url` (e.g. `start_azurite(dir).url`) keeps run artifacts in that Azurite.
    """
    state = Path(state_dir).expanduser().resolve()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    child_env = dict(os.environ)
    child_env.update(
        {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    child_env.update(env or {})
    command = [
        sys.executable,
        "-m",
        "spark_aml_bridge.emulator",
        "--state-dir",
        str(state),
        "--token-lifetime",
        str(token_lifetime),
        "--exit-with-parent",
    ]
    options = {
        "--sas-lifetime": sas_lifetime,
        "--artifact-page-size": artifact_page_size,
        "--blob-backend": blob_backend,
        "--azurite-blob-url": azurite_url,
        "--azurite-account-key": azurite_key,
    }
    for flag, value in options.items():
        if value is not None:
            command += [flag, str(value)]
    command += extra_args or []
    log_path = state / LOG_FILE
    with log_path.open("ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env
        )
    info_path = state / INFO_FILE
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EmulatorError(
                f"The emulator exited with code {proc.returncode} while starting. Output "
                f"({log_path}):\n{_tail(log_path, log_start)}"
            )
        info = None
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        if info and info.get("pid") == proc.pid and _answers(info):
            return EmulatorProcess(proc, state, info)
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise EmulatorError(
                f"The emulator did not become ready within {timeout:.0f} s. Output "
                f"({log_path}):\n{_tail(log_path, log_start)}"
            )
        time.sleep(0.05)
