"""A per-process bearer-token cache in front of an azure-identity credential.

Tokens are refreshed before they expire, by one thread at a time (others keep using the still
valid token meanwhile), and can be invalidated when the service answers 401. The cache is itself
a ``TokenCredential`` for its scope, so azure-core clients (ARM, blobs) can share it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from spark_aml_bridge.errors import CredentialError

_log = logging.getLogger(__name__)

# Fraction of a token's lifetime kept as refresh margin when the lifetime is short
# (tests use lifetimes of seconds; a fixed 5-minute margin would refresh on every call).
_MARGIN_FRACTION = 0.25
# Services reject tokens that expire within ~30 s (databricks-vscode#583): never cut it closer.
_MIN_MARGIN = 30.0


class TokenCache:
    """Caches one scope's token from a credential; thread-safe; single flight refresh."""

    def __init__(
        self,
        credential_factory: Callable[[], TokenCredential],
        scope: str,
        *,
        refresh_margin: float = 300.0,
        description: str = "credential",
        on_refresh: Callable[[AccessToken], None] | None = None,
    ) -> None:
        self._factory = credential_factory
        self._credential: TokenCredential | None = None
        self.scope = scope
        self.description = description
        self._margin = refresh_margin
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        self._on_refresh = on_refresh
        self.requests = 0  # how many times the credential was asked: tests and doctor read it

    # -- the hot path -------------------------------------------------------------------------
    def token(self) -> str:
        """A valid bearer token, refreshed before expiry."""
        current = self._token
        now = time.time()
        if current is not None and now < self._refresh_at:
            return current.token
        return self._refresh(current, now).token

    def access_token(self) -> AccessToken:
        self.token()
        assert self._token is not None
        return self._token

    # -- TokenCredential protocol (for azure-core clients on the same scope) -----------------
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if scopes and scopes[0] != self.scope:
            return self._get_credential().get_token(*scopes, **kwargs)
        return self.access_token()

    # -- invalidation -------------------------------------------------------------------------
    def invalidate(self, rejected_token: str) -> None:
        """Forget `rejected_token` (answered 401) and bypass the credential's own cache once."""
        with self._lock:
            if self._token is not None and self._token.token == rejected_token:
                self._token = None
                self._refresh_at = 0.0
                # MSAL-based credentials cache tokens themselves; a new instance asks afresh.
                self._credential = None

    def seconds_until_refresh(self) -> float:
        return max(self._refresh_at - time.time(), 0.0)

    def on_refresh(self, callback: Callable[[AccessToken], None] | None) -> None:
        self._on_refresh = callback

    # -- internals ----------------------------------------------------------------------------
    def _get_credential(self) -> TokenCredential:
        if self._credential is None:
            self._credential = self._factory()
        return self._credential

    def _refresh(self, seen: AccessToken | None, now: float) -> AccessToken:
        still_valid = seen is not None and now < seen.expires_on - 1
        if still_valid:
            # Someone else may be refreshing already: keep using the valid token rather than wait.
            if not self._lock.acquire(blocking=False):
                return seen  # type: ignore[return-value]
        else:
            self._lock.acquire()
        try:
            current = self._token
            if current is not None and time.time() < self._refresh_at:
                return current
            try:
                fresh = self._fetch()
            except CredentialError:
                if still_valid and current is not None:
                    _log.warning("token refresh failed; the current token is still valid")
                    return current
                raise
            self._token = fresh
            lifetime = max(fresh.expires_on - time.time(), 0.0)
            margin = min(max(self._margin, _MIN_MARGIN), lifetime * _MARGIN_FRACTION)
            self._refresh_at = fresh.expires_on - margin
            callback = self._on_refresh
        finally:
            self._lock.release()
        if callback is not None:
            try:
                callback(fresh)
            except Exception:  # noqa: BLE001 - a listener must never break token use
                _log.exception("token refresh listener failed")
        return fresh

    def _fetch(self) -> AccessToken:
        from spark_aml_bridge.credentials.errors import explain_token_failure

        self.requests += 1
        try:
            token = self._get_credential().get_token(self.scope)
        except CredentialError:
            raise
        except Exception as exc:  # noqa: BLE001 - every azure-identity failure gets explained
            raise explain_token_failure(self.description, exc) from None
        if not token or not token.token:
            raise CredentialError(
                f"{self.description} returned an empty token",
                "check the credential settings with `spark-aml-bridge doctor`",
            )
        return token

    def __repr__(self) -> str:
        state = "empty" if self._token is None else f"expires_on={int(self._token.expires_on)}"
        return f"TokenCache({self.description}, scope={self.scope}, {state})"
