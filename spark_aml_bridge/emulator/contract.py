"""Names the emulator shares with its clients: files in the state dir and admin API details.

Stdlib only, so `spark_aml_bridge.emulator` stays cheap to import.
"""

from __future__ import annotations

# Files in the state dir.
INFO_FILE = "emulator.json"  # present only while the emulator runs; its keys only ever grow
ENV_FILE = "emulator.env"  # `export` lines, present only while the emulator runs
LOG_FILE = "emulator.log"  # stdout/stderr when started through start_emulator()
PORTS_FILE = "ports.json"  # last ports, reused when free so exported URIs survive restarts
IDENTITY_FILE = "identity.json"  # tenant, client, secrets, subscription: stable per state dir
SIGNING_KEY_FILE = "jwt-signing-key.pem"
TLS_DIR = "tls"  # ca.pem (trusted by clients), ca-key.pem, server.pem, server-key.pem
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
DATABRICKS_DIR = "databricks"  # the Databricks workspace double's state (its own MLflow DB, PAT)

# Admin API, on the workspace port.
ADMIN_PREFIX = "/_emulator"
ADMIN_KEY_HEADER = "X-Emulator-Admin-Key"
