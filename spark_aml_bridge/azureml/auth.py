"""Bearer auth for MLflow's HTTP calls to a workspace, through MLflow's request-auth plugin point.

MLflow calls our provider for every request whose host credentials name it; the auth object sees
the final URL, so the token goes to registered workspaces only, and it is the token of the
identity that workspace (host + ARM path, hosts.py) was connected with. A 401 invalidates the token
(it is never sent again) and the request is sent once more with a new one; a 401 for a token that
was still valid, after that, or a 403, becomes one clear error. A token can expire while MLflow's
own retries resend the same request through an outage: such a 401 gets another new token (a few
times at most), it says nothing about the identity.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import requests
from requests.auth import AuthBase

from spark_aml_bridge.azureml.hosts import workspace_for_url
from spark_aml_bridge.errors import CredentialError

AUTH_PROVIDER_NAME = "spark-aml-bridge"
_RETRIED = "_spark_aml_bridge_retried"
# New tokens one request may get for 401s of tokens that expired while it was being retried.
_MAX_RENEWALS = 4
_log = logging.getLogger(__name__)


def _service_message(response: requests.Response) -> str:
    """AML's error message from a 401/403 body (AML's own shape, or MLflow's), whole: it names
    the action and scope the identity lacks. Only a body that is no message at all is cut."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "").strip()[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:4000]
        if body.get("message"):
            return str(body["message"])[:4000]
    return json.dumps(body)[:200]


_last_status = threading.local()


def last_error_status() -> int | None:
    """The HTTP status of this thread's latest failed workspace response, if any."""
    return getattr(_last_status, "value", None)


class WorkspaceBearerAuth(AuthBase):
    """Adds the workspace's bearer token; never to hosts that are not registered workspaces."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        host = workspace_for_url(request.url or "")
        if host is None:
            return request
        token = host.tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token.token}"
        request.register_hook("response", self._make_retry_hook(token.token, token.expires_on))
        return request

    def _make_retry_hook(self, sent_token: str, expires_on: float) -> Any:
        sent = {"token": sent_token, "expires_on": expires_on}

        def on_response(response: requests.Response, **kwargs: Any) -> requests.Response:
            if response.status_code >= 400:
                # MLflow's RestException drops the status; failures.py names it from here.
                _last_status.value = response.status_code
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
            renewals = getattr(response.request, _RETRIED, 0)
            # Expired by now: it outlived MLflow's retries of this request, not a refusal.
            expired = time.time() >= sent["expires_on"] - 1
            host.tokens.invalidate(sent["token"], _claims_challenge(response))
            if renewals and (not expired or renewals >= _MAX_RENEWALS):
                raise CredentialError(
                    f"the workspace at {host.netloc} rejected a fresh token of {host.identity}: "
                    f"{message}",
                    "check that the credential's tenant is the workspace's tenant and that the "
                    "identity has access to the workspace",
                )
            _log.info("workspace answered 401; sending the request again with a new token")
            fresh = host.tokens.access_token()
            sent["token"], sent["expires_on"] = fresh.token, fresh.expires_on
            retry = response.request.copy()
            retry.headers["Authorization"] = f"Bearer {fresh.token}"
            setattr(retry, _RETRIED, renewals + 1)
            response.content  # noqa: B018 - drain so the connection can be reused
            response.close()
            new_response = response.connection.send(retry, **kwargs)
            new_response.history.append(response)
            new_response.request = retry
            return on_response(new_response, **kwargs)

        return on_response


def _claims_challenge(response: requests.Response) -> str | None:
    """The decoded `claims` of a CAE challenge (`WWW-Authenticate: Bearer ..., claims="<b64>"`)."""
    import base64
    import re

    header = response.headers.get("WWW-Authenticate") or ""
    match = re.search(r'claims="([^"]+)"', header)
    if not match:
        return None
    raw = match.group(1)
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except ValueError:
        return None


_AUTH = WorkspaceBearerAuth()


def bearer_auth() -> WorkspaceBearerAuth:
    return _AUTH
