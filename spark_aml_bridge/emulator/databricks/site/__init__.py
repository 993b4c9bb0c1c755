"""Modules a Databricks runtime has and the runtime double puts on ``sys.path``:
``dbruntime`` (what ``databricks.sdk.runtime`` imports) and ``databricks.service_credentials``."""
