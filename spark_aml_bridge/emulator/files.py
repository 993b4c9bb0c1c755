"""Atomic, private file writes for the emulator's state dir (it holds keys and a client secret)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically (temp file + rename) with permissions `mode`.

    Readers never see a half-written file, which matters for emulator.json: its appearance is the
    "ready" signal that other processes poll for.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any, mode: int = 0o600) -> None:
    """Write `payload` as indented JSON, atomically."""
    write_private(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
