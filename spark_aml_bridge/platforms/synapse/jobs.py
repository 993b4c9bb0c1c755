"""Submit a Synapse Spark batch job (Livy batch) that tracks to the workspace with no code.

The job's Spark conf carries the bridge's settings (the same entries as the pool configuration,
from the same table: ``pool_config.py``), so the job's driver and executors track to the
workspace even if the pool itself is not configured. Secrets never go into the payload: a service
principal's secret is named (Key Vault + secret name) and read at run time.

Submission goes through azure-synapse-spark's ``SparkClient`` (Livy API
``/livyApi/versions/{v}/sparkPools/{pool}/batches``), authenticated with an azure-identity
credential for ``https://dev.azuresynapse.net/.default``, chosen like every other bridge
credential (``credential=`` spec, or the platform's default chain).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spark_aml_bridge.errors import BridgeError, ConfigError

LIVY_API_VERSION = "2019-11-01-preview"
# Synapse's development endpoint and its token scope, per cloud.
DEV_ENDPOINT_SUFFIXES = {
    "AzureCloud": "dev.azuresynapse.net",
    "AzureChinaCloud": "dev.azuresynapse.azure.cn",
    "AzureUSGovernment": "dev.azuresynapse.usgovcloudapi.net",
}
TERMINAL_STATES = ("success", "dead", "killed", "error")


class BatchJobError(BridgeError):
    """The Synapse Livy API refused or failed the batch job."""


@dataclass
class SubmittedBatch:
    """A submitted batch: its Livy id and last known state (no secrets, no tokens)."""

    id: int
    name: str
    state: str | None
    pool: str
    endpoint: str
    app_id: str | None = None
    log: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        app = f", app {self.app_id}" if self.app_id else ""
        return f"batch {self.id} '{self.name}' on pool {self.pool}: {self.state}{app}"


def dev_endpoint(synapse_workspace: str, cloud: str = "AzureCloud") -> str:
    suffix = DEV_ENDPOINT_SUFFIXES.get(cloud)
    if suffix is None:
        raise ConfigError(
            f"no Synapse development endpoint is known for cloud {cloud!r}",
            "pass endpoint='https://<workspace>.<dev endpoint suffix>' explicitly",
        )
    return f"https://{synapse_workspace}.{suffix}"


def _scope(endpoint: str) -> str:
    from urllib.parse import urlsplit

    host = urlsplit(endpoint).netloc
    for suffix in DEV_ENDPOINT_SUFFIXES.values():
        if host.endswith(suffix):
            return f"https://{suffix}/.default"
    return "https://dev.azuresynapse.net/.default"


def batch_conf(
    settings: Mapping[str, Any] | None = None, extra_conf: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The job's Spark conf: the bridge's entries, then `extra_conf` (which must not override
    them with a secret-looking value)."""
    from spark_aml_bridge.config import SETTINGS
    from spark_aml_bridge.platforms.synapse.pool_config import config_from_settings, spark_conf_for

    conf = spark_conf_for(config_from_settings(settings))
    for key, value in (extra_conf or {}).items():
        for setting in SETTINGS:
            if setting.sensitive and key.lower().endswith(
                (setting.env.lower(), setting.conf_key.lower(), "azure_client_secret")
            ):
                raise ConfigError(
                    f"conf '{key}' would put a secret into the job payload",
                    "store the secret in Key Vault and pass key_vault_linked_service / "
                    "client_secret_name settings instead",
                )
        conf[key] = str(value)
    return conf


def _submit_credential(credential: Any, settings: Mapping[str, Any] | None) -> Any:
    """An azure-identity credential for the Synapse API, chosen like the bridge's own."""
    if credential is not None and not isinstance(credential, str):
        return credential
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms.registry import select_credential_for

    config = resolve_config({**dict(settings or {}), "credential": credential}, spark_conf={})
    return select_credential_for(config, os.environ).factory()


def _client(endpoint: str, pool: str, credential: Any, ca_bundle: str | None) -> Any:
    try:
        from azure.synapse.spark import SparkClient
    except ImportError:
        raise BridgeError(
            "azure-synapse-spark is not installed",
            "pip install 'spark-aml-bridge[synapse]'",
        ) from None
    kwargs: dict[str, Any] = {"credential_scopes": [_scope(endpoint)]}
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return SparkClient(credential, endpoint, pool, livy_api_version=LIVY_API_VERSION, **kwargs)


