"""Dual tracking: every MLflow write goes to a primary tracking server and, through a durable
on-disk spool drained in the background, to a mirror; reads come from the primary.

Modules: ``uri`` (the ``dual:`` tracking URI), ``names`` (experiment name mapping), ``spool``
(SQLite spool), ``codec`` (what a spooled operation holds), ``store`` (the MLflow tracking store),
``mirror`` (applies spooled operations to the mirror; id map), ``worker`` (background drain),
``sync`` (verify, backfill and reconcile by comparing both sides), ``api`` (status, replay,
verify, backfill for the CLI and notebooks). Importing this package is cheap.
"""
