"""Scheduled jobs that carry the bridge settings: the public paths the README documents. The code
lives with each platform (``platforms/databricks/jobs.py``, ``platforms/synapse/jobs.py``)."""
