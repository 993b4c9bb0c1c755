"""``from notebookutils import mssparkutils``: the same utilities under Synapse's name."""

from spark_aml_bridge.emulator.synapse.utils import credentials, env, runtime

__all__ = ["credentials", "env", "runtime"]
