"""``init-script synapse`` and ``submit synapse``: options for the Synapse platform's pool
configuration (``platforms/synapse/pool_config.py``) and batch jobs
(``platforms/synapse/jobs.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from spark_aml_bridge.cli.options import add_setting_options, settings_from_args
from spark_aml_bridge.errors import ConfigError
from spark_aml_bridge.platforms.synapse.pool_config import (
    FORMATS,
    config_from_settings,
    synapse_pool_configuration,
)


def _init_script(args: argparse.Namespace) -> int:
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


def _submit(args: argparse.Namespace) -> int:
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


def add_commands(init_script_platforms: Any, submit_platforms: Any) -> None:
    """``init-script synapse`` and ``submit synapse`` (called by cli.app.build_parser)."""
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
