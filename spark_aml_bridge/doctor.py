"""``spark-aml-bridge doctor``: check each link of the chain and name the fix for each failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spark_aml_bridge.doctor_checks import Check
from spark_aml_bridge.errors import BridgeError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig


def _attempt(name: str, action: Callable[[], str]) -> tuple[Check, bool]:
    try:
        return Check(name, True, action()), True
    except BridgeError as exc:
        return Check(name, False, exc.problem, exc.fix), False
    except Exception as exc:  # noqa: BLE001 - doctor reports, it never crashes
        return Check(name, False, f"{type(exc).__name__}: {exc}", None), False


def run_checks(settings: dict[str, Any] | None = None) -> list[Check]:
    """Run every check in order; later checks are skipped once one they need has failed."""
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms import detect_platform

    checks: list[Check] = []
    platform = detect_platform()
    checks.append(Check("platform", True, platform.context().describe()))

    check, _ = _attempt("mlflow", _mlflow_version)
    checks.append(check)
    checks.extend(_plugin_checks())
    checks.extend(_model_format_note())

    state: dict[str, Any] = {}

    def config() -> str:
        state["config"] = resolve_config(settings or {})
        return repr(state["config"])

    check, ok = _attempt("settings", config)
    checks.append(check)
    if not ok:
        return checks
    checks.append(_backlog_check(state["config"]))

    def session() -> str:
        from spark_aml_bridge.session import open_session

        state["session"] = open_session(state["config"], platform, probe=False)
        return f"{state['session'].address} ({state['session'].tracking_uri})"

    check, ok = _attempt("workspace and token", session)
    checks.append(check)
    if not ok:
        return checks
    checks.append(Check("identity", True, state["session"].identity))
    from spark_aml_bridge import doctor_checks

    try:
        check = doctor_checks.clock_check(state["session"])
    except Exception as exc:  # noqa: BLE001 - the token check above already reported it
        check = Check("clock", True, f"not compared ({type(exc).__name__})", warning=True)
    checks.append(check)
    try:
        checks.extend(doctor_checks.spool_checks(state["config"]))
    except Exception as exc:  # noqa: BLE001 - doctor reports, it never crashes
        checks.append(Check("dual spool", False, f"{type(exc).__name__}: {exc}"))
    check, ok = _attempt("workspace reachable", lambda: _probe_workspace(state["session"]))
    checks.append(check)
    if ok:
        check, _ = _attempt("studio", lambda: _studio_link(state["session"]))
        checks.append(check)
    return checks


def _studio_link(session: Any) -> str:
    """Where a person opens this workspace's runs (Azure ML studio; the emulator's MLflow UI)."""
    from spark_aml_bridge import links

    base = links.studio_base(session.address, session.ca_bundle)
    return links.workspace_link(base, session.address, links.session_tenant(session))


def _backlog_check(config: BridgeConfig) -> Check:
    """Durable writes / dual tracking: writes waiting in the local spools (left by processes that
    are gone, too), which the next connect() or `spark-aml-bridge mirror replay` sends."""
    from pathlib import Path

    from spark_aml_bridge.dual.api import status
    from spark_aml_bridge.dual.spool import default_spool_dir

    folder = Path(config.dual_spool_dir or default_spool_dir()).expanduser()
    durable = "on" if config.durable_writes else "off"
    try:
        info = status(folder)
    except Exception as exc:  # noqa: BLE001 - doctor reports, it never crashes
        return Check("write backlog", False, f"{folder}: {type(exc).__name__}: {exc}")
    totals = info["totals"]
    orphaned = sum(1 for s in info["spools"] if not s.get("owner_alive", True))
    detail = (
        f"durable writes {durable}; {totals['pending_ops']} write(s), "
        f"{totals['pending_metrics']} metric point(s) pending in {len(info['spools'])} spool(s) "
        f"under {folder}"
    )
    if orphaned:
        return Check(
            "write backlog",
            True,
            detail + f"; {orphaned} left by processes that are gone",
            "run `spark-aml-bridge mirror replay` (or connect() again) to send them",
            warning=True,
        )
    return Check("write backlog", True, detail)


def _mlflow_version() -> str:
    from spark_aml_bridge.bridge import require_mlflow

    mlflow = require_mlflow()
    return f"MLflow {mlflow.__version__}"


def _model_format_note() -> list[Check]:
    try:
        import mlflow
        from packaging.version import Version
    except ImportError:
        return []
    if Version(mlflow.__version__) < Version("3.14"):
        return []
    return [
        Check(
            "sklearn model format",
            True,
            f"MLflow {mlflow.__version__} saves sklearn models with skops outside Databricks; "
            "skops refuses pipelines holding e.g. XGBoost estimators",
            fix="pass serialization_format='cloudpickle' to mlflow.sklearn.log_model for those",
            warning=True,
        )
    ]


def _plugin_checks() -> list[Check]:
    from spark_aml_bridge.azureml.ownership import competing_plugins

    others = competing_plugins()
    if not others:
        return [Check("azureml scheme", True, "served by spark_aml_bridge")]
    return [
        Check(
            "azureml scheme",
            True,
            f"also claimed by {', '.join(others)}; connect() re-registers spark_aml_bridge, but "
            "zero-code processes (MLFLOW_TRACKING_URI only) may get the other plugin",
            fix="pip uninstall azureml-mlflow (spark_aml_bridge replaces it)",
            warning=True,
        )
    ]


def _probe_workspace(session: Any) -> str:
    from spark_aml_bridge.azureml.probe import probe_workspace

    return probe_workspace(session.address, session.ca_bundle)


def doctor(settings: dict[str, Any] | None = None, out: Callable[[str], Any] = print) -> int:
    checks = run_checks(settings)
    for check in checks:
        out(check.render())
    failed = [c for c in checks if not c.ok]
    out("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0
