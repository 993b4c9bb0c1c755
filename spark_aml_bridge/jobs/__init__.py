"""Scheduled jobs that carry the bridge settings: Databricks job submission, Synapse batch jobs."""
