"""``spark-aml-bridge mirror status | replay | verify | backfill``: dual tracking's mirror.

- ``status``: every spool in the spool directory: pending writes and metric points, size, dead
  letters, whether its process is alive.
- ``replay``: finish the spools of processes that are gone (pending writes, then reconcile the
  runs they had open); a live process's spool is left to that process.
- ``verify``: compare the primary and the mirror for the given runs/experiments and list every
  difference; exits 1 when there is one.
- ``backfill``: copy what the mirror lacks for the given runs/experiments (incremental,
  idempotent: a second backfill finds nothing to do).

The sides come from ``--primary``/``--mirror``, else from a ``dual:`` ``MLFLOW_TRACKING_URI``,
else from the dual_primary/dual_mirror settings (``native`` and ``workspace`` resolved as in
``connect()``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from spark_aml_bridge.errors import ConfigError


def add_mirror_commands(commands: Any) -> None:
    mirror = commands.add_parser(
        "mirror", help="dual tracking: the mirror's spool, replay, verify and backfill"
    )
    actions = mirror.add_subparsers(dest="mirror_command", required=True)

    status = actions.add_parser("status", help="pending writes of every spool, sizes, errors")
    _spool_dir(status)
    _json(status)
    status.set_defaults(func=_status)

    replay = actions.add_parser("replay", help="send what processes that are gone left behind")
    _spool_dir(replay)
    replay.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds (600)"
    )
    _json(replay)
    replay.set_defaults(func=_replay)

    for name, helptext, func in (
        ("verify", "list every difference between the primary and the mirror", _verify),
        ("backfill", "copy existing primary runs to the mirror (incremental)", _backfill),
    ):
        sub = actions.add_parser(name, help=helptext)
        sub.add_argument("--primary", help="primary tracking URI (default: settings)")
        sub.add_argument("--mirror", help="mirror tracking URI (default: settings)")
        sub.add_argument("--run-id", action="append", default=[], help="a primary run id")
        sub.add_argument(
            "--experiment-id", action="append", default=[], help="a primary experiment id"
        )
        sub.add_argument(
            "--experiment-name", action="append", default=[], help="a primary experiment name"
        )
        sub.add_argument("--all", action="store_true", help="every experiment of the primary")
        sub.add_argument("--no-artifacts", action="store_true", help="skip artifact files")
        _json(sub)
        sub.set_defaults(func=func)


def _spool_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spool-dir", help="the spool directory (default: the dual_spool_dir)")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _status(args: argparse.Namespace) -> int:
    from spark_aml_bridge.dual.api import status

    info = status(args.spool_dir)
    if args.json:
        _print_json(info)
        return 0
    print(f"spool directory: {info['spool_dir']}")
    if not info["spools"]:
        print("no spools: the mirror has everything")
    for spool in info["spools"]:
        if "error" in spool:
            print(f"  {spool['spool']}: {spool['error']}")
            continue
        owner = "alive" if spool["owner_alive"] else "gone (replay it)"
        print(
            f"  {spool['spool']}\n"
            f"    process {spool['owner_pid']} on {spool['owner_host']}: {owner}\n"
            f"    pending: {spool['pending_ops']} writes, {spool['pending_metrics']} metric "
            f"points (oldest {spool['oldest_pending_seconds']} s)\n"
            f"    size: {spool['size_bytes']} bytes; dead letters: {spool['dead_letters']}; "
            f"runs to reconcile: {spool['runs_to_reconcile']}"
        )
        for dead in spool.get("recent_dead_letters") or []:
            print(f"    refused: {dead['kind']} (run {dead['run']}): {dead['error']}")
    totals = info["totals"]
    print(
        f"total: {totals['pending_ops']} writes, {totals['pending_metrics']} metric points, "
        f"{totals['size_bytes']} bytes, {totals['dead_letters']} dead letters"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from spark_aml_bridge.dual.api import replay

    report = replay(args.spool_dir, timeout=args.timeout)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(
            f"replayed {len(report.replayed)} spool(s), removed {len(report.removed)}, "
            f"reconciled {report.reconciled_runs} run(s)"
        )
        for path in report.skipped_live:
            print(f"  left to its live process: {path}")
        for path, count in report.remaining.items():
            print(f"  still pending: {count} writes in {path}")
        for fixed in report.fixed:
            print(f"  fixed: {fixed}")
        for error in report.errors:
            print(f"  error: {error}", file=sys.stderr)
    return 0 if report.complete else 1


def resolve_pair(primary: str | None, mirror: str | None) -> tuple[str, str]:
    """The (primary, mirror) tracking URIs the command works on."""
    from spark_aml_bridge.dual.uri import SCHEME, parse_dual_uri

    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not (primary and mirror) and env_uri.startswith(SCHEME + ":"):
        env_primary, env_mirror = parse_dual_uri(env_uri)
        primary, mirror = primary or env_primary, mirror or env_mirror
    from spark_aml_bridge.config import resolve_config

    config = resolve_config({})
    primary = primary or config.dual_primary
    mirror = mirror or config.dual_mirror
    if primary in ("native", "workspace") or mirror in ("native", "workspace"):
        from spark_aml_bridge.dual.wiring import resolve_side
        from spark_aml_bridge.platforms import detect_platform
        from spark_aml_bridge.session import open_session

        platform = detect_platform()
        session = open_session(config, platform, probe=False)
        primary = resolve_side(primary, "primary", platform, session)
        mirror = resolve_side(mirror, "mirror", platform, session)
    return primary, mirror


def _compare(args: argparse.Namespace, fix: bool) -> int:
    from spark_aml_bridge.dual.api import Scope, backfill, verify
    from spark_aml_bridge.dual.uri import describe

    scope = Scope(
        run_ids=args.run_id,
        experiment_ids=args.experiment_id,
        experiment_names=args.experiment_name,
        all_experiments=args.all,
    )
    if not (
        scope.run_ids or scope.experiment_ids or scope.experiment_names or scope.all_experiments
    ):
        raise ConfigError(
            f"`mirror {'backfill' if fix else 'verify'}` needs something to compare",
            "pass --run-id, --experiment-id, --experiment-name (each may repeat) or --all",
        )
    primary, mirror = resolve_pair(args.primary, args.mirror)
    command = backfill if fix else verify
    diffs = command(scope, primary_uri=primary, mirror_uri=mirror, artifacts=not args.no_artifacts)
    unresolved = [d for d in diffs if not d.fixed]
    if args.json:
        _print_json(
            {
                "primary": describe(primary),
                "mirror": describe(mirror),
                "differences": [d.to_dict() for d in diffs],
                "unresolved": len(unresolved),
            }
        )
    else:
        print(f"primary {describe(primary)}  mirror {describe(mirror)}")
        for diff in diffs:
            print(f"  {diff}")
        if fix:
            fixed = len(diffs) - len(unresolved)
            print(f"backfill: {fixed} difference(s) fixed, {len(unresolved)} left")
        else:
            print("verify: no difference" if not diffs else f"verify: {len(diffs)} difference(s)")
    return 1 if unresolved else 0


def _verify(args: argparse.Namespace) -> int:
    return _compare(args, fix=False)


def _backfill(args: argparse.Namespace) -> int:
    return _compare(args, fix=True)
