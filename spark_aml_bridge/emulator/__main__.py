"""`python -m spark_aml_bridge.emulator --state-dir DIR`."""

import sys

from spark_aml_bridge.emulator.server import main

sys.exit(main())
