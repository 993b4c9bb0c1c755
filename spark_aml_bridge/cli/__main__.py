"""``python -m spark_aml_bridge.cli``."""

import sys

from spark_aml_bridge.cli.app import main

sys.exit(main())
