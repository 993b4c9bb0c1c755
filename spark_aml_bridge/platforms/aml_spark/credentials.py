"""Credential sources of Azure ML serverless Spark: the identity a Spark job runs as.

* ``aml-user-identity``: a job (or interactive session) that runs as the submitting user gets
  that user's token on behalf of the job through azure-ai-ml's ``AzureMLOnBehalfOfCredential``
  (documented for "Azure Machine Learning Serverless Spark Compute"); the maintained library
  speaks the job's token service, so the bridge does not. Driver only.
* ``aml-managed-identity``: a job configured with a managed identity: azure-identity's
  ``ManagedIdentityCredential`` on the endpoint the job announces, the user-assigned identity
  named by ``DEFAULT_IDENTITY_CLIENT_ID`` when set.

Executors use the driver's token (``relayed-token``), as on Synapse.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from spark_aml_bridge.credentials.identity import managed_identity, managed_identity_endpoint
from spark_aml_bridge.credentials.sources import (
    BuiltCredential,
    CredentialSource,
    CredentialUnavailable,
    SourceContext,
)
from spark_aml_bridge.spark_state import spark_role

# azure-ai-ml's on-behalf-of credential reads this variable; without it the job does not run as
# a user (VERIFY on a live session which other variables a user-identity job sets).
OBO_TOKEN_ENV = "AZUREML_OBO_CANARY_TOKEN"
# The client id of the job's user-assigned identity, as on Azure ML compute (VERIFY on serverless
# Spark); without it the endpoint's default (system-assigned) identity answers.
IDENTITY_CLIENT_ID_ENV = "DEFAULT_IDENTITY_CLIENT_ID"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


def _build_user_identity(context: SourceContext, arg: str | None) -> BuiltCredential:
    env = context.environ
    if spark_role() == "executor":
        raise CredentialUnavailable(
            "driver only: the job's on-behalf-of token service is reached from the Spark driver "
            "(executors get the driver's token relayed)"
        )
    if not env.get(OBO_TOKEN_ENV):
        raise CredentialUnavailable(
            f"this job does not run as a user ({OBO_TOKEN_ENV} is not set; submit it with "
            "identity: user_identity)"
        )
    if not _importable("azure.ai.ml.identity"):
        raise CredentialUnavailable(
            "azure-ai-ml is not installed (pip install azure-ai-ml: its "
            "AzureMLOnBehalfOfCredential gets the job's user token)"
        )
    kwargs = context.azure_kwargs()

    def factory() -> Any:
        from azure.ai.ml.identity import AzureMLOnBehalfOfCredential

        return AzureMLOnBehalfOfCredential(**kwargs)

    return BuiltCredential(
        factory=factory,
        description="the Azure ML job's user identity (on behalf of the submitting user)",
        source="aml-user-identity",
        cache_key=("aml-user-identity", env.get("AZUREML_RUN_ID"), env.get("OID")),
    )


def _build_managed_identity(context: SourceContext, arg: str | None) -> BuiltCredential:
    env = context.environ
    if managed_identity_endpoint(env) is None:
        raise CredentialUnavailable(
            "this job announces no managed identity endpoint (IDENTITY_ENDPOINT/MSI_ENDPOINT); "
            "submit it with identity: managed"
        )
    return managed_identity(
        context,
        arg or env.get(IDENTITY_CLIENT_ID_ENV),
        description="the Azure ML job's managed identity",
        source="aml-managed-identity",
    )


# Azure ML serverless Spark's credential sources (platforms/registry.py gathers every platform's).
SOURCES: tuple[CredentialSource, ...] = (
    CredentialSource(
        "aml-user-identity",
        "the Azure ML job's user identity (azure-ai-ml's AzureMLOnBehalfOfCredential)",
        ("a job submitted with identity: user_identity", "azure-ai-ml"),
        _build_user_identity,
    ),
    CredentialSource(
        "aml-managed-identity",
        "the Azure ML job's managed identity",
        ("a job submitted with identity: managed",),
        _build_managed_identity,
    ),
)
