"""The driver service executors get tokens from: key, pinned TLS, bounded token acquisitions."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time

import pytest
from azure.core.credentials import AccessToken

from spark_aml_bridge.credentials.driver_link import DriverLink, DriverTokenFactory
from spark_aml_bridge.credentials.token_cache import TokenCache
from spark_aml_bridge.driver_service import KEY_HEADER, TOKEN_PATH, DriverService
from spark_aml_bridge.errors import CredentialError

SCOPE = "https://management.azure.com/.default"


class CountingCredential:
    """Mints opaque tokens that live `lifetime` seconds and counts how often it was asked."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        return AccessToken(f"token-{self.calls}-{time.time()}", int(time.time() + self.lifetime))


@pytest.fixture
def service_and_link(tmp_path, monkeypatch):
    credential = CountingCredential(lifetime=3600)
    driver_tokens = TokenCache(lambda: credential, SCOPE, description="counting")
    service = DriverService(driver_tokens)
    key_file = tmp_path / "driver.key"
    key_file.write_text(service.key_material())
    monkeypatch.setattr(
        "spark_aml_bridge.credentials.driver_link._key_path", lambda name: str(key_file)
    )
    link = DriverLink(json.loads(service.handle("driver.key")))
    yield service, link, credential
    service.stop()


def test_executor_caches_bound_requests_to_one_per_token_lifetime(service_and_link, caplog):
    caplog.set_level(logging.DEBUG)
    service, link, credential = service_and_link
    executor_tokens = TokenCache(DriverTokenFactory(link), SCOPE, description="from the driver")
    tokens = {executor_tokens.token() for _ in range(500)}
    assert len(tokens) == 1
    stats = service.stats()
    assert stats["token_requests"] == 1 and credential.calls == 1
    token = tokens.pop()
    assert token not in caplog.text and service.key_material() not in caplog.text
    assert "secret" not in repr(service) and "secret" not in repr(link)


def test_a_rejected_token_is_replaced_not_handed_out_again(service_and_link):
    service, link, credential = service_and_link
    executor_tokens = TokenCache(DriverTokenFactory(link), SCOPE, description="from the driver")
    first = executor_tokens.token()
    executor_tokens.invalidate(first)  # what the auth provider does on a 401
    second = executor_tokens.token()
    assert second != first and credential.calls == 2
    assert service.stats()["token_requests"] == 2


def test_requests_without_the_key_are_refused(service_and_link):
    service, link, _ = service_and_link
    key = json.loads(service.key_material())
    context = ssl.create_default_context(cadata=key["cert"])
    context.check_hostname = False
    for headers in ({}, {KEY_HEADER: "not-the-key"}):
        connection = http.client.HTTPSConnection("127.0.0.1", service.port, context=context)
        connection.request("POST", TOKEN_PATH, body="{}", headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status == 401 and "token" not in json.loads(body)
    assert service.stats()["rejected"] == 2 and service.stats()["token_requests"] == 0


def test_executors_trust_only_the_drivers_own_certificate(service_and_link, tmp_path, monkeypatch):
    service, _, _ = service_and_link
    impostor = DriverService(None)
    try:
        # The real key, but an impostor's certificate: the TLS handshake fails.
        mixed = json.loads(service.key_material())
        mixed["cert"] = json.loads(impostor.key_material())["cert"]
        path = tmp_path / "mixed.key"
        path.write_text(json.dumps(mixed))
        link = DriverLink(json.loads(service.handle("mixed.key")))
        monkeypatch.setattr(
            "spark_aml_bridge.credentials.driver_link._key_path", lambda name: str(path)
        )
        with pytest.raises(CredentialError, match="did not answer"):
            link.token(SCOPE)
    finally:
        impostor.stop()
    assert service.stats()["token_requests"] == 0


def test_a_driver_without_tokens_to_hand_out_says_so(tmp_path, monkeypatch):
    service = DriverService(None)
    try:
        key_file = tmp_path / "k.key"
        key_file.write_text(service.key_material())
        monkeypatch.setattr(
            "spark_aml_bridge.credentials.driver_link._key_path", lambda name: str(key_file)
        )
        link = DriverLink(json.loads(service.handle("k.key")))
        assert link.serves_tokens is False
        with pytest.raises(CredentialError, match="does not hand out tokens"):
            link.token(SCOPE)
    finally:
        service.stop()
