"""``python -m simulators`` is the same as ``rtsim``."""

import sys

from simulators.cli.main import main

sys.exit(main())
