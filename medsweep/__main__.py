"""`python -m medsweep`: the `medsweep` command."""

import sys

from medsweep.cli import main

sys.exit(main())
