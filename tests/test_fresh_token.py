"""The 401 path gets a really new token from every kind of credential, and a rejected token is
never sent again (issue 13, item 7)."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from azure.core.credentials import AccessToken
from mlflow.tracking import MlflowClient

import spark_aml_bridge
from spark_aml_bridge.credentials.token_cache import TokenCache
from spark_aml_bridge.errors import CredentialError

SCOPE = "https://management.azure.com/.default"


class CachingCredential:
    """Like azure-identity over MSAL: hands back its cached token until a claims challenge."""

    def __init__(self, *, honour_claims: bool = True) -> None:
        self.honour_claims = honour_claims
        self.issued = 0
        self.claims: list[str] = []
        self._cached: AccessToken | None = None

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs) -> AccessToken:
        if claims:
            self.claims.append(claims)
        if self._cached is None or (claims and self.honour_claims):
            self.issued += 1
            self._cached = AccessToken(f"token-{self.issued}", int(time.time()) + 3600)
        return self._cached


def test_a_credential_with_its_own_cache_gets_a_claims_challenge_and_a_new_token():
    credential = CachingCredential()
    cache = TokenCache(lambda: credential, SCOPE)  # one instance, as connect(credential=obj)
    first = cache.token()
    cache.invalidate(first)
    second = cache.token()
    assert second != first
    assert len(credential.claims) == 1 and '"nbf"' in credential.claims[0]
    assert cache.token() == second  # cached again, no more challenges
    assert len(credential.claims) == 1


def test_a_rebuildable_credential_is_rebuilt_before_any_challenge():
    made: list[CachingCredential] = []

    def factory() -> CachingCredential:
        made.append(CachingCredential())
        made[-1].issued = 10 * len(made)  # each instance mints its own tokens
        return made[-1]

    cache = TokenCache(factory, SCOPE)
    first = cache.token()
    cache.invalidate(first)
    assert cache.token() != first
    assert len(made) == 2 and not any(c.claims for c in made)


def test_a_credential_that_keeps_the_rejected_token_fails_clearly_and_never_returns_it():
    credential = CachingCredential(honour_claims=False)
    cache = TokenCache(lambda: credential, SCOPE, description="MyCredential (given to connect)")
    first = cache.token()
    cache.invalidate(first)
    for _ in range(2):
        with pytest.raises(CredentialError) as info:
            cache.token()
        assert "keeps handing back the token the workspace rejected" in str(info.value)
        assert "Fix:" in str(info.value) and first not in str(info.value)


def test_the_services_own_claims_challenge_is_passed_on():
    credential = CachingCredential()
    cache = TokenCache(lambda: credential, SCOPE)
    first = cache.token()
    cache.invalidate(first, claims='{"access_token":{"xms_cc":{"values":["cp1"]}}}')
    cache.token()
    assert credential.claims == ['{"access_token":{"xms_cc":{"values":["cp1"]}}}']


def _client_secret_credential(info: dict):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )


def _connect_with(emulator, credential) -> None:
    info = emulator.info
    spark_aml_bridge.connect(
        info["tracking_uri"],
        credential=credential,
        ca_bundle=info["ca_bundle"],
        arm_endpoint=info["arm_endpoint"],
        authority=info["authority"],
    )


def test_a_revoked_token_of_a_given_client_secret_credential_is_replaced_and_sent_once(emulator):
    """azure-identity's ClientSecretCredential keeps its token in MSAL's cache (hour-long tokens
    here): after a revocation it would hand the same token back."""
    _connect_with(emulator, _client_secret_credential(emulator.info))
    mlflow.set_experiment(f"fresh-token-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        mlflow.log_metric("before", 1)
        emulator.reset_stats()
        emulator.revoke_tokens()
        mlflow.log_metric("after", 2)
        mlflow.log_metric("later", 3)
    stats = emulator.stats()
    emulator.reset()
    assert stats["auth_failures"] == 1  # the revoked token was sent once, never again
    assert stats["claims_challenges"] == 1 and stats["token_requests"]["total"] == 1
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics == {"before": 1, "after": 2, "later": 3}


def test_a_token_that_expires_while_mlflow_retries_through_an_outage_is_renewed(
    token_5s_emulator, monkeypatch: pytest.MonkeyPatch
):
    """The issue's failure: a request outlives its 5 s token inside MLflow's own retries (503 with
    Retry-After), twice in a row; the second 401 came back as "rejected a fresh token"."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    emulator = token_5s_emulator
    _connect_with(emulator, _client_secret_credential(emulator.info))
    mlflow.set_experiment(f"expiring-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run() as run:
        emulator.reset_stats()
        # 3 retries x 2 s per request, twice: each token is over 5 s old when the faults end.
        emulator.inject_faults(status=503, count=6, retry_after=2, path_contains="log-metric")
        mlflow.log_metric("m", 1.0)
    stats = emulator.stats()
    emulator.reset()
    assert stats["faults_injected"] == 6 and stats["auth_failures"] >= 1
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {"m": 1.0}
