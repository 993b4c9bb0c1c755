"""Credential sources that work on any machine: service principals, managed identity, Azure CLI.

Plus ``relayed-token``: on a Spark executor, the token the driver handed over (spark.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any

from spark_aml_bridge.credentials.identity import (
    managed_identity,
    managed_identity_endpoint,
    service_principal,
    short_id,
)
from spark_aml_bridge.credentials.sources import (
    BuiltCredential,
    CredentialSource,
    CredentialUnavailable,
    SourceContext,
)

RELAYED_TOKEN_ENV = "_SPARK_AML_BRIDGE_EXECUTOR_TOKEN"


def _service_principal(
    context: SourceContext,
    tenant_id: str | None,
    client_id: str | None,
    secret: str | None,
    certificate_path: str | None,
    origin: str,
    missing_hint: str,
) -> BuiltCredential:
    missing = [n for n, v in (("tenant id", tenant_id), ("client id", client_id)) if not v]
    if not secret and not certificate_path:
        missing.append("client secret or certificate")
    if missing:
        raise CredentialUnavailable(f"{', '.join(missing)} not set ({missing_hint})")
    return service_principal(
        context,
        tenant_id,
        client_id,
        secret=secret,
        certificate_path=certificate_path,
        origin=origin,
        source="service-principal" if origin != "from env" else "env",
    )


def _build_env(context: SourceContext, arg: str | None) -> BuiltCredential:
    env = context.environ
    return _service_principal(
        context,
        env.get("AZURE_TENANT_ID"),
        env.get("AZURE_CLIENT_ID"),
        env.get("AZURE_CLIENT_SECRET"),
        env.get("AZURE_CLIENT_CERTIFICATE_PATH"),
        "from env",
        "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
    )


def _build_service_principal(context: SourceContext, arg: str | None) -> BuiltCredential:
    config, env = context.config, context.environ
    tenant_id, client_id = config.tenant_id, config.client_id
    if arg:
        tenant_part, _, client_part = arg.partition("/")
        if not client_part:
            raise CredentialUnavailable(
                f"'service-principal:{arg}' must look like "
                "service-principal:<tenant-id>/<client-id>"
            )
        tenant_id, client_id = tenant_part, client_part
    return _service_principal(
        context,
        tenant_id or env.get("AZURE_TENANT_ID"),
        client_id or env.get("AZURE_CLIENT_ID"),
        config.client_secret or env.get("AZURE_CLIENT_SECRET"),
        config.client_certificate_path or env.get("AZURE_CLIENT_CERTIFICATE_PATH"),
        "from settings",
        "tenant_id=, client_id=, and client_secret= or SPARK_AML_BRIDGE_CLIENT_SECRET",
    )


def _build_managed_identity(
    context: SourceContext, arg: str | None, explicit: bool
) -> BuiltCredential:
    env = context.environ
    if not explicit and managed_identity_endpoint(env) is None:
        raise CredentialUnavailable(
            "no managed identity endpoint in the environment (IDENTITY_ENDPOINT/MSI_ENDPOINT); "
            "on an Azure VM choose credential='managed-identity' explicitly"
        )
    client_id = (arg or context.config.client_id) if explicit else arg
    return managed_identity(
        context, client_id, description="managed identity", source="managed-identity"
    )


def _build_azure_cli(context: SourceContext, arg: str | None) -> BuiltCredential:
    if shutil.which("az") is None:
        raise CredentialUnavailable("the Azure CLI ('az') is not on PATH")
    tenant_id = arg or context.config.tenant_id

    def factory() -> Any:
        from azure.identity import AzureCliCredential

        return AzureCliCredential(tenant_id=tenant_id) if tenant_id else AzureCliCredential()

    return BuiltCredential(
        factory=factory,
        description="Azure CLI login" + (f" (tenant {short_id(tenant_id)})" if tenant_id else ""),
        source="azure-cli",
        cache_key=("cli", tenant_id),
    )


def _build_device_code(context: SourceContext, arg: str | None) -> BuiltCredential:
    tenant_id = arg or context.config.tenant_id or context.environ.get("AZURE_TENANT_ID")
    kwargs = context.aad_kwargs()

    def prompt(verification_uri: str, user_code: str, expires_on: Any) -> None:
        print(
            f"To sign in, open {verification_uri} and enter the code {user_code}", file=sys.stderr
        )

    def factory() -> Any:
        from azure.identity import DeviceCodeCredential

        return DeviceCodeCredential(tenant_id=tenant_id, prompt_callback=prompt, **kwargs)

    return BuiltCredential(
        factory=factory,
        description="device-code sign-in",
        source="device-code",
        cache_key=("device-code", tenant_id),
    )


class RelayedTokenCredential:
    """A token minted on the driver and handed to this executor; it cannot refresh itself."""

    def __init__(self, raw: str) -> None:
        data = json.loads(raw)
        self._token, self._expires_on = data["token"], int(data["expires_on"])

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        from spark_aml_bridge.errors import CredentialError

        if time.time() >= self._expires_on:
            raise CredentialError(
                "the token the driver handed to this Spark executor has expired",
                "run the Spark job again after spark_aml_bridge.connect() on the driver, or give "
                "executors their own identity (service principal env vars on all nodes)",
            )
        return AccessToken(self._token, self._expires_on)

    def __repr__(self) -> str:
        return f"RelayedTokenCredential(expires_on={self._expires_on})"


def _build_relayed(context: SourceContext, arg: str | None) -> BuiltCredential:
    from spark_aml_bridge.credentials.driver_link import DriverTokenFactory, driver_link

    link = driver_link(context.environ)
    if link is not None and link.serves_tokens:
        # The driver's token service: fresh tokens for as long as the driver stays connected.
        return BuiltCredential(
            factory=DriverTokenFactory(link),
            description="tokens from the Spark driver",
            source="relayed-token",
            cache_key=("driver-service", link.url),
        )
    raw = context.environ.get(RELAYED_TOKEN_ENV) or os.environ.get(RELAYED_TOKEN_ENV)
    if not raw:
        from spark_aml_bridge.spark_state import spark_role

        if spark_role() == "executor":
            from spark_aml_bridge.credentials.driver_link import UNLINKED_TASK

            raise CredentialUnavailable(UNLINKED_TASK)
        raise CredentialUnavailable("no token was handed over by the driver")
    return BuiltCredential(
        factory=lambda: RelayedTokenCredential(raw),
        description="token relayed from the Spark driver",
        source="relayed-token",
        cache_key=("relayed", raw[-16:]),
    )


# The sources any machine offers, by name (platforms/registry.py gathers every platform's).
SOURCES: tuple[CredentialSource, ...] = (
    CredentialSource(
        "env",
        "service principal from AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET",
        (
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH",
        ),
        _build_env,
    ),
    CredentialSource(
        "service-principal",
        "service principal from the bridge settings",
        (
            "tenant_id",
            "client_id",
            "client_secret (SPARK_AML_BRIDGE_CLIENT_SECRET) or client_certificate_path",
        ),
        _build_service_principal,
    ),
    CredentialSource(
        "managed-identity",
        "Azure managed identity",
        (),
        lambda ctx, arg: _build_managed_identity(ctx, arg, explicit=True),
    ),
    # The default chain's variant only joins when the environment announces an endpoint, so a plain
    # laptop never waits on IMDS time-outs.
    CredentialSource(
        "managed-identity-env",
        "Azure managed identity announced by IDENTITY_ENDPOINT/MSI_ENDPOINT",
        ("IDENTITY_ENDPOINT",),
        lambda ctx, arg: _build_managed_identity(ctx, arg, explicit=False),
    ),
    CredentialSource("azure-cli", "Azure CLI login (az login)", ("az login",), _build_azure_cli),
    CredentialSource(
        "device-code", "interactive device-code sign-in", (), _build_device_code, explicit_only=True
    ),
    CredentialSource(
        "relayed-token",
        "a token handed from the Spark driver to its executors",
        (),
        _build_relayed,
    ),
)
