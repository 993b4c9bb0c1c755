"""Run context: the tags every new MLflow run gets from the platform it runs on."""

from __future__ import annotations

import logging

from spark_aml_bridge._version import __version__

_log = logging.getLogger(__name__)


def platform_tags() -> dict[str, str]:
    from spark_aml_bridge.platforms import detect_platform

    tags = {"spark_aml_bridge.version": __version__}
    try:
        tags.update(detect_platform().context_tags())
    except Exception:  # noqa: BLE001 - tags are best effort; a run must never fail for them
        _log.warning("could not read the platform context for run tags", exc_info=True)
    return tags
