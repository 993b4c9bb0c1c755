"""Double of the runtime's UDF-side service credential API (``databricks.service_credentials``)."""

from __future__ import annotations

from typing import Any


def getServiceCredentialsProvider(name: str) -> Any:  # noqa: N802 - the runtime's name
    from spark_aml_bridge.emulator.databricks.dbutils import service_credentials_provider
    from spark_aml_bridge.emulator.databricks.runtime import active_double

    double = active_double()
    if double is None:
        raise RuntimeError("service credentials are not available outside Databricks")
    return service_credentials_provider(double.spec, name)
