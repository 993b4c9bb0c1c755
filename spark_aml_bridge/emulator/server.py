"""`python -m spark_aml_bridge.emulator`: run the local Azure ML workspace emulator.

One process serves five loopback ports: the Entra ID authority, ARM, the workspace's MLflow
endpoint (with the run-history artifact service and the admin API), a blob endpoint for the
artifact SAS URLs, and a plain-HTTP MLflow UI. `DIR/emulator.json` appears once all
of them answer and disappears on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from spark_aml_bridge.emulator.contract import (
    DATABRICKS_DIR,
    ENV_FILE,
    INFO_FILE,
    LOG_FILE,
    PORTS_FILE,
)
from spark_aml_bridge.emulator.files import read_json, write_json, write_private
from spark_aml_bridge.emulator.identity import (
    REGION,
    ExtraWorkspace,
    Identity,
    load_or_create_identity,
    load_or_create_workspaces,
)

SERVICES = ("authority", "arm", "workspace", "ui", "blob")
BLOB_BACKENDS = ("local", "azurite")

_log = logging.getLogger("spark_aml_bridge.emulator")


DESCRIPTION = "Local stand-in for Entra ID, ARM and an Azure ML workspace's MLflow endpoint."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-aml-bridge emulator", description=DESCRIPTION, allow_abbrev=False
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options, on its own parser or on the `spark-aml-bridge emulator` command."""
    parser.add_argument(
        "--state-dir", required=True, help="where keys, the MLflow DB and emulator.json live"
    )
    lifecycle = parser.add_mutually_exclusive_group()
    lifecycle.add_argument(
        "--detach",
        action="store_true",
        help="start in the background and return once DIR/emulator.json is ready",
    )
    lifecycle.add_argument(
        "--stop", action="store_true", help="stop the emulator serving --state-dir, then return"
    )
    parser.add_argument(
        "--token-lifetime", type=int, default=3600, help="access token lifetime, seconds"
    )
    parser.add_argument("--subscription-id", help="default: a GUID persisted in the state dir")
    parser.add_argument("--resource-group", help="default: rg-local")
    parser.add_argument(
        "--workspace-name",
        action="append",
        help="default: ws-local; give it again for more workspaces on the same host, each with "
        "its own service principal allowed on that workspace only (emulator.json 'workspaces')",
    )
    parser.add_argument(
        "--no-query-limits",
        action="store_true",
        help="accept MLflow queries Azure ML rejects (LIKE/ILIKE/OR filters, ordering by "
        "metrics/params/tags, experiment rename)",
    )
    parser.add_argument(
        "--sas-lifetime",
        type=int,
        default=3600,
        help="lifetime of the blob SAS URLs the artifact service hands out, seconds",
    )
    parser.add_argument(
        "--artifact-page-size",
        type=int,
        default=100,
        help="artifacts per page of the run-history listing and prefix content-info routes",
    )
    parser.add_argument(
        "--blob-backend",
        choices=BLOB_BACKENDS,
        default="local",
        help="where artifact bytes go: the emulator's own blob endpoint, or an Azurite",
    )
    parser.add_argument(
        "--azurite-blob-url",
        help="Azurite's account URL for --blob-backend azurite, e.g. "
        "http://127.0.0.1:10000/devstoreaccount1",
    )
    parser.add_argument(
        "--azurite-account-key",
        help="that account's key (default: Azurite's well-known devstoreaccount1 key)",
    )
    parser.add_argument(
        "--mlflow-ids",
        action="store_true",
        help="show MLflow's own integer experiment ids and 32-hex run ids instead of Azure ML's "
        "GUIDs (for debugging the emulator only)",
    )
    parser.add_argument("--log-requests", action="store_true", help="log every HTTP request")
    parser.add_argument(
        "--no-databricks",
        action="store_true",
        help="do not start the Databricks workspace double (databricks_host is then null)",
    )
    # Used by start_emulator(): a test run that dies must not leave a server behind.
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)


