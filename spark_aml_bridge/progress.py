"""Progress of long work (mirror backfill/replay, big artifact transfers) for the person waiting.

On a terminal: a live bar with count, bytes, rate and ETA, drawn by tqdm when it is installed
(`pip install 'spark-aml-bridge[progress]'`). Not on a terminal (logs, CI, notebooks' captured
output): nothing while it runs, then one summary line. Inside a Spark task: nothing at all
(executor output goes to the cluster's logs, hundreds of times over).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from spark_aml_bridge.spark_state import in_spark_task

# Artifact transfers at least this big show progress.
LARGE_BYTES = 100 * 1024 * 1024
LARGE_FILES = 1000


def _human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


class Progress:
    """One long operation. `advance(items, nbytes)` as work completes; `close()` at the end."""

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        total_bytes: int | None = None,
        unit: str = "item",
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.total_bytes = total_bytes
        self.count = 0
        self.nbytes = 0
        self._stream = stream if stream is not None else sys.stderr
        self._started = time.monotonic()
        self._closed = False
        self._silent = in_spark_task()
        self._bar: Any = None
        if not self._silent and _is_terminal(self._stream):
            self._bar = _tqdm_bar(label, total, total_bytes, unit, self._stream)

    @property
    def live(self) -> bool:
        """Whether a bar is drawn while the work runs."""
        return self._bar is not None

    def add_total(self, items: int) -> None:
        """More work became known (e.g. the next experiment's runs)."""
        if not items:
            return
        self.total = (self.total or 0) + items
        if self._bar is not None and not self.total_bytes:
            self._bar.total = self.total
            self._bar.refresh()

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        self.count += items
        self.nbytes += nbytes
        if self._bar is not None:
            # Bytes drive the bar when known (rate and ETA in bytes); the count goes in postfix.
            self._bar.update(nbytes if self.total_bytes else items)
            if self.total_bytes:
                done = f"{self.count}/{self.total}" if self.total else str(self.count)
                self._bar.set_postfix_str(f"{done} {self.unit}s", refresh=False)

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        text = f"{self.label}: {self.count} {self.unit}{'' if self.count == 1 else 's'}"
        if self.nbytes:
            text += f", {_human_bytes(self.nbytes)}"
        text += f" in {elapsed:.1f} s ({self.count / elapsed:.1f} {self.unit}s/s"
        if self.nbytes:
            text += f", {_human_bytes(self.nbytes / elapsed)}/s"
        return text + ")"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        if not self._silent:
            print(self.summary(), file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm_bar(
    label: str, total: int | None, total_bytes: int | None, unit: str, stream: TextIO
) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None  # the summary line still comes at the end
    # A terminal that reports no size (0x0, e.g. a fresh pty) would get no bar from tqdm: it
    # reads 0 lines as "no room". Assume 100 columns and 24 lines then.
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    width: dict[str, Any] = {"dynamic_ncols": True}
    if not size.columns or not size.lines:
        width = {"ncols": size.columns or 100, "nrows": size.lines or 24}
    if total_bytes:
        return tqdm(
            total=total_bytes,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=stream,
            **width,
        )
    return tqdm(total=total, desc=label, unit=unit, file=stream, **width)


def for_transfer(label: str, sizes: list[int]) -> Progress | None:
    """Progress for an artifact transfer, or None when it is small (under both thresholds)."""
    if len(sizes) < LARGE_FILES and sum(sizes) < LARGE_BYTES:
        return None
    return Progress(label, total=len(sizes), total_bytes=sum(sizes) or None, unit="file")
