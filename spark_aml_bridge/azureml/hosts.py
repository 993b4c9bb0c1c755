"""Which identity serves a URL: one entry per workspace (host + ARM path), never per host alone.

Every workspace of a region shares one host (``<region>.api.azureml.ms``), so the workspace is
read from the URL's path (``…/subscriptions/<sub>/resourceGroups/<rg>/providers/
Microsoft.MachineLearningServices/workspaces/<ws>…``, as MLflow REST and run-history URLs carry
it). A URL that names no registered workspace gets no token.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from spark_aml_bridge.credentials.token_cache import TokenCache

_SCOPE = re.compile(
    r"/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.machinelearningservices"
    r"/workspaces/[^/]+",
)


@dataclass(frozen=True)
class WorkspaceEndpoint:
    netloc: str
    scope_path: str  # the ARM id, lower-cased
    tokens: TokenCache
    identity: str


_lock = threading.Lock()
_workspaces: dict[tuple[str, str], WorkspaceEndpoint] = {}


def register_workspace(
    netloc: str | None, scope_path: str, tokens: TokenCache, identity: str
) -> WorkspaceEndpoint | None:
    """Serve this workspace's URLs with `tokens`; returns what served them before, if any."""
    if not netloc:
        return None
    key = (netloc.lower(), scope_path.lower())
    with _lock:
        previous = _workspaces.get(key)
        _workspaces[key] = WorkspaceEndpoint(key[0], key[1], tokens, identity)
        return previous


def restore_workspace(netloc: str, scope_path: str, previous: WorkspaceEndpoint | None) -> None:
    """Undo a registration whose identity the workspace refused: the earlier one serves again."""
    key = (netloc.lower(), scope_path.lower())
    with _lock:
        if previous is None:
            _workspaces.pop(key, None)
        else:
            _workspaces[key] = previous


def workspace_for_url(url: str) -> WorkspaceEndpoint | None:
    """The registered workspace whose host and ARM path this URL names, if any."""
    parts = urlsplit(url or "")
    match = _SCOPE.search(unquote(parts.path).lower())
    if match is None:
        return None
    return _workspaces.get((parts.netloc.lower(), match.group(0)))


def is_workspace_host(netloc: str) -> bool:
    """Whether some workspace this process connected to lives on this host."""
    wanted = netloc.lower()
    with _lock:
        return any(host == wanted for host, _ in _workspaces)


def _reset_for_tests() -> None:
    with _lock:
        _workspaces.clear()
