"""Bearer auth for MLflow's HTTP calls to a workspace, through MLflow's request-auth plugin point.

MLflow calls our provider for every request whose host credentials name it; the auth object sees
the final URL, so the token goes to registered workspaces only, and it is the token of the
identity that workspace (host + ARM path, hosts.py) was connected with. A 401 invalidates the token
and the request is sent once more with a fresh one; a second 401, or a 403, becomes one clear error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests
from requests.auth import AuthBase

from spark_aml_bridge.azureml.hosts import workspace_for_url
from spark_aml_bridge.errors import CredentialError

AUTH_PROVIDER_NAME = "spark-aml-bridge"
_RETRIED = "_spark_aml_bridge_retried"
_log = logging.getLogger(__name__)


def _service_message(response: requests.Response) -> str:
    """AML's error message from a 401/403 body (AML's own shape, or MLflow's)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if body.get("message"):
            return str(body["message"])[:300]
    return json.dumps(body)[:200]


class WorkspaceBearerAuth(AuthBase):
    """Adds the workspace's bearer token; never to hosts that are not registered workspaces."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        host = workspace_for_url(request.url or "")
        if host is None:
            return request
        token = host.tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._make_retry_hook(token))
        return request

    def _make_retry_hook(self, sent_token: str) -> Any:
        def on_response(response: requests.Response, **kwargs: Any) -> requests.Response:
            if response.status_code not in (401, 403):
                return response
            host = workspace_for_url(response.url)
            if host is None:
                return response
            message = _service_message(response)
            if response.status_code == 403:
                raise CredentialError(
                    f"the workspace at {host.netloc} refused {host.identity}: {message}",
                    "grant this identity a role on the workspace that allows MLflow tracking "
                    "(e.g. 'AzureML Data Scientist'), or use another credential",
                )
            if getattr(response.request, _RETRIED, False):
                raise CredentialError(
                    f"the workspace at {host.netloc} rejected a fresh token of {host.identity}: "
                    f"{message}",
                    "check that the credential's tenant is the workspace's tenant and that the "
                    "identity has access to the workspace",
                )
            _log.info("workspace answered 401; refreshing the token and retrying once")
            host.tokens.invalidate(sent_token)
            retry = response.request.copy()
            retry.headers["Authorization"] = f"Bearer {host.tokens.token()}"
            setattr(retry, _RETRIED, True)
            response.content  # noqa: B018 - drain so the connection can be reused
            response.close()
            new_response = response.connection.send(retry, **kwargs)
            new_response.history.append(response)
            new_response.request = retry
            return on_response(new_response, **kwargs)

        return on_response


_AUTH = WorkspaceBearerAuth()


def bearer_auth() -> WorkspaceBearerAuth:
    return _AUTH