def _explain(exc: BaseException, endpoint: str, pool: str) -> BatchJobError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()[0][:300]
    if isinstance(exc, ClientAuthenticationError) or status == 401:
        return BatchJobError(
            f"the Synapse workspace at {endpoint} did not accept the credential: {text}",
            "use an identity of the workspace's tenant (AZURE_* env, or credential=)",
        )
    if status == 403:
        return BatchJobError(
            f"the Synapse workspace at {endpoint} refused to run jobs on pool '{pool}': {text}",
            "grant this identity the 'Synapse Compute Operator' role on the pool (or workspace)",
        )
    if status == 404:
        return BatchJobError(
            f"the Synapse workspace at {endpoint} has no Spark pool '{pool}': {text}",
            "check the pool name (--pool) and the workspace (--synapse-workspace / --endpoint)",
        )
    if isinstance(exc, HttpResponseError):
        return BatchJobError(f"the Synapse Livy API answered {status}: {text}")
    return BatchJobError(f"could not reach the Synapse workspace at {endpoint}: {text}")


def _submitted(job: Any, pool: str, endpoint: str) -> SubmittedBatch:
    return SubmittedBatch(
        id=int(job.id),
        name=job.name or "",
        state=str(job.state) if job.state is not None else None,
        pool=pool,
        endpoint=endpoint,
        app_id=job.app_id,
        log=list(job.log_lines or []),
    )


def submit_batch(
    file: str,
    *,
    pool: str,
    synapse_workspace: str | None = None,
    endpoint: str | None = None,
    name: str | None = None,
    arguments: Sequence[str] = (),
    conf: Mapping[str, str] | None = None,
    python_files: Sequence[str] = (),
    files: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    credential: Any = None,
    ca_bundle: str | None = None,
    executor_count: int | None = None,
    tags: Mapping[str, str] | None = None,
    wait: bool = False,
    timeout: float = 3600.0,
    poll_interval: float = 5.0,
) -> SubmittedBatch:
    """Submit `file` as a Spark batch job on `pool`, carrying the bridge's settings in its conf.

    `settings` are bridge settings by name (e.g. ``workspace``, ``region``,
    ``key_vault_linked_service``); ``SPARK_AML_BRIDGE_*`` env fills the rest. `credential` is for
    the Synapse API (an azure-identity credential or a spec string). `ca_bundle` is for a private
    endpoint's TLS. With `wait`, poll until the job ends.
    """
    from azure.core.exceptions import AzureError

    from spark_aml_bridge.config import resolve_config

    if endpoint is None:
        if not synapse_workspace:
            raise ConfigError(
                "no Synapse workspace is given", "pass synapse_workspace= (or endpoint=)"
            )
        cloud = resolve_config(dict(settings or {}), spark_conf={}).cloud
        endpoint = dev_endpoint(synapse_workspace, cloud)
    job_conf = batch_conf(settings, conf)
    from azure.synapse.spark.models import SparkBatchJobOptions

    options = SparkBatchJobOptions(
        name=name or file.rsplit("/", 1)[-1],
        file=file,
        arguments=list(arguments) or None,
        python_files=list(python_files) or None,
        files=list(files) or None,
        configuration=job_conf,
        executor_count=executor_count,
        tags=dict(tags) if tags else None,
    )
    client = _client(endpoint, pool, _submit_credential(credential, settings), ca_bundle)
    try:
        with client:
            job = client.spark_batch.create_spark_batch_job(options, detailed=True)
            batch = _submitted(job, pool, endpoint)
            deadline = time.monotonic() + timeout
            while wait and (batch.state or "") not in TERMINAL_STATES:
                if time.monotonic() > deadline:
                    raise BatchJobError(
                        f"batch {batch.id} did not finish within {timeout:.0f} s (state "
                        f"{batch.state})",
                        "look at the job in Synapse Studio (Monitor > Apache Spark applications)",
                    )
                time.sleep(poll_interval)
                job = client.spark_batch.get_spark_batch_job(batch.id, detailed=True)
                batch = _submitted(job, pool, endpoint)
            return batch
    except AzureError as exc:
        raise _explain(exc, endpoint, pool) from None


def get_batch(
    batch_id: int,
    *,
    pool: str,
    endpoint: str,
    credential: Any = None,
    settings: Mapping[str, Any] | None = None,
    ca_bundle: str | None = None,
) -> SubmittedBatch:
    """The current state of a submitted batch."""
    from azure.core.exceptions import AzureError

    client = _client(endpoint, pool, _submit_credential(credential, settings), ca_bundle)
    try:
        with client:
            job = client.spark_batch.get_spark_batch_job(batch_id, detailed=True)
            return _submitted(job, pool, endpoint)
    except AzureError as exc:
        raise _explain(exc, endpoint, pool) from None
