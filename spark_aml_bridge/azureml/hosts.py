"""Which hosts are workspaces, and whose token each gets: tokens go to these hosts only."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.token_cache import TokenCache


@dataclass(frozen=True)
class WorkspaceHost:
    netloc: str
    tokens: TokenCache
    identity: str


_lock = threading.Lock()
_hosts: dict[str, WorkspaceHost] = {}


def register_host(netloc: str | None, tokens: TokenCache, identity: str) -> None:
    if not netloc:
        return
    with _lock:
        _hosts[netloc.lower()] = WorkspaceHost(netloc.lower(), tokens, identity)


def host_for(netloc: str) -> WorkspaceHost | None:
    return _hosts.get(netloc.lower())


def _reset_for_tests() -> None:
    with _lock:
        _hosts.clear()
