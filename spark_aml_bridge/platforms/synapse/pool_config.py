"""What a Synapse Spark pool needs so every notebook and job on it tracks to the workspace.

Generated from config.py's one settings table, so pool configuration, ``connect()`` and batch job
payloads can never disagree, and a sensitive setting can never appear (only Key Vault *names*).

Zero code works like this: MLflow builds its tracking store from ``MLFLOW_TRACKING_URI``; an
``azureml://`` URI makes it load this package's ``azureml`` store through MLflow's entry points,
which opens the workspace session from the ``spark.aml.bridge.*`` conf of the active session (the
driver) or the ``SPARK_AML_BRIDGE_*`` env (executors, which have no session conf). So the pool
configuration sets:

* ``spark.aml.bridge.<setting>``: the non-secret settings (the driver reads them; a notebook can
  override one with ``%%configure``);
* ``spark.yarn.appMasterEnv.MLFLOW_TRACKING_URI`` and ``spark.executorEnv.MLFLOW_TRACKING_URI``:
  the trigger, on the driver (Synapse runs Livy on YARN, the driver is the application master —
  VERIFY on a live pool) and on executors;
* ``spark.executorEnv.SPARK_AML_BRIDGE_<SETTING>``: the settings executors need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_aml_bridge._version import __version__
from spark_aml_bridge.errors import ConfigError

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig

APP_MASTER_ENV = "spark.yarn.appMasterEnv."
EXECUTOR_ENV = "spark.executorEnv."
FORMATS = ("text", "conf", "json", "configure")
# Settings made redundant once the workspace is given as its tracking URI.
_ADDRESS_PARTS = ("subscription_id", "resource_group", "workspace_name", "region")


@dataclass(frozen=True)
class PoolConfiguration:
    """A pool's requirements lines and Spark configuration properties (no secret, ever)."""

    requirements: list[str]
    spark_conf: dict[str, str]
    tracking_uri: str
    notes: list[str] = field(default_factory=list)

    def render(self, fmt: str = "text") -> str:
        if fmt == "conf":  # the pool's "Apache Spark configuration" file: one property a line
            return "".join(f"{key} {value}\n" for key, value in self.spark_conf.items())
        if fmt == "json":
            payload = {"requirements": self.requirements, "conf": self.spark_conf}
            return json.dumps(payload, indent=2) + "\n"
        if fmt == "configure":  # one session only: the notebook's first cell
            return "%%configure -f\n" + json.dumps({"conf": self.spark_conf}, indent=2) + "\n"
        if fmt != "text":
            raise ConfigError(f"unknown format {fmt!r}", "use one of: " + ", ".join(FORMATS))
        lines = [
            "# Synapse Spark pool configuration for spark-aml-bridge",
            f"# workspace: {self.tracking_uri}",
            "",
            "## requirements.txt (Manage > Apache Spark pools > Packages)",
            *self.requirements,
            "",
            "## Apache Spark configuration (Manage > Apache Spark configurations), one per line",
            *(f"{key} {value}" for key, value in self.spark_conf.items()),
        ]
        if self.notes:
            lines += ["", "## Notes", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def _tracking_uri(config: BridgeConfig) -> str:
    from spark_aml_bridge.workspace import address_from_settings

    return address_from_settings(config, need_host_for="the pool configuration").tracking_uri()


def _driver_only(spec: str) -> bool:
    from spark_aml_bridge.credentials.sources import parse_spec
    from spark_aml_bridge.platforms.synapse.credentials import DRIVER_ONLY_SOURCES

    return parse_spec(spec)[0] in DRIVER_ONLY_SOURCES


def synapse_pool_configuration(
    config: BridgeConfig, *, package: str | None = None
) -> PoolConfiguration:
    """The pool configuration for `config` (resolved settings; sensitive ones are refused)."""
    from spark_aml_bridge.config import SETTINGS
    from spark_aml_bridge.platforms.synapse.shim import PLATFORM_HINT_ENV

    for setting in SETTINGS:
        if setting.sensitive and getattr(config, setting.name) is not None:
            raise ConfigError(
                f"'{setting.name}' is a secret and cannot go into a pool configuration (Spark "
                "conf is shown in the Spark UI)",
                "store it in Key Vault and set key_vault_linked_service (or key_vault) and "
                "client_secret_name instead",
            )
    uri = _tracking_uri(config)
    resolved = config.replace(workspace=uri, **dict.fromkeys(_ADDRESS_PARTS))
    conf: dict[str, str] = dict(resolved.to_spark_conf())
    conf[APP_MASTER_ENV + "MLFLOW_TRACKING_URI"] = uri
    conf[EXECUTOR_ENV + "MLFLOW_TRACKING_URI"] = uri
    for name, value in resolved.to_env(for_executors=True).items():
        if name == "SPARK_AML_BRIDGE_CREDENTIAL" and _driver_only(value):
            continue  # executors use their default chain: env SP, or the driver's relayed token
        conf[EXECUTOR_ENV + name] = value
    # Executors may lack the runtime's markers (VERIFY AZURE_SERVICE there): name the platform.
    conf[EXECUTOR_ENV + PLATFORM_HINT_ENV] = "synapse"
    requirement = package or f"spark-aml-bridge=={__version__}"
    notes = [
        "No secret is in this configuration; a service principal's secret is read at run time "
        "from Key Vault (key_vault_linked_service / key_vault + client_secret_name).",
        "MLflow itself comes from the runtime; if the runtime has none, add 'mlflow-skinny' to "
        "requirements.txt.",
        "Batch scripts: create the SparkSession before the first MLflow call, so the driver reads "
        "the spark.aml.bridge.* properties.",
        "Executors get the tracking URI and settings from the pool; their token comes from the "
        "driver after spark_aml_bridge.connect(), or from their own service principal env.",
    ]
    return PoolConfiguration([requirement], conf, uri, notes)


def spark_conf_for(config: BridgeConfig) -> dict[str, str]:
    """Just the Spark conf entries (what a batch job carries)."""
    return synapse_pool_configuration(config).spark_conf


def config_from_settings(settings: Mapping[str, Any] | None = None) -> BridgeConfig:
    """Resolve settings given by name (plus SPARK_AML_BRIDGE_* env), never from a Spark session."""
    from spark_aml_bridge.config import resolve_config

    return resolve_config(dict(settings or {}), spark_conf={})


# --- command line ---------------------------------------------------------------------------------


def add_setting_options(parser: Any) -> None:
    """One ``--<setting>`` option per non-sensitive setting of the table (sensitive: none)."""
    from spark_aml_bridge.config import SETTINGS

    group = parser.add_argument_group("bridge settings (default: SPARK_AML_BRIDGE_* env)")
    for setting in SETTINGS:
        if setting.sensitive:
            continue
        group.add_argument(
            "--" + setting.name.replace("_", "-"),
            dest=f"setting_{setting.name}",
            metavar="VALUE",
            help=setting.doc,
        )


def settings_from_args(args: Any) -> dict[str, Any]:
    from spark_aml_bridge.config import SETTINGS

    values = {s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS}
    return {k: v for k, v in values.items() if v is not None}


def _init_script(args: Any) -> int:
    config = config_from_settings(settings_from_args(args))
    pool = synapse_pool_configuration(config, package=args.package)
    text = pool.render(args.format)
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def _submit(args: Any) -> int:
    from spark_aml_bridge.platforms.synapse.jobs import submit_batch

    conf = {}
    for item in args.conf or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--conf {item!r} is not KEY=VALUE", "write --conf spark.x.y=value")
        conf[key] = value
    batch = submit_batch(
        args.file,
        pool=args.pool,
        synapse_workspace=args.synapse_workspace,
        endpoint=args.endpoint,
        name=args.name,
        arguments=args.arg or (),
        conf=conf,
        python_files=args.py_file or (),
        files=args.extra_file or (),
        settings=settings_from_args(args),
        credential=args.synapse_credential,
        ca_bundle=args.synapse_ca_bundle,
        executor_count=args.num_executors,
        wait=args.wait,
        timeout=args.timeout,
    )
    print(batch)
    for line in batch.log[-20:] if args.wait else ():
        print(f"  | {line}")
    return 0 if not args.wait or batch.state == "success" else 1


def add_synapse_commands(init_script_platforms: Any, submit_platforms: Any) -> None:
    """``init-script synapse`` and ``submit synapse`` (called by cli.build_parser)."""
    init = init_script_platforms.add_parser(
        "synapse",
        help="print a Synapse Spark pool's requirements line and Spark configuration",
        description="Print what a Synapse Spark pool needs so that every notebook and job on it "
        "tracks to the workspace without code: the requirements.txt line and the Spark "
        "configuration properties (no secrets).",
    )
    init.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (both parts, annotated), conf (properties file), json, or configure "
        "(a %%%%configure cell for one session); default %(default)s",
    )
    init.add_argument("--package", help="requirement line (default: this version from PyPI)")
    init.add_argument("--output", "-o", help="write to this file instead of stdout")
    add_setting_options(init)
    init.set_defaults(func=_init_script)

    submit = submit_platforms.add_parser(
        "synapse",
        help="submit a Spark batch job to a Synapse pool, carrying the bridge settings",
        description="Submit a Python file as a Synapse Spark batch job (azure-synapse-spark) "
        "whose Spark conf carries the bridge settings, so it tracks to the workspace.",
    )
    target = submit.add_mutually_exclusive_group(required=True)
    target.add_argument("--synapse-workspace", help="Synapse workspace name")
    target.add_argument("--endpoint", help="development endpoint URL (instead of the name)")
    submit.add_argument("--pool", required=True, help="Spark pool name")
    submit.add_argument("--file", required=True, help="main Python file (abfss:// path)")
    submit.add_argument("--name", help="job name (default: the file name)")
    submit.add_argument("--arg", action="append", help="an argument of the job (repeatable)")
    submit.add_argument("--conf", action="append", help="extra Spark conf KEY=VALUE (repeatable)")
    submit.add_argument("--py-file", action="append", help="extra Python file (repeatable)")
    submit.add_argument("--extra-file", action="append", help="file shipped to the job")
    submit.add_argument("--num-executors", type=int, help="number of executors")
    submit.add_argument(
        "--synapse-credential",
        help="credential spec for the Synapse API (default: the platform's chain)",
    )
    submit.add_argument("--synapse-ca-bundle", help="CA bundle for the Synapse endpoint's TLS")
    submit.add_argument("--wait", action="store_true", help="wait until the job ends")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to --wait")
    add_setting_options(submit)
    submit.set_defaults(func=_submit)
