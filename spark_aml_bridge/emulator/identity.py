"""The emulated directory: tenant, service principal, managed identity, subscription, workspace.

Ids and secrets are random per state dir and persisted there, so exported environment lines
and stored MLflow data stay valid across restarts of the same dir.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import uuid
from pathlib import Path

from spark_aml_bridge.emulator.contract import IDENTITY_FILE
from spark_aml_bridge.emulator.files import read_json, write_json

DEFAULT_RESOURCE_GROUP = "rg-local"
DEFAULT_WORKSPACE = "ws-local"
REGION = "local"


@dataclasses.dataclass(frozen=True)
class Identity:
    tenant_id: str
    client_id: str
    client_secret: str
    sp_object_id: str
    mi_client_id: str
    mi_object_id: str
    mi_header: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    workspace_id: str
    admin_key: str

    @property
    def workspace_arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    def is_workspace(self, subscription_id: str, resource_group: str, workspace: str) -> bool:
        """Azure resource ids compare case-insensitively."""
        return (
            subscription_id.lower() == self.subscription_id.lower()
            and resource_group.lower() == self.resource_group.lower()
            and workspace.lower() == self.workspace_name.lower()
        )


def _client_secret() -> str:
    # Shaped like an Entra ID secret value ("xyz8Q~" + 34 chars), so nothing trips on its format.
    alphabet = string.ascii_letters + string.digits + "-_.~"
    head = "".join(secrets.choice(string.ascii_letters) for _ in range(3))
    return head + "8Q~" + "".join(secrets.choice(alphabet) for _ in range(34))


def _generated() -> dict[str, str]:
    return {
        "tenant_id": str(uuid.uuid4()),
        "client_id": str(uuid.uuid4()),
        "client_secret": _client_secret(),
        "sp_object_id": str(uuid.uuid4()),
        "mi_client_id": str(uuid.uuid4()),
        "mi_object_id": str(uuid.uuid4()),
        "mi_header": secrets.token_hex(16),
        "subscription_id": str(uuid.uuid4()),
        "resource_group": DEFAULT_RESOURCE_GROUP,
        "workspace_name": DEFAULT_WORKSPACE,
        "workspace_id": str(uuid.uuid4()),
        "admin_key": secrets.token_urlsafe(24),
    }


def load_or_create_identity(
    state_dir: Path,
    subscription_id: str | None = None,
    resource_group: str | None = None,
    workspace_name: str | None = None,
) -> Identity:
    """Read the persisted identity (creating missing fields); command-line overrides win."""
    path = state_dir / IDENTITY_FILE
    stored: dict[str, str] = read_json(path) if path.exists() else {}
    fields = {f.name for f in dataclasses.fields(Identity)}
    merged = {**_generated(), **{k: v for k, v in stored.items() if k in fields}}
    if merged != stored:
        write_json(path, merged)
    overrides = {
        "subscription_id": subscription_id,
        "resource_group": resource_group,
        "workspace_name": workspace_name,
    }
    merged.update({k: v for k, v in overrides.items() if v})
    return Identity(**merged)


WORKSPACES_FILE = "workspaces.json"


@dataclasses.dataclass(frozen=True)
class ExtraWorkspace:
    """Another workspace on the same host, with a service principal allowed on it only."""

    name: str
    client_id: str
    client_secret: str
    sp_object_id: str
    workspace_id: str

    def arm_id(self, identity: Identity) -> str:
        return (
            f"/subscriptions/{identity.subscription_id}/resourceGroups/{identity.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )


def load_or_create_workspaces(state_dir: Path, names: list[str]) -> list[ExtraWorkspace]:
    """The extra workspaces named (beyond the first), each with its own persisted principal."""
    path = state_dir / WORKSPACES_FILE
    stored: dict[str, dict[str, str]] = read_json(path) if path.exists() else {}
    workspaces = []
    for name in names:
        entry = stored.get(name.lower())
        if entry is None:
            entry = stored[name.lower()] = {
                "client_id": str(uuid.uuid4()),
                "client_secret": _client_secret(),
                "sp_object_id": str(uuid.uuid4()),
                "workspace_id": str(uuid.uuid4()),
            }
        workspaces.append(ExtraWorkspace(name=name, **entry))
    if workspaces:
        write_json(path, stored)
    return workspaces
