"""Platform shims: everything that differs between Databricks, Synapse, Fabric, Azure ML
serverless Spark and a plain process lives under this package, one folder per platform.

How to add a platform
---------------------
1. Make a folder ``platforms/<name>/`` with an ``__init__.py`` (a docstring) and a ``shim.py``
   whose class subclasses ``platforms.base.PlatformShim`` and answers its questions: ``detect()``
   (cheap, never starts Spark: read the environment, or ``spark_state`` helpers), ``context()``
   and ``context_tags()``, ``default_credential_chain()``, and where they differ from the
   defaults ``native_tracking_uri()``, ``platform_defaults()``, ``executor_env()`` and
   ``check_config()``.
2. Its own ways to get a token go in ``platforms/<name>/credentials.py`` as a ``SOURCES`` tuple
   of ``credentials.sources.CredentialSource`` (build them with ``credentials.identity`` pieces:
   ``service_principal``, ``token_claims``, ``short_id``); the shim returns them from
   ``credential_sources()`` and names them, with generic ones, in its default chain.
3. Add the shim to ``platforms/registry.py`` (its import and one entry in ``_SHIMS``), in
   detection order: before any platform it could be mistaken for, and before generic.
4. Optional: zero-code set-up (``initscript.py``) and job submission (``jobs.py``) in the same
   folder, with plain function arguments; their command-line options go in ``cli/<name>.py``.
5. Tests: detection and tags in ``tests/test_<name>_platform.py``. Facts that could not be checked
   against a live runtime are marked VERIFY in a comment.

``platforms/aml_spark/`` (Azure ML serverless Spark) was added this way. Code outside this
package never asks which platform it runs on: it asks the detected shim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_aml_bridge.platforms.base import PlatformShim


def detect_platform() -> PlatformShim:
    """The shim of the platform this process runs on (see ``platforms/registry.py``)."""
    from spark_aml_bridge.platforms.registry import detect_platform as detect

    return detect()


__all__ = ["detect_platform"]
