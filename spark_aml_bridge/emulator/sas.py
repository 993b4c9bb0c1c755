"""Blob SAS URLs: issued and checked with azure-storage-blob's own `generate_blob_sas`.

The emulator's storage account (name and key, persisted in the state dir) signs every content
URL the run-history service hands out: `cw` (create, write) for uploads, `r` for downloads, each
valid for `--sas-lifetime` seconds. The blob endpoint verifies a request by signing the query's
own fields again with the same SDK and key, then checks times, protocol, IP and permissions, as
Azure Storage does. With the Azurite backend the same issuer signs for Azurite's account instead.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import hmac
import ipaddress
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, quote

from spark_aml_bridge.emulator.files import read_json, write_json

BLOB_ACCOUNT_FILE = "blob-account.json"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
UPLOAD_PERMISSION = "cw"
DOWNLOAD_PERMISSION = "r"
_SAS_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclasses.dataclass(frozen=True)
class BlobAccount:
    name: str
    key: str


def load_or_create_account(state_dir: Path) -> BlobAccount:
    """The local blob endpoint's account: a storage-style name and a 64-byte base64 key."""
    path = state_dir / BLOB_ACCOUNT_FILE
    try:
        stored = read_json(path)
        return BlobAccount(str(stored["name"]), str(stored["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # Storage account names: 3-24 lowercase letters and digits.
    account = BlobAccount(
        "amlemu" + secrets.token_hex(6), base64.b64encode(secrets.token_bytes(64)).decode()
    )
    write_json(path, {"name": account.name, "key": account.key})
    return account


def sas_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime(_SAS_TIME)


class SasIssuer:
    """Makes blob URLs with a SAS for one account at one endpoint (`<endpoint>/<container>/…`)."""

    def __init__(self, account: BlobAccount, endpoint: str, lifetime: int) -> None:
        self.account = account
        self.endpoint = endpoint.rstrip("/")
        self.lifetime = lifetime

    def url(self, container: str, blob_name: str, permission: str) -> str:
        from azure.storage.blob import generate_blob_sas

        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.lifetime)
        token = generate_blob_sas(
            self.account.name,
            container,
            blob_name,
            account_key=self.account.key,
            permission=permission,
            expiry=sas_time(expiry),
        )
        # Quoted as azure-storage-blob quotes blob names in the URLs it builds.
        return f"{self.endpoint}/{container}/{quote(blob_name, safe='/~')}?{token}"


class SasRejected(Exception):
    """A SAS that does not authorize the request: Azure Storage's status, code and detail."""

    def __init__(self, status: int, code: str, detail: str | None = None) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail


_MANDATORY = ("sv", "se", "sr", "sp", "sig")
# Fields a blob SAS may carry that generate_blob_sas re-signs, by its keyword.
_OPTIONAL = {
    "st": "start",
    "sip": "ip",
    "spr": "protocol",
    "si": "policy_id",
    "rscc": "cache_control",
    "rscd": "content_disposition",
    "rsce": "content_encoding",
    "rscl": "content_language",
    "rsct": "content_type",
    "ses": "encryption_scope",
}


def _http_date(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(dt.timezone.utc), usegmt=True)


def _parse_sas_time(value: str) -> dt.datetime:
    """ISO 8601 as SAS tokens carry it: `2025-01-31T12:00:00Z`, `2025-01-31`, fractions too."""
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00Z"
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _ip_allowed(rule: str, address: str) -> bool:
    try:
        client = ipaddress.ip_address(address)
        low, _, high = rule.partition("-")
        first = ipaddress.ip_address(low)
        last = ipaddress.ip_address(high) if high else first
    except ValueError:
        return False
    return first <= client <= last


def verify_sas(
    account: BlobAccount,
    container: str,
    blob_name: str,
    query_string: str,
    needed: str,
    remote_addr: str,
    https: bool,
    now: dt.datetime | None = None,
) -> str:
    """Check a blob request's SAS; returns its permissions or raises SasRejected.

    `needed` is a set of permission letters any one of which authorizes the operation
    (`"cw"`: Put Blob and blocks, `"r"`: Get Blob and its properties).
    """
    from azure.storage.blob import generate_blob_sas

    query = {key: values[-1] for key, values in parse_qs(query_string, True).items()}
    if "sig" not in query and "sv" not in query:
        raise SasRejected(
            401,
            "NoAuthenticationInformation",
            "The request carries neither a SAS nor an Authorization header.",
        )
    for field in _MANDATORY:
        if not query.get(field):
            raise SasRejected(403, "AuthenticationFailed", f"{field} is mandatory. Cannot be empty")
    if query["sr"] != "b":
        raise SasRejected(
            403,
            "AuthenticationFailed",
            f"Signed resource '{query['sr']}' is not supported here (blob SAS only: sr=b).",
        )
    unsupported = sorted(k for k in query if k.startswith("sk") or k in ("sduoid", "scid"))
    if unsupported:
        raise SasRejected(
            403,
            "AuthenticationFailed",
            f"User delegation SAS fields {unsupported} are not supported by this endpoint.",
        )
    kwargs = {keyword: query[field] for field, keyword in _OPTIONAL.items() if query.get(field)}
    string_to_sign: list[str] = []
    try:
        expected = generate_blob_sas(
            account.name,
            container,
            blob_name,
            account_key=account.key,
            permission=query["sp"],
            expiry=query["se"],
            sts_hook=string_to_sign.append,
            **kwargs,
        )
    except (ValueError, TypeError) as exc:
        raise SasRejected(403, "AuthenticationFailed", f"Malformed SAS: {exc}") from None
    expected_query = parse_qs(expected, True)
    expected_sig = expected_query.get("sig", [""])[-1]
    signed_version = expected_query.get("sv", [""])[-1]
    if query["sv"] != signed_version or not hmac.compare_digest(
        expected_sig.encode(), query["sig"].encode()
    ):
        sts = (string_to_sign[0] if string_to_sign else "").replace("\n", "\\n")
        raise SasRejected(
            403,
            "AuthenticationFailed",
            f"Signature did not match. String to sign used was {sts}",
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        expiry = _parse_sas_time(query["se"])
        start = _parse_sas_time(query["st"]) if query.get("st") else None
    except ValueError:
        raise SasRejected(
            403, "AuthenticationFailed", "Signed time fields are malformed."
        ) from None
    if now >= expiry:
        raise SasRejected(
            403,
            "AuthenticationFailed",
            f"Signed expiry time [{_http_date(expiry)}] has to be after current time "
            f"[{_http_date(now)}]",
        )
    if start is not None and now < start:
        raise SasRejected(
            403,
            "AuthenticationFailed",
            f"Signed start time [{_http_date(start)}] has to be before current time "
            f"[{_http_date(now)}]",
        )
    protocols = query.get("spr", "https,http").split(",")
    if ("https" if https else "http") not in protocols:
        raise SasRejected(403, "AuthorizationProtocolMismatch")
    if query.get("sip") and not _ip_allowed(query["sip"], remote_addr):
        raise SasRejected(403, "AuthorizationSourceIPMismatch")
    permissions = query["sp"]
    if not set(needed) & set(permissions):
        raise SasRejected(403, "AuthorizationPermissionMismatch")
    return permissions
