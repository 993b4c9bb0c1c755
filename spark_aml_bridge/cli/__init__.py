"""The ``spark-aml-bridge`` command: ``app.py`` builds the parser; each sub-command's options live
in its own module here (``databricks``, ``synapse``, ``mirror``, ``options``) and call into the
platforms and packages, which never parse arguments themselves."""

from __future__ import annotations

from spark_aml_bridge.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
