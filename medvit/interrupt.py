"""Ctrl-C held back while a block runs that an interrupt must not cut in half, then raised;
and a caught Ctrl-C kept from ending the process by SIGINT anyway.

medmnist imports torch inside a bare ``except:``, which swallows a KeyboardInterrupt: a Ctrl-C
in the first seconds of ``medsweep train`` was lost and the run went on to the end. An import
of torch cut short leaves a half-initialised extension that can crash the interpreter at exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block whole; a SIGINT that arrives meanwhile becomes a KeyboardInterrupt after
    it. Only where Python's own SIGINT handler is in place (the main thread of a command): a
    Ray worker, or a program that handles SIGINT itself, keeps its own behaviour."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def forget_caught_interrupt() -> None:
    """Call once a KeyboardInterrupt has been caught and answered, so that the process exits
    with the status the program returns. CPython records an interrupt that ends code run by
    exec() or eval() of a string (dataclasses build their methods so, hundreds of them during
    torchvision's import) as unhandled even when a caller catches it, and under ``python -m``
    ends the process by SIGINT at exit; every exec of a string clears that record first."""
    exec("")
