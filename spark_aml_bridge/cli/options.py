"""Command-line options shared by sub-commands: one ``--<setting>`` option per setting."""

from __future__ import annotations

import argparse
from typing import Any


def add_setting_options(parser: argparse.ArgumentParser) -> None:
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


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from spark_aml_bridge.config import SETTINGS

    values = {s.name: getattr(args, f"setting_{s.name}", None) for s in SETTINGS}
    return {k: v for k, v in values.items() if v is not None}
