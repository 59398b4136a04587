"""`python -m medsweep`: the `medsweep` command."""

from medsweep.cli import run

run()
