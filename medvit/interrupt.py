"""Ctrl-C that cannot be lost: remembered while a command runs and raised again at the next
training or evaluation step if library code swallowed it; held back while a block runs that
an interrupt must not cut in half; and, once caught, kept from ending the process by SIGINT.

A KeyboardInterrupt in the first seconds of ``medsweep train`` vanishes in a bare
``except:`` around an import (medmnist's import of torch; mpmath's ``import gmpy2``, reached
when the optimizer's constructor first imports ``torch._dynamo``), or where CPython drops an
exception raised inside a finaliser (a weakref callback of the import lock, a generator being
closed: "Exception ignored in ..."); either way the run went on to the end and exited 0.
On Python 3.11 one raised inside a ``__set_name__`` while a class is made (dataclass fields
in torch._functorch, imported with torch._dynamo) comes out as a RuntimeError: a traceback.
An import of torch cut short leaves a half-initialised extension that can crash the
interpreter at exit.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

_interrupted = False


class Terminated(KeyboardInterrupt):
    """A command stopped by SIGTERM as Ctrl-C stops it, with exit status 143 instead of 130.
    Only a sweep handles SIGTERM so (sweeps.launch.sigterm_stops_the_fit: it saves its state);
    every other command ends at once, its default, which no call that blocks in C code holds up."""


def _remember_and_raise(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _handler_in_place(*handlers) -> bool:
    """True in the main thread while one of these SIGINT handlers is in place: not in a Ray
    worker, nor in a program that handles SIGINT itself, which keep their own behaviour."""
    return threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) in handlers


@contextlib.contextmanager
def remembered_interrupt() -> Iterator[None]:
    """Run a command so that a Ctrl-C raises KeyboardInterrupt as usual and is also remembered
    until the block ends: ``raise_if_interrupted`` raises it again if it was swallowed, an error
    that ends the block after it ends it as KeyboardInterrupt, and CPython's "Exception ignored"
    report of one dropped in a finaliser is left out."""
    global _interrupted
    if not _handler_in_place(signal.default_int_handler):  # a block inside one keeps its memory
        yield
        return
    shown_hook = sys.unraisablehook

    def quiet_dropped_interrupt(unraisable) -> None:
        if not (_interrupted and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            shown_hook(unraisable)

    previous = signal.signal(signal.SIGINT, _remember_and_raise)
    sys.unraisablehook = quiet_dropped_interrupt
    try:
        yield
    except Exception as exc:
        if _interrupted:  # the Ctrl-C wrapped (Python 3.11 turns one raised in a __set_name__
            raise KeyboardInterrupt from exc  # into a RuntimeError), or what it left half done
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = shown_hook
        _interrupted = False


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came during ``remembered_interrupt`` and was
    swallowed on its way out; cheap enough for every step."""
    if _interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block whole; a SIGINT that arrives meanwhile becomes a KeyboardInterrupt after
    it (and is remembered, under ``remembered_interrupt``)."""
    if not _handler_in_place(signal.default_int_handler, _remember_and_raise):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        previous(signal.SIGINT, None)


def forget_caught_interrupt() -> None:
    """Call once a KeyboardInterrupt has been caught and answered, so that the process exits
    with the status the program returns. CPython records an interrupt that ends code run by
    exec() or eval() of a string (dataclasses build their methods so, hundreds of them during
    torchvision's import) as unhandled even when a caller catches it, and under ``python -m``
    ends the process by SIGINT at exit; every exec of a string clears that record first."""
    exec("")
