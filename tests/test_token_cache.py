"""The token cache on its own, driven by a credential whose clock and answers we control."""

from __future__ import annotations

import threading
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from spark_aml_bridge.credentials.token_cache import TokenCache
from spark_aml_bridge.errors import CredentialError

SCOPE = "https://management.azure.com/.default"


class CountingCredential:
    """Issues numbered tokens with a given lifetime; slow on purpose to expose races."""

    instances = 0

    def __init__(self, lifetime: float, delay: float = 0.0, fail: Exception | None = None):
        CountingCredential.instances += 1
        self.lifetime, self.delay, self.fail = lifetime, delay, fail
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        assert scopes == (SCOPE,)
        self.calls += 1
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return AccessToken(f"token-{self.calls}", time.time() + self.lifetime)


def test_token_is_cached_until_the_refresh_margin():
    credential = CountingCredential(lifetime=3600)
    cache = TokenCache(lambda: credential, SCOPE, refresh_margin=300)
    tokens = {cache.token() for _ in range(1000)}
    assert tokens == {"token-1"} and credential.calls == 1


def test_short_lived_tokens_refresh_before_expiry_not_per_call():
    credential = CountingCredential(lifetime=2)
    cache = TokenCache(lambda: credential, SCOPE, refresh_margin=300)
    start = time.time()
    while time.time() - start < 4.5:
        token = cache.token()
        assert token.startswith("token-")
        time.sleep(0.01)
    # margin is a quarter of the lifetime: one refresh every ~1.5 s, never one per call
    assert 2 <= credential.calls <= 5


def test_single_flight_under_threads():
    credential = CountingCredential(lifetime=3600, delay=0.3)
    cache = TokenCache(lambda: credential, SCOPE)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.token())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert credential.calls == 1 and set(results) == {"token-1"}


def test_invalidate_builds_a_new_credential_to_bypass_its_cache():
    made: list[CountingCredential] = []

    def factory():
        made.append(CountingCredential(lifetime=3600))
        return made[-1]

    cache = TokenCache(factory, SCOPE)
    first = cache.token()
    cache.invalidate("some-other-token")  # a stale 401 for a token we no longer hold: no-op
    assert cache.token() == first and len(made) == 1
    cache.invalidate(first)
    # Every instance here mints "token-1" first: the rejected string is never handed out again.
    assert cache.token() != first
    assert len(made) >= 2


def test_failures_become_one_credential_error_without_secrets():
    failing = CountingCredential(
        3600,
        fail=ClientAuthenticationError(
            "AADSTS7000215: Invalid client secret provided. client_secret=abc123"
        ),
    )
    cache = TokenCache(lambda: failing, SCOPE, description="service principal 1234")
    with pytest.raises(CredentialError) as info:
        cache.token()
    message = str(info.value)
    assert "client secret is wrong or expired" in message and "Fix:" in message
    assert "abc123" not in message


def test_refresh_failure_keeps_a_still_valid_token():
    credential = CountingCredential(lifetime=8)
    cache = TokenCache(lambda: credential, SCOPE)
    first = cache.token()
    credential.fail = ClientAuthenticationError("authority down")
    time.sleep(6.4)  # inside the refresh margin (from 6 s) but before expiry (8 s)
    assert cache.token() == first
