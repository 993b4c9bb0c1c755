"""Azurite (Microsoft's Azure Storage emulator, from npm) as the emulator's blob store, for tests.

`start_azurite(dir)` runs `azurite-blob` on 127.0.0.1 with telemetry off (`--disableTelemetry`:
without it Azurite reports to a public Azure host) and returns a handle whose `url`
(`http://127.0.0.1:<port>/devstoreaccount1`) goes to `start_emulator(..., blob_backend="azurite",
azurite_url=...)`. Azurite is installed with `npm install azurite@3` into a cache directory
(`$SPARK_AML_BRIDGE_AZURITE_DIR`, default `~/.cache/spark-aml-bridge/azurite`) on first use; an
`azurite-blob` already on PATH is used as is. Stdlib only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from spark_aml_bridge.emulator.sas import AZURITE_ACCOUNT, AZURITE_KEY
from spark_aml_bridge.errors import BridgeError

AZURITE_PACKAGE = "azurite@3"
_READY = re.compile(r"successfully listens on (http://[\d.]+:\d+)")


class AzuriteError(BridgeError):
    """Azurite could not be installed or started."""


def azurite_dir() -> Path:
    configured = os.environ.get("SPARK_AML_BRIDGE_AZURITE_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "spark-aml-bridge" / "azurite"


def find_azurite(install: bool = True, timeout: float = 600) -> Path:
    """The `azurite-blob` executable: on PATH, in the cache dir, or installed there with npm."""
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    directory = azurite_dir()
    executable = directory / "node_modules" / ".bin" / "azurite-blob"
    if executable.exists() or not install:
        if executable.exists():
            return executable
        raise AzuriteError(f"Azurite is not installed in {directory}.")
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise AzuriteError(
            "Azurite needs Node.js and npm, which are not on PATH.",
            "install them (Debian: apt-get install nodejs npm), or put azurite-blob on PATH",
        )
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time (parallel test runs)
        if not executable.exists():
            command = [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
                "--loglevel=error",
                "--prefix",
                str(directory),
                AZURITE_PACKAGE,
            ]
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
            if result.returncode != 0 or not executable.exists():
                raise AzuriteError(
                    f"`{' '.join(command)}` failed ({result.returncode}):\n"
                    f"{(result.stdout + result.stderr)[-3000:]}"
                )
    return executable


def _die_with_parent() -> None:
    # Linux: SIGTERM when the process that started Azurite exits, so no server is left behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class AzuriteProcess:
    """A running Azurite blob service: `url` (account URL), `account`, `key`, `stop()`."""

    def __init__(self, proc: subprocess.Popen[bytes], endpoint: str, location: Path) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.location = location
        self.account = AZURITE_ACCOUNT
        self.key = AZURITE_KEY

    @property
    def url(self) -> str:
        """Path-style account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1`."""
        return f"{self.endpoint}/{self.account}"

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AzuriteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_azurite(
    location: str | os.PathLike[str], port: int = 0, install: bool = True, timeout: float = 60
) -> AzuriteProcess:
    """Start `azurite-blob` on 127.0.0.1 (`port` 0: any free port) storing data in `location`."""
    executable = find_azurite(install=install)
    directory = Path(location).resolve()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    log_path = directory / "azurite.log"
    command = [
        str(executable),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--location",
        str(data),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
    ]
    with log_path.open("ab") as log:
        start = log.tell()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    deadline = time.monotonic() + timeout
    while True:
        with log_path.open("rb") as log:
            log.seek(start)
            output = log.read().decode("utf-8", "replace")
        ready = _READY.search(output)
        if ready:
            return AzuriteProcess(proc, ready[1], directory)
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise AzuriteError(
                f"Azurite did not start (exit code {proc.returncode}). Output:\n{output[-3000:]}"
            )
        time.sleep(0.05)
