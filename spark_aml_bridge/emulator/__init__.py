"""Local Azure ML workspace emulator: Entra ID, ARM and the workspace's MLflow endpoint.

Importing this package is cheap (no MLflow, no cryptography): the servers live in
`spark_aml_bridge.emulator.server`, which `python -m spark_aml_bridge.emulator` runs.
"""

from __future__ import annotations

from spark_aml_bridge.emulator.process import (
    EmulatorError,
    EmulatorProcess,
    load_emulator_info,
    start_emulator,
)

__all__ = ["EmulatorError", "EmulatorProcess", "load_emulator_info", "start_emulator"]
