"""``init-script databricks`` and ``submit databricks``: options for the Databricks platform's
cluster init script (``platforms/databricks/initscript.py``) and one-time runs
(``platforms/databricks/jobs.py``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from spark_aml_bridge.cli.options import add_setting_options, settings_from_args
from spark_aml_bridge.platforms.databricks.initscript import (
    CLUSTER_PIP,
    CLUSTER_SPARK_ENV,
    databricks_init_script,
)
from spark_aml_bridge.platforms.databricks.jobs import SDK_AUTHENTICATION, submit_databricks_run


def add_commands(init_script_platforms: Any, submit_platforms: Any) -> None:
    """``init-script databricks`` and ``submit databricks`` (called by cli.app.build_parser)."""

    init = init_script_platforms.add_parser(
        "databricks",
        help="write a Databricks cluster-scoped init script (install + settings, no secrets)",
        description="Write a cluster-scoped init script: it installs spark-aml-bridge with the "
        "cluster's pip (leaving the runtime's MLflow and PySpark as they are) and exports the "
        "bridge settings for the driver and every worker, so every notebook and job on the "
        "cluster tracks to the workspace with no code.",
    )
    init.add_argument(
        "--client-secret-ref",
        metavar="'{{secrets/SCOPE/KEY}}'",
        help="secret reference for AZURE_CLIENT_SECRET (credential databricks-env); it goes into "
        "the cluster's environment variables, never into the script",
    )
    init.add_argument("--package", help="what pip installs (default: this version from PyPI)")
    init.add_argument("--pip", default=CLUSTER_PIP, help="the cluster's pip (%(default)s)")
    init.add_argument(
        "--spark-env", default=CLUSTER_SPARK_ENV, help="spark-env.sh to append to (%(default)s)"
    )
    init.add_argument("--output", "-o", help="write to this file (mode 755) instead of stdout")
    add_setting_options(init)
    init.set_defaults(func=_init_script_command)
    add_submit_command(submit_platforms)


def _init_script_command(args: argparse.Namespace) -> int:
    text = databricks_init_script(
        settings_from_args(args),
        client_secret_ref=args.client_secret_ref,
        package=args.package,
        pip=args.pip,
        spark_env=args.spark_env,
        environ=os.environ,
    )
    if not args.output:
        print(text, end="")
        return 0
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(args.output, 0o755)
    print(
        f"wrote {args.output}: store it in a Unity Catalog volume or workspace files and add it to "
        "the cluster's init scripts (Advanced options > Init scripts)",
        file=sys.stderr,
    )
    return 0


def add_submit_command(submit_platforms: Any) -> None:

    submit = submit_platforms.add_parser(
        "databricks",
        help="submit a one-time Databricks run carrying the bridge settings (databricks-sdk)",
        description="Submit a one-time run (Python file, notebook or wheel task) whose new "
        "cluster carries the bridge settings in spark_env_vars, so it tracks to the workspace "
        "with no code. Secrets go only as {{secrets/<scope>/<key>}} references. "
        + SDK_AUTHENTICATION,
    )
    what = submit.add_mutually_exclusive_group(required=True)
    what.add_argument("--python-file", help="a Python file (/Workspace/..., dbfs:/..., or git)")
    what.add_argument("--notebook", help="a notebook path (/Users/...)")
    what.add_argument("--wheel-package", help="a Python wheel task's package name")
    submit.add_argument("--entry-point", help="the wheel task's entry point")
    submit.add_argument(
        "--parameter",
        action="append",
        default=[],
        help="a task parameter (repeatable; notebooks: NAME=VALUE)",
    )
    cluster = submit.add_mutually_exclusive_group(required=True)
    cluster.add_argument("--existing-cluster-id", help="run on this cluster (its env as is)")
    cluster.add_argument("--spark-version", help="new cluster's runtime, e.g. 15.4.x-scala2.12")
    submit.add_argument("--node-type-id", help="new cluster's node type, e.g. Standard_DS3_v2")
    submit.add_argument("--num-workers", type=int, default=1, help="new cluster's workers")
    submit.add_argument(
        "--client-secret-ref",
        metavar="'{{secrets/SCOPE/KEY}}'",
        help="secret reference for AZURE_CLIENT_SECRET (credential databricks-env)",
    )
    submit.add_argument(
        "--library",
        action="append",
        help="a PyPI requirement or .whl path to install (default: this spark-aml-bridge, unless "
        "--init-script is given)",
    )
    submit.add_argument("--init-script", help="the init script's path (/Volumes/... etc.)")
    submit.add_argument("--run-name", help="the run's name")
    submit.add_argument("--host", help="the Databricks workspace URL (default: SDK config)")
    submit.add_argument("--profile", help="a ~/.databrickscfg profile")
    submit.add_argument("--wait", action="store_true", help="wait for the run to finish")
    add_setting_options(submit)
    submit.set_defaults(func=_submit_command)


def _submit_command(args: argparse.Namespace) -> int:
    if args.python_file:
        kind, target = "python", args.python_file
    elif args.notebook:
        kind, target = "notebook", args.notebook
    else:
        kind, target = "wheel", args.wheel_package
    run = submit_databricks_run(
        kind,
        target,
        host=args.host,
        profile=args.profile,
        run_name=args.run_name,
        wait=args.wait,
        entry_point=args.entry_point,
        parameters=args.parameter,
        settings=settings_from_args(args),
        client_secret_ref=args.client_secret_ref,
        existing_cluster_id=args.existing_cluster_id,
        spark_version=args.spark_version,
        node_type_id=args.node_type_id,
        num_workers=args.num_workers,
        libraries=args.library,
        init_script=args.init_script,
        environ=os.environ,
    )
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(run)
    return 0 if not args.wait or run.state in (None, "SUCCESS") else 1
