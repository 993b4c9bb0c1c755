"""The emulator's MLflow UI reads run artifacts as any client does: through the bridge.

Runs keep `azureml://` artifact URIs, so the in-process MLflow server answers the UI's
artifact list/download calls with the bridge's `azureml` artifact repository, which needs a
workspace session. The UI process gets its own one here: the emulated service principal,
signed in at the emulator's authority, trusting the emulator's CA. Artifacts then flow through
the same run-history service and blob SAS URLs every client uses. The secret stays in this
process's memory (never in its environment, so child processes do not inherit it).
"""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger(__name__)


def open_ui_session(
    tracking_uri: str,
    identity: Any,
    authority_url: str,
    ca_bundle: str,
) -> Any:
    """Open (and register, for the artifact repository) this process's workspace session."""
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.platforms import detect_platform
    from spark_aml_bridge.session import open_session

    platform = detect_platform()
    config = resolve_config(
        {
            "workspace": tracking_uri,
            "credential": "service-principal",
            "tenant_id": identity.tenant_id,
            "client_id": identity.client_id,
            "client_secret": identity.client_secret,
            "authority": authority_url,
            "ca_bundle": ca_bundle,
            "executors": False,
        },
        env={},  # the emulator's own environment must not pick another identity
        spark_conf={},
        platform_defaults=platform.platform_defaults(),
    )
    # No probe: the workspace endpoint is this very process, already serving.
    session = open_session(config, platform, environ={}, probe=False)
    _log.info("MLflow UI reads workspace artifacts as %s", session.credential.description)
    return session
