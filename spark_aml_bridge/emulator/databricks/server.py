"""`python -m spark_aml_bridge.emulator.databricks --state-dir DIR`: Databricks workspace double.

Its own process: MLflow's server app holds one store per process, and this one has its own
database (the emulator's AML workspace has the other). `DIR/databricks.json` (host, token, pid)
appears once it answers and disappears when it stops. The emulator starts it (server.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

INFO_FILE = "databricks.json"
IDENTITY_FILE = "identity.json"
PORT_FILE = "port.json"

_log = logging.getLogger("spark_aml_bridge.emulator.databricks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spark_aml_bridge.emulator.databricks")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--log-requests", action="store_true")
    parser.add_argument("--exit-with-parent", action="store_true")
    return parser


def load_identity(state_dir: Path) -> dict[str, str]:
    """The workspace's PAT and ids, stable per state dir (a PAT looks like dapi + 32 hex)."""
    from spark_aml_bridge.emulator.files import read_json, write_json

    path = state_dir / IDENTITY_FILE
    stored: dict[str, str] = read_json(path) if path.exists() else {}
    merged = {
        "token": "dapi" + secrets.token_hex(16),
        "org_id": str(1_000_000_000_000_000 + secrets.randbelow(8_999_999_999_999_999)),
        **stored,
    }
    if merged != stored:
        write_json(path, merged)
    return merged


def load_mlflow(state_dir: Path) -> Any:
    """MLflow's Flask app over this double's own DB; artifacts go to a local directory, as the
    `databricks` URI's clients write them themselves (DBFS is not emulated)."""
    from spark_aml_bridge.emulator.mlflow_backend import server_environment

    env = server_environment(state_dir)
    artifacts = (state_dir / "artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    env["_MLFLOW_SERVER_ARTIFACT_ROOT"] = artifacts.as_uri()
    env["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "false"
    env.pop("_MLFLOW_SERVER_ARTIFACT_DESTINATION", None)
    os.environ.update(env)
    from mlflow.server import app, handlers

    db_uri = env["_MLFLOW_SERVER_FILE_STORE"]
    handlers.initialize_backend_stores(db_uri, db_uri, env["_MLFLOW_SERVER_ARTIFACT_ROOT"])
    return app


def main(argv: list[str] | None = None) -> int:
    from spark_aml_bridge.emulator.databricks.workspace import DatabricksWorkspaceApp, JobsDouble
    from spark_aml_bridge.emulator.files import read_json, write_json
    from spark_aml_bridge.emulator.httpd import EmulatorHTTPServer, bind_loopback

    args = build_parser().parse_args(argv)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    state_dir = Path(args.state_dir).expanduser().resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity = load_identity(state_dir)
    try:
        preferred = int(read_json(state_dir / PORT_FILE)["port"])
    except (OSError, ValueError, KeyError, TypeError):
        preferred = 0
    sock = bind_loopback(preferred)
    port = sock.getsockname()[1]
    write_json(state_dir / PORT_FILE, {"port": port}, mode=0o644)
    host = f"http://127.0.0.1:{port}"
    app = DatabricksWorkspaceApp(
        load_mlflow(state_dir), identity["token"], JobsDouble(host, identity["org_id"])
    )
    server = EmulatorHTTPServer(sock, app, tls=None, log_requests=args.log_requests)
    server.start("databricks-workspace-double")
    info = {"host": host, "token": identity["token"], "org_id": identity["org_id"]}
    write_json(state_dir / INFO_FILE, {**info, "pid": os.getpid()})
    _log.info("Databricks workspace double ready at %s", host)
    parent = os.getppid()
    try:
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break
    finally:
        (state_dir / INFO_FILE).unlink(missing_ok=True)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
