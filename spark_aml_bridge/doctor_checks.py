"""Doctor checks beyond the connection chain: the clock, and dual tracking's spool.

Each returns `Check`s (what `doctor` prints): one line saying what is wrong, one naming the fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_aml_bridge.config import BridgeConfig


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    def render(self) -> str:
        mark = "ok  " if self.ok and not self.warning else ("warn" if self.ok else "FAIL")
        text = f"[{mark}] {self.name}: {self.detail}"
        if self.fix:
            text += f"\n       fix: {self.fix}"
        return text


# Entra ID and Azure ML accept tokens up to about five minutes off; beyond that a skewed clock
# makes fresh tokens look expired (or not yet valid).
CLOCK_SKEW_LIMIT = 300.0


def local_time() -> float:
    """This machine's clock (a seam for tests that play a skewed clock)."""
    return time.time()


def clock_check(session: Any) -> Any:
    """Compare this machine's clock with the authority's, read from a fresh token's `iat`."""
    from spark_aml_bridge.clouds import get_cloud
    from spark_aml_bridge.credentials.identity import token_claims

    # A new credential instance: a token issued just now, not one cached an hour ago.
    scope = get_cloud(session.config.cloud).arm_scope
    token = session.credential.factory().get_token(scope).token
    now = local_time()
    issued = token_claims(token).get("iat")
    if not isinstance(issued, (int, float)):
        return Check("clock", True, "the token carries no issue time; not compared")
    skew = now - float(issued)
    if abs(skew) <= CLOCK_SKEW_LIMIT:
        return Check("clock", True, f"within {abs(skew):.0f} s of the token authority's")
    direction = "ahead of" if skew > 0 else "behind"
    return Check(
        "clock",
        False,
        f"this machine's clock is {abs(skew):.0f} s {direction} the token authority's: tokens "
        "look expired or not yet valid",
        fix="sync the clock (Linux: `timedatectl set-ntp true`; Windows: `w32tm /resync`; "
        "containers: fix the host's clock)",
    )


def spool_checks(config: BridgeConfig) -> list[Any]:
    """Dual tracking: writes waiting for the mirror, and writes the mirror refused."""
    from spark_aml_bridge.dual.api import resolve_spool_dir, status
    from spark_aml_bridge.dual.spool import spool_files

    folder = resolve_spool_dir(config.dual_spool_dir)
    if not folder.is_dir() or not spool_files(folder):
        if config.mode == "dual":
            return [Check("dual spool", True, f"nothing waiting in {folder}")]
        return []
    info = status(folder)
    spools = [s for s in info["spools"] if "error" not in s]
    checks: list[Any] = []
    orphaned = [s for s in spools if s.get("pending_ops") and not s.get("owner_alive")]
    live = [s for s in spools if s.get("pending_ops") and s.get("owner_alive")]
    if orphaned:
        writes = sum(s["pending_ops"] for s in orphaned)
        oldest = max(float(s.get("oldest_pending_seconds") or 0) for s in orphaned)
        checks.append(
            Check(
                "dual spool backlog",
                False,
                f"{writes} write(s) for the mirror left in {len(orphaned)} spool(s) of processes "
                f"that are gone (oldest {oldest:.0f} s) in {folder}",
                fix=f"spark-aml-bridge mirror replay --spool-dir {folder}",
            )
        )
    if live:
        writes = sum(s["pending_ops"] for s in live)
        checks.append(
            Check(
                "dual spool backlog",
                True,
                f"{writes} write(s) waiting in running processes' spools (they send them)",
                fix="if it keeps growing, the mirror is slow or down: see `workspace reachable`",
                warning=True,
            )
        )
    dead = sum(int(s.get("dead_letters") or 0) for s in spools)
    if dead:
        first = next((d for s in spools for d in s.get("recent_dead_letters") or []), None)
        example = f"; e.g. {first['kind']} of run {first['run']}: {first['error']}" if first else ""
        checks.append(
            Check(
                "dual dead letters",
                False,
                f"the mirror refused {dead} write(s){example}"[:400],
                fix=f"`spark-aml-bridge mirror status --spool-dir {folder}` lists them; fix the "
                "cause, then `spark-aml-bridge mirror backfill --run-id <primary run id>`",
            )
        )
    if not checks:
        checks.append(Check("dual spool", True, f"nothing waiting in {folder}"))
    return checks
