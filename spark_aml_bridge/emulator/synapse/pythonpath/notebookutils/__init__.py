"""Runtime double of Synapse's/Fabric's ``notebookutils`` (see spark_aml_bridge.emulator.synapse).

``import notebookutils; notebookutils.credentials.getToken(...)`` (Fabric style) and
``from notebookutils import mssparkutils; mssparkutils.credentials.getToken(...)`` (Synapse style)
both work.
"""

from spark_aml_bridge.emulator.synapse.utils import credentials, env, runtime

from . import mssparkutils

__all__ = ["credentials", "env", "mssparkutils", "runtime"]
