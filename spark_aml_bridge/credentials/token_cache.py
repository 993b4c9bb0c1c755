"""A per-process bearer-token cache in front of an azure-identity credential.

Tokens are refreshed before they expire, by one thread at a time (others keep using the still
valid token meanwhile), and can be invalidated when the service answers 401. A token the service
rejected is never handed out again: credentials that cache tokens themselves (MSAL inside
azure-identity, IMDS, the Azure CLI) are asked again on a new instance and then with a claims
challenge, which bypasses their caches; a credential that still hands back the rejected token gets
one clear error. The cache is itself a ``TokenCredential`` for its scope, so azure-core clients
(ARM, blobs) can share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
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
# How many rejected tokens are remembered (as digests) so they are never handed out again.
_REJECTED_KEPT = 64


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def claims_challenge(not_before: float) -> str:
    """The claims request a resource sends after revoking a session (CAE): "a token issued at or
    after `not_before`". azure-identity credentials answer it by skipping every token cache."""
    return json.dumps(
        {"access_token": {"nbf": {"essential": True, "value": str(int(not_before))}}},
        separators=(",", ":"),
    )


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
        self._rejected: OrderedDict[str, float] = OrderedDict()  # digest -> when rejected
        self._challenge: str | None = None  # the service's claims challenge, if it sent one

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
    def invalidate(self, rejected_token: str, claims: str | None = None) -> None:
        """Forget `rejected_token` (answered 401): it is never handed out again, and the next
        token bypasses the credential's own cache. `claims`: the service's claims challenge."""
        with self._lock:
            self._rejected[_digest(rejected_token)] = time.time()
            while len(self._rejected) > _REJECTED_KEPT:
                self._rejected.popitem(last=False)
            if claims:
                self._challenge = claims
            if self._token is not None and self._token.token == rejected_token:
                self._token = None
                self._refresh_at = 0.0
                # MSAL-based credentials cache tokens themselves; a new instance asks afresh.
                self._credential = None

    def is_rejected(self, token: str) -> bool:
        return _digest(token) in self._rejected

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
        """A token from the credential that the service has not rejected.

        A credential with its own cache can hand back the very token the service just refused
        (a revoked one, say): then a new instance of the credential is asked (an empty in-memory
        cache), and then the credential again with a claims challenge (azure-identity skips MSAL's
        and managed identity's caches for it). A rejected token is never returned.
        """
        token = self._ask(self._get_credential())
        if not self.is_rejected(token.token):
            return token
        _log.info("%s handed back a token the workspace rejected; asking afresh", self.description)
        previous = self._credential
        rebuilt = self._factory()
        if rebuilt is not previous:
            self._credential = rebuilt
            token = self._ask(rebuilt)
            if not self.is_rejected(token.token):
                return token
        claims = self._challenge or claims_challenge(max(self._rejected.values()))
        try:
            token = self._ask(self._get_credential(), claims=claims)
        except CredentialError as exc:
            raise self._stuck(f" and refused a claims challenge ({exc.problem})") from None
        if not self.is_rejected(token.token):
            self._challenge = None
            return token
        raise self._stuck("")

    def _stuck(self, extra: str) -> CredentialError:
        return CredentialError(
            f"{self.description} keeps handing back the token the workspace rejected{extra}; "
            "it is not sent again",
            "sign in again (e.g. `az login`), or check that the identity was not disabled or "
            "its sessions revoked; `spark-aml-bridge doctor` shows the identity in use",
        )

    def _ask(self, credential: TokenCredential, **kwargs: Any) -> AccessToken:
        from spark_aml_bridge.credentials.errors import explain_token_failure

        self.requests += 1
        try:
            token = credential.get_token(self.scope, **kwargs)
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
