"""Access tokens: RS256 JWTs shaped like Entra ID's v1 tokens for Azure Resource Manager.

The authority issues them; ARM and the workspace validate them (signature, audience, issuer,
tenant, lifetime) and honour revocation, so clients' refresh and expiry paths can be tested.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spark_aml_bridge.emulator.contract import SIGNING_KEY_FILE
from spark_aml_bridge.emulator.files import write_private
from spark_aml_bridge.emulator.identity import ExtraWorkspace, Identity

# What ARM itself accepts as `aud`; the workspace accepts the same set.
ARM_AUDIENCES = (
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
)


def arm_audience(resource: str) -> str | None:
    """The `aud` a token requested for `resource` carries, or None if it is not ARM."""
    bare = resource.strip().rstrip("/")
    if bare + "/" in ARM_AUDIENCES:
        return bare + "/"
    return None


def issuer_for(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a token is for: the service principal or the managed identity."""

    app_id: str
    object_id: str
    display_name: str
    # "1" = client secret, "2" = certificate / managed identity (Entra ID's appidacr values).
    appidacr: str
    mi_resource_id: str | None = None


@dataclasses.dataclass(frozen=True)
class TokenCheck:
    """Result of checking a bearer token. `problem` is None when the token is good."""

    claims: dict[str, Any] | None
    problem: str | None = None  # missing | invalid | expired | revoked | audience | tenant
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return key


class TokenService:
    """Issues and validates tokens for one tenant; holds revocation state (in memory)."""

    def __init__(
        self,
        state_dir: Path,
        identity: Identity,
        lifetime: int,
        extra_workspaces: list[ExtraWorkspace] | None = None,
    ) -> None:
        self.identity = identity
        # Further workspaces on the same host, each with a principal allowed on it only.
        self.extra_workspaces = list(extra_workspaces or [])
        self.lifetime = lifetime
        self._key = _load_or_create_key(state_dir / SIGNING_KEY_FILE)
        self._public_key = self._key.public_key()
        der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64url(hashlib.sha1(der).digest())
        self._lock = threading.Lock()
        # Exact issue times by `uti`: JWT `iat` has one-second resolution, too coarse to tell a
        # token minted just before a revocation from one minted just after it.
        self._issued_at: dict[str, float] = {}
        self._revoked_before: float | None = None

    @property
    def issuer(self) -> str:
        return issuer_for(self.identity.tenant_id)

    def service_principal(self) -> Principal:
        ident = self.identity
        return Principal(ident.client_id, ident.sp_object_id, "spark-aml-bridge-emulator-sp", "1")

    def principal_for_client(self, client_id: str) -> tuple[Principal, str] | None:
        """(principal, its client secret) of a service principal of this tenant."""
        ident = self.identity
        if client_id.lower() == ident.client_id.lower():
            return self.service_principal(), ident.client_secret
        for ws in self.extra_workspaces:
            if client_id.lower() == ws.client_id.lower():
                principal = Principal(ws.client_id, ws.sp_object_id, f"sp-{ws.name}", "1")
                return principal, ws.client_secret
        return None

    def may_use_workspace(self, claims: dict[str, Any], workspace: str) -> bool:
        """The role assignments: an extra workspace's principal is allowed there only; the
        first workspace allows every other principal of the tenant."""
        app_id = str(claims.get("appid") or claims.get("azp") or "").lower()
        owners = {ws.client_id.lower(): ws.name.lower() for ws in self.extra_workspaces}
        if workspace.lower() == self.identity.workspace_name.lower():
            return app_id not in owners
        return owners.get(app_id) == workspace.lower()

    def workspace_names(self) -> list[str]:
        return [self.identity.workspace_name, *(ws.name for ws in self.extra_workspaces)]

    def managed_identity(self) -> Principal:
        ident = self.identity
        mirid = (
            f"/subscriptions/{ident.subscription_id}/resourcegroups/{ident.resource_group}"
            "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-local"
        )
        return Principal(ident.mi_client_id, ident.mi_object_id, "id-local", "2", mirid)

    def jwks(self) -> dict[str, Any]:
        numbers = self._public_key.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        jwk = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url(n),
            "e": _b64url(e),
            "issuer": self.issuer,
        }
        return {"keys": [jwk]}

    def issue(self, principal: Principal, audience: str) -> tuple[str, int]:
        """Return (access token, expiry epoch seconds)."""
        now = time.time()
        iat = int(now)
        exp = iat + self.lifetime
        uti = _b64url(uuid.uuid4().bytes)
        tenant = self.identity.tenant_id
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "aio": _b64url(uuid.uuid4().bytes),
            "app_displayname": principal.display_name,
            "appid": principal.app_id,
            "appidacr": principal.appidacr,
            "idp": self.issuer,
            "idtyp": "app",
            "oid": principal.object_id,
            "rh": "0.emulator.",
            "sub": principal.object_id,
            "tid": tenant,
            "uti": uti,
            "ver": "1.0",
            "xms_idrel": "7 4",
        }
        if principal.mi_resource_id:
            claims["xms_mirid"] = principal.mi_resource_id
        token = jwt.encode(
            claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid}
        )
        with self._lock:
            self._issued_at[uti] = now
        return token, exp

    def revoke_all(self) -> float:
        """Reject every token issued before now; returns that instant (epoch seconds)."""
        with self._lock:
            self._revoked_before = time.time()
            return self._revoked_before

    def clear_revocation(self) -> None:
        with self._lock:
            self._revoked_before = None

    def _is_revoked(self, claims: dict[str, Any]) -> bool:
        with self._lock:
            if self._revoked_before is None:
                return False
            issued = self._issued_at.get(str(claims.get("uti")), float(claims.get("iat", 0)))
            return issued < self._revoked_before

    def check_header(self, authorization: str | None) -> TokenCheck:
        """Check an `Authorization` header value the way ARM and AML front ends do."""
        if not authorization:
            return TokenCheck(None, "missing", "Bearer token not provided.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return TokenCheck(None, "missing", "Bearer token not provided.")
        return self.check(token.strip())

    def check(self, token: str) -> TokenCheck:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                audience=list(ARM_AUDIENCES),
                issuer=self.issuer,
                options={"require": ["exp", "iat", "nbf", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            return TokenCheck(None, "expired", "The provided token has expired.")
        except jwt.InvalidAudienceError:
            aud = _unverified_claim(token, "aud")
            return TokenCheck(
                None,
                "audience",
                f"The provided token was issued for audience '{aud}'; it must be one of "
                f"{', '.join(ARM_AUDIENCES)}.",
            )
        except jwt.InvalidIssuerError:
            iss = _unverified_claim(token, "iss")
            return TokenCheck(
                None, "tenant", f"The provided token was issued by '{iss}', not {self.issuer}."
            )
        except jwt.PyJWTError as exc:
            return TokenCheck(None, "invalid", f"The provided token is invalid: {exc}.")
        if claims.get("tid") != self.identity.tenant_id:
            return TokenCheck(
                None, "tenant", f"The provided token is for tenant '{claims.get('tid')}'."
            )
        if self._is_revoked(claims):
            return TokenCheck(None, "revoked", "The provided token has been revoked.")
        return TokenCheck(claims)


def _unverified_claim(token: str, name: str) -> Any:
    try:
        return jwt.decode(token, options={"verify_signature": False}).get(name)
    except jwt.PyJWTError:
        return None
