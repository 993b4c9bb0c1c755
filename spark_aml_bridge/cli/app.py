"""The ``spark-aml-bridge`` command: its parser and ``main``."""

from __future__ import annotations

import argparse
import sys

from spark_aml_bridge._version import __version__
from spark_aml_bridge.errors import BridgeError


def _doctor(args: argparse.Namespace) -> int:
    from spark_aml_bridge.doctor import doctor

    settings = {"workspace": args.workspace, "credential": args.credential}
    return doctor({k: v for k, v in settings.items() if v})


def _settings(args: argparse.Namespace) -> int:
    from spark_aml_bridge.config import settings_table

    for name, env, conf, default, doc in settings_table():
        print(f"{name}\n    env: {env}\n    conf: {conf}\n    default: {default or '-'}\n    {doc}")
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from spark_aml_bridge.emulator.server import main as emulator_main

    # The emulator parses its own options again (they are declared once, in emulator/server.py).
    return emulator_main(args.argv[args.argv.index("emulator") + 1 :])


def _demo(args: argparse.Namespace) -> int:
    from spark_aml_bridge.demo import run_demo

    return run_demo(args.state_dir, serve=args.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-aml-bridge",
        description="Track MLflow runs from Databricks, Synapse or any Spark/Python process in an "
        "Azure Machine Learning workspace.",
    )
    parser.add_argument("--version", action="version", version=f"spark-aml-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    doctor = commands.add_parser(
        "doctor", help="check platform, settings, credential, token and workspace; name each fix"
    )
    doctor.add_argument("--workspace", help="ARM id or tracking URI (default: settings/env)")
    doctor.add_argument("--credential", help="credential spec (default: settings/env)")
    doctor.set_defaults(func=_doctor)

    settings = commands.add_parser("settings", help="list every setting, its env var and conf key")
    settings.set_defaults(func=_settings)

    from spark_aml_bridge.emulator.server import DESCRIPTION, add_arguments

    emulator = commands.add_parser(
        "emulator",
        help="run the local workspace emulator (Azure AD + ARM + AML MLflow endpoint)",
        description=DESCRIPTION,
        allow_abbrev=False,
    )
    add_arguments(emulator)
    emulator.set_defaults(func=_emulator)

    init_script = commands.add_parser(
        "init-script", help="print/write what a cluster or pool needs to track with no code"
    )
    init_script_platforms = init_script.add_subparsers(dest="platform", required=True)
    submit = commands.add_parser("submit", help="submit a scheduled job carrying the settings")
    submit_platforms = submit.add_subparsers(dest="platform", required=True)
    # Each platform with zero-code set-up or job submission adds its subcommands here.
    from spark_aml_bridge.cli import databricks, synapse

    for platform_commands in (databricks, synapse):
        platform_commands.add_commands(init_script_platforms, submit_platforms)
    del init_script_platforms, submit_platforms

    from spark_aml_bridge.cli.mirror import add_mirror_commands

    add_mirror_commands(commands)

    demo = commands.add_parser(
        "demo", help="start the emulator and track a small training through connect()"
    )
    demo.add_argument(
        "--state-dir", default=".state/demo", help="emulator state (default %(default)s)"
    )
    serve = demo.add_mutually_exclusive_group()
    serve.add_argument(
        "--serve",
        dest="serve",
        action="store_true",
        default=None,
        help="keep the emulator and its MLflow UI running until Ctrl-C",
    )
    serve.add_argument(
        "--no-serve",
        dest="serve",
        action="store_false",
        help="stop the emulator when the training is done",
    )
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
