"""Databricks: detection and context (``shim``), credential sources (``credentials``), the
cluster init script (``initscript``) and one-time job runs (``jobs``)."""
