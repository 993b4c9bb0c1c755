"""Experiment names on the mirror: Databricks paths become plain names, and back.

Rules (setting ``dual_experiment_names``):

- ``auto`` (default): a path (``/Users/a/b/exp``) becomes its last segment (``exp``) unless the
  mirror is Databricks; a plain name becomes ``/Shared/<name>`` when the mirror is Databricks;
  anything else keeps its name.
- ``basename``: always the last path segment. ``identity``: always the same name.
- ``prefix:<text>``: ``<text>`` plus the last path segment (``prefix:/Shared/adb-``).
- a JSON object of exact names (``{"/Users/a/b/exp": "exp-a"}``); other names follow ``auto``.

When two primary experiments map to one name, the second gets ``-<its primary id>`` appended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from spark_aml_bridge.errors import ConfigError

MAX_NAME = 256


@dataclass(frozen=True)
class NameRule:
    kind: str = "auto"
    prefix: str = ""
    exact: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> NameRule:
        text = (raw or "auto").strip()
        if text in ("auto", "basename", "identity"):
            return cls(text)
        if text.startswith("prefix:"):
            return cls("prefix", prefix=text[len("prefix:") :])
        if text.startswith("{"):
            try:
                exact = json.loads(text)
            except ValueError as exc:
                raise ConfigError(
                    f"dual_experiment_names is not valid JSON: {exc}",
                    'use e.g. {"/Users/me/exp": "exp"}, or auto, basename, identity, prefix:<text>',
                ) from None
            if not isinstance(exact, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in exact.items()
            ):
                raise ConfigError(
                    "dual_experiment_names must map names to non-empty names",
                    'use e.g. {"/Users/me/exp": "exp"}',
                )
            return cls("exact", exact=exact)
        raise ConfigError(
            f"dual_experiment_names is '{text}'",
            "use auto, basename, identity, prefix:<text>, or a JSON object of exact names",
        )

    def mirror_name(self, primary_name: str, *, mirror_is_databricks: bool = False) -> str:
        if self.kind == "exact" and primary_name in self.exact:
            return self.exact[primary_name]
        if self.kind == "identity":
            return primary_name
        if self.kind == "basename":
            return _basename(primary_name)
        if self.kind == "prefix":
            return (self.prefix + _basename(primary_name))[:MAX_NAME]
        # auto (also the fallback of exact)
        if primary_name.startswith("/") and not mirror_is_databricks:
            return _basename(primary_name)
        if mirror_is_databricks and not primary_name.startswith("/"):
            return f"/Shared/{primary_name}"
        return primary_name


def disambiguated(name: str, primary_experiment_id: str) -> str:
    """The name used when `name` on the mirror already belongs to another primary experiment."""
    suffix = f"-{primary_experiment_id}"
    return name[: MAX_NAME - len(suffix)] + suffix


def _basename(name: str) -> str:
    parts = [p for p in name.split("/") if p]
    return (parts[-1] if parts else name)[:MAX_NAME] or name
