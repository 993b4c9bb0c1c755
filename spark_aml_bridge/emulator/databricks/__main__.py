"""`python -m spark_aml_bridge.emulator.databricks --state-dir DIR`."""

import sys

from spark_aml_bridge.emulator.databricks.server import main

sys.exit(main())