def _running_pid(info_path: Path) -> int | None:
    """The pid of a live emulator already serving this state dir, if any."""
    try:
        pid = int(read_json(info_path)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def tracking_uri_for(workspace_url: str, identity: Identity) -> str:
    """The form `az ml workspace show --query mlflow_tracking_uri` prints."""
    from spark_aml_bridge.emulator.workspace import workspace_path

    host = workspace_url.split("://", 1)[1]
    return f"azureml://{host}{workspace_path(identity, 'v1.0')}"


def workspaces_info(
    identity: Identity, extra: list[ExtraWorkspace], tracking_uri: str
) -> list[dict[str, str]]:
    """emulator.json `workspaces`: the first is the top-level workspace, then the extra ones."""
    first = {
        "name": identity.workspace_name,
        "workspace_arm_id": identity.workspace_arm_id,
        "tracking_uri": tracking_uri,
        "client_id": identity.client_id,
        "client_secret": identity.client_secret,
    }
    rows = [first]
    for ws in extra:
        rows.append(
            {
                "name": ws.name,
                "workspace_arm_id": ws.arm_id(identity),
                "tracking_uri": tracking_uri.replace(
                    identity.workspace_arm_id, ws.arm_id(identity)
                ),
                "client_id": ws.client_id,
                "client_secret": ws.client_secret,
            }
        )
    return rows


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def build_info(
    identity: Identity,
    urls: dict[str, str],
    ca_bundle: Path,
    state_dir: Path,
    token_lifetime: int,
    mlflow_version: str,
    query_limits: bool,
    artifacts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of emulator.json. Keys only ever get added, never renamed or removed."""
    from spark_aml_bridge._version import __version__
    from spark_aml_bridge.emulator.workspace import workspace_path

    tracking_uri = tracking_uri_for(urls["workspace"], identity)
    env = {
        "SPARK_AML_BRIDGE_WORKSPACE": tracking_uri,
        "AZURE_TENANT_ID": identity.tenant_id,
        "AZURE_CLIENT_ID": identity.client_id,
        "AZURE_CLIENT_SECRET": identity.client_secret,
        "AZURE_AUTHORITY_HOST": urls["authority"],
        "SPARK_AML_BRIDGE_CA_BUNDLE": str(ca_bundle),
        "SPARK_AML_BRIDGE_ARM_ENDPOINT": urls["arm"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    return {
        "tracking_uri": tracking_uri,
        "workspace_url": urls["workspace"] + workspace_path(identity, "v2.0"),
        "workspace_endpoint": urls["workspace"],
        "workspace_arm_id": identity.workspace_arm_id,
        "workspace_id": identity.workspace_id,
        "subscription_id": identity.subscription_id,
        "resource_group": identity.resource_group,
        "workspace_name": identity.workspace_name,
        "region": REGION,
        "authority": urls["authority"],
        "tenant_id": identity.tenant_id,
        "client_id": identity.client_id,
        "client_secret": identity.client_secret,
        "managed_identity_endpoint": urls["authority"] + "/msi/token",
        "managed_identity_header": identity.mi_header,
        "managed_identity_client_id": identity.mi_client_id,
        "ca_bundle": str(ca_bundle),
        "arm_endpoint": urls["arm"],
        "admin_url": urls["workspace"] + "/_emulator",
        "admin_key": identity.admin_key,
        "ui_url": urls["ui"] + "/",
        "token_lifetime": token_lifetime,
        "query_limits": query_limits,
        # Run artifacts: history_url, blob_endpoint, blob_account, blob_account_key,
        # blob_container, blob_backend, sas_lifetime, artifact_page_size.
        **(artifacts or {}),
        "pid": os.getpid(),
        "mlflow_version": mlflow_version,
        "emulator_version": __version__,
        "state_dir": str(state_dir),
        "log_file": str(state_dir / LOG_FILE),
        "env_file": str(state_dir / ENV_FILE),
        "started_at": time.time(),
        "env": env,
        "env_lines": [f"export {key}={_shell_quote(value)}" for key, value in env.items()],
    }


class Emulator:
    """All servers of one emulator instance; `start()` binds and serves, `stop()` undoes it."""

    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.state_dir = state_dir
        self.servers: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.databricks: Any = None  # the Databricks workspace double's process

    def _preferred_ports(self) -> dict[str, int]:
        # Reusing last run's ports keeps exported tracking URIs valid across restarts.
        path = self.state_dir / PORTS_FILE
        try:
            ports = read_json(path)
            return {name: int(ports.get(name, 0)) for name in SERVICES}
        except (OSError, ValueError, AttributeError):
            return dict.fromkeys(SERVICES, 0)

    def start(self) -> None:
        # Imported here so that importing this module (the CLI does) stays cheap.
        from spark_aml_bridge.emulator import query_limits
        from spark_aml_bridge.emulator.admin import AdminApp
        from spark_aml_bridge.emulator.aml_ids import AML_IDS_DB, AmlIds
        from spark_aml_bridge.emulator.arm import ArmApp
        from spark_aml_bridge.emulator.authority import AuthorityApp
        from spark_aml_bridge.emulator.faults import Faults
        from spark_aml_bridge.emulator.httpd import EmulatorHTTPServer, bind_loopback
        from spark_aml_bridge.emulator.id_translation import AmlIdApp
        from spark_aml_bridge.emulator.mlflow_backend import load_mlflow_app
        from spark_aml_bridge.emulator.stats import Stats
        from spark_aml_bridge.emulator.tls import prepare_tls
        from spark_aml_bridge.emulator.tokens import TokenService
        from spark_aml_bridge.emulator.workspace import (
            WorkspaceApp,
            discovery_document,
            workspace_path,
        )

        args, state_dir = self.args, self.state_dir
        if not args.no_databricks:
            # Its own process (MLflow's server app holds one store per process); spawned first so
            # it imports MLflow while this process does.
            from spark_aml_bridge.emulator.databricks.process import DatabricksDouble

            self.databricks = DatabricksDouble.spawn(state_dir / DATABRICKS_DIR, args.log_requests)
        names = args.workspace_name or [None]
        identity = load_or_create_identity(
            state_dir, args.subscription_id, args.resource_group, names[0]
        )
        extra_workspaces = load_or_create_workspaces(state_dir, names[1:])
        ca_bundle, tls = prepare_tls(state_dir)
        tokens = TokenService(state_dir, identity, args.token_lifetime, extra_workspaces)

        preferred = self._preferred_ports()
        sockets = {name: bind_loopback(preferred[name]) for name in SERVICES}
        ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
        write_json(state_dir / PORTS_FILE, ports, mode=0o644)
        urls = {
            name: f"{'http' if name == 'ui' else 'https'}://127.0.0.1:{port}"
            for name, port in ports.items()
        }

        # Runs' artifact URIs name the workspace's host, so MLflow starts once the port is known.
        workspace_host = urls["workspace"].split("://", 1)[1]
        artifact_root = f"azureml://{workspace_host}{workspace_path(identity)}/experiments"
        ids = None if args.mlflow_ids else AmlIds(state_dir / AML_IDS_DB)
        mlflow_app, mlflow_version = load_mlflow_app(state_dir, artifact_root, ids)
        if ids is not None:
            # Clients (and the UI) see Azure ML's GUID ids; MLflow's store keeps its own.
            mlflow_app = AmlIdApp(mlflow_app, ids)

        stats, faults = Stats(), Faults()
        history, blob_app, artifacts_info = _artifact_services(
            args, state_dir, identity, urls, stats, faults, ids
        )
        tracking_uri = tracking_uri_for(urls["workspace"], identity)
        workspace_url = urls["workspace"]
        apps = {
            "authority": AuthorityApp(urls["authority"], tokens, stats),
            "arm": ArmApp(
                identity,
                tokens,
                stats,
                urls["authority"],
                {"mlFlowTrackingUri": tracking_uri, "discoveryUrl": workspace_url + "/discovery"},
            ),
            "workspace": WorkspaceApp(
                mlflow_app,
                tokens,
                faults,
                stats,
                AdminApp(identity.admin_key, faults, stats, tokens),
                urls["authority"],
                discovery_document(workspace_url, urls["ui"]),
                None if args.no_query_limits else query_limits.check_request,
                history,
            ),
            # Plain HTTP, no auth, no prefix: the MLflow UI for the developer on this machine.
            "ui": mlflow_app,
            "blob": blob_app,
        }
        for name in SERVICES:
            server = EmulatorHTTPServer(
                sockets[name],
                apps[name],
                tls=None if name == "ui" else tls,
                log_requests=args.log_requests,
            )
            server.start(f"emulator-{name}")
            self.servers[name] = server
        # The UI lists and downloads `azureml://` run artifacts through the bridge (see ui_access).
        from spark_aml_bridge.emulator.ui_access import open_ui_session

        open_ui_session(tracking_uri, identity, urls["authority"], str(ca_bundle))
        self.info = build_info(
            identity,
            urls,
            ca_bundle,
            state_dir,
            args.token_lifetime,
            mlflow_version,
            not args.no_query_limits,
            artifacts_info,
        )
        self.info.update(self._databricks_info())
        self.info["workspaces"] = workspaces_info(identity, extra_workspaces, tracking_uri)
        # Experiment and run ids are GUIDs, as on Azure ML (false only with --mlflow-ids).
        self.info["guid_ids"] = not args.mlflow_ids
        # Written last: their appearance means "ready".
        env_text = "".join(line + "\n" for line in self.info["env_lines"])
        write_private(state_dir / ENV_FILE, env_text.encode())
        write_json(state_dir / INFO_FILE, self.info)

    def _databricks_info(self) -> dict[str, Any]:
        """emulator.json keys of the Databricks workspace double (the `databricks` URI's host)."""
        if self.databricks is None:
            return {"databricks_host": None, "databricks_token": None, "databricks_org_id": None}
        info = self.databricks.wait_ready()
        return {
            "databricks_host": info["host"],
            "databricks_token": info["token"],
            "databricks_org_id": info["org_id"],
        }

    def stop(self) -> None:
        for name in (INFO_FILE, ENV_FILE):
            (self.state_dir / name).unlink(missing_ok=True)
        if self.databricks is not None:
            self.databricks.stop()
        # In parallel: each accept loop takes up to its poll interval to notice.
        stoppers = [
            threading.Thread(target=server.stop, name=f"stop-{name}")
            for name, server in self.servers.items()
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        self.servers.clear()


def _artifact_services(
    args: argparse.Namespace,
    state_dir: Path,
    identity: Identity,
    urls: dict[str, str],
    stats: Any,
    faults: Any,
    ids: Any = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """(run-history WSGI app, blob endpoint WSGI app, their emulator.json keys)."""
    from spark_aml_bridge.emulator.blobs import ARTIFACT_CONTAINER, BLOBS_DIR, BlobApp, BlobStore
    from spark_aml_bridge.emulator.history import (
        HISTORY_DB,
        ArtifactIndex,
        HistoryApp,
        run_lookup_from_mlflow,
    )
    from spark_aml_bridge.emulator.sas import (
        AZURITE_KEY,
        BlobAccount,
        SasIssuer,
        load_or_create_account,
    )

    local_account = load_or_create_account(state_dir)
    store = BlobStore(state_dir / BLOBS_DIR, local_account.name)
    store.create_container(ARTIFACT_CONTAINER)
    blob_app = BlobApp(store, local_account, faults, stats)
    if args.blob_backend == "azurite":
        endpoint = args.azurite_blob_url.rstrip("/")
        account = BlobAccount(endpoint.rsplit("/", 1)[1], args.azurite_account_key or AZURITE_KEY)
        _create_azurite_container(endpoint, account, ARTIFACT_CONTAINER)
    else:
        endpoint = f"{urls['blob']}/{local_account.name}"
        account = local_account
    history_url = urls["workspace"] + f"/history/v1.0{identity.workspace_arm_id}"
    history = HistoryApp(
        ArtifactIndex(state_dir / HISTORY_DB),
        SasIssuer(account, endpoint, args.sas_lifetime),
        ARTIFACT_CONTAINER,
        run_lookup_from_mlflow(ids),
        urls["workspace"],
        stats,
        args.artifact_page_size,
    )
    info = {
        "history_url": history_url,
        "blob_endpoint": endpoint,
        "blob_account": account.name,
        "blob_account_key": account.key,
        "blob_container": ARTIFACT_CONTAINER,
        "blob_backend": args.blob_backend,
        "sas_lifetime": args.sas_lifetime,
        "artifact_page_size": args.artifact_page_size,
    }
    return history, blob_app, info


def _create_azurite_container(endpoint: str, account: Any, container: str) -> None:
    """Create the artifact container in Azurite (shared key auth), or fail startup clearly."""
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient(
        endpoint,
        credential={"account_name": account.name, "account_key": account.key},
        retry_total=2,
        initial_backoff=0.2,
        increment_base=1,
        connection_timeout=5,
    )
    try:
        client.create_container(container)
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise SystemExit(
            f"Azurite at {endpoint} did not create container {container!r}: {exc}"
        ) from None
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT. Returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.stop:
        from spark_aml_bridge.emulator.lifecycle import stop_detached

        return stop_detached(Path(args.state_dir))
    if args.detach:
        from spark_aml_bridge.emulator.lifecycle import start_detached

        return start_detached(Path(args.state_dir), [a for a in argv if a != "--detach"])
    if args.token_lifetime < 1:
        print("--token-lifetime must be at least 1 second", file=sys.stderr)
        return 2
    if args.sas_lifetime < 1 or args.artifact_page_size < 1:
        print("--sas-lifetime and --artifact-page-size must be at least 1", file=sys.stderr)
        return 2
    names = [n.lower() for n in args.workspace_name or []]
    if len(set(names)) != len(names):
        print("each --workspace-name must be different", file=sys.stderr)
        return 2
    if args.blob_backend == "azurite" and not args.azurite_blob_url:
        print("--blob-backend azurite needs --azurite-blob-url", file=sys.stderr)
        return 2
    # Nothing here may reach outside the machine; MLflow 3 reads these at import.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    started = time.monotonic()
    state_dir = Path(args.state_dir).expanduser().resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    other = _running_pid(state_dir / INFO_FILE)
    if other is not None:
        print(
            f"An emulator (pid {other}) already serves {state_dir}. Stop it first, or pass "
            "another --state-dir.",
            file=sys.stderr,
        )
        return 1
    emulator = Emulator(args, state_dir)
    try:
        emulator.start()
        elapsed = time.monotonic() - started
        info = emulator.info
        print(
            f"spark-aml-bridge emulator ready in {elapsed:.1f}s (pid {os.getpid()})\n"
            f"  workspace  {info['tracking_uri']}\n"
            f"  MLflow UI  {info['ui_url']}\n"
            f"  settings   {state_dir / INFO_FILE}\n"
            f"  shell      source {info['env_file']}",
            flush=True,
        )
        _log.info("ready: %s", json.dumps({"startup_seconds": round(elapsed, 3)}))
        parent = os.getppid()
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                _log.info("parent process exited")
                break
        _log.info("stopping")
        return 0
    finally:
        emulator.stop()
        _log.info("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
