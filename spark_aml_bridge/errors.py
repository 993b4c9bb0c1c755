"""Errors the bridge raises. Every message says what went wrong and how to fix it."""

from __future__ import annotations


class BridgeError(Exception):
    """Base error: `problem` plus one `fix` line, never a secret or a token."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}\n  Fix: {fix}")


class ConfigError(BridgeError, ValueError):
    """A setting is malformed or missing."""


class WorkspaceAddressError(ConfigError):
    """A workspace ARM id, tracking URI or its parts cannot be parsed."""


class CredentialError(BridgeError):
    """No token could be obtained."""


class WorkspaceUnreachableError(BridgeError):
    """The workspace (or ARM, or the authority) did not answer."""


class MlflowMissingError(BridgeError, ImportError):
    """MLflow is absent or older than supported."""
