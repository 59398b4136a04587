"""The studies behind reports/ (the training recipe, the MedViT paper's protocol), run as
modules from the repository root (``python -m studies.recipe.run_arm``). Their data and
write-ups live in reports/; this package holds only code. Not part of the medsweep wheel: it
imports the product, the product never imports it."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_main(prog: str, main: Callable[..., object], *args: object) -> None:
    """Run a study's ``main`` as medsweep runs a command: the errors the product raises for bad
    input (a data file not found, a bad config field, an unknown spec) end in one line on
    stderr and exit code 2, not a traceback; reproducing a study without $MEDMNIST_ROOT set is
    the likeliest of them."""
    from medsweep.cli import USAGE_ERROR, one_line, user_errors

    try:
        main(*args)
    except user_errors() as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
