"""``spark_aml_bridge.jobs.synapse``: the documented path of Synapse batch jobs (thin re-export
of ``platforms/synapse/jobs.py``)."""

from __future__ import annotations

from spark_aml_bridge.platforms.synapse.jobs import (
    BatchJobError,
    SubmittedBatch,
    batch_conf,
    dev_endpoint,
    get_batch,
    submit_batch,
)

__all__ = [
    "BatchJobError",
    "SubmittedBatch",
    "batch_conf",
    "dev_endpoint",
    "get_batch",
    "submit_batch",
]
