"""Ctrl-C that cannot be lost: remembered while a command runs and raised again at the next
training or evaluation step if library code swallowed it; held back while a block runs that
an interrupt must not cut in half; and, once caught, kept from ending the process by SIGINT.
SIGTERM, what a job scheduler sends before it kills a job (SLURM's scancel and time limit,
Kubernetes' pod deletion) and `kill` sends, is handled the same way as ``Terminated``.

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, ended as Ctrl-C is (exit status 143 instead of 130)."""


# What each signal raises; the one received is remembered until the command's block ends.
RAISED = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
_interrupted: type[KeyboardInterrupt] | None = None


def _remember_and_raise(signum, frame) -> None:
    global _interrupted
    _interrupted = RAISED[signum]
    raise _interrupted


def _handler_in_place(*handlers) -> bool:
    """True in the main thread while one of these SIGINT handlers is in place: not in a Ray
    worker, nor in a program that handles SIGINT itself, which keep their own behaviour."""
    return threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) in handlers


def _handled_signals() -> list[signal.Signals]:
    """SIGINT, and SIGTERM unless the program handles it itself (its default ends the process
    at once, with nothing said)."""
    return [signal.SIGINT] + [signal.SIGTERM] * (signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)


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

    previous = {signum: signal.signal(signum, _remember_and_raise) for signum in _handled_signals()}
    sys.unraisablehook = quiet_dropped_interrupt
    try:
        yield
    except Exception as exc:
        if _interrupted:  # the Ctrl-C wrapped (Python 3.11 turns one raised in a __set_name__
            raise _interrupted from exc  # into a RuntimeError), or what it left half done
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = shown_hook
        _interrupted = None


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt (or Terminated) if one came during ``remembered_interrupt`` and
    was swallowed on its way out; cheap enough for every step."""
    if _interrupted:
        raise _interrupted


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block whole; a SIGINT (or SIGTERM) that arrives meanwhile is delivered after it:
    as KeyboardInterrupt (Terminated, under ``remembered_interrupt``)."""
    if not _handler_in_place(signal.default_int_handler, _remember_and_raise):
        yield
        return
    received: list[int] = []
    deferred = [signal.SIGINT] + [signal.SIGTERM] * (signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL,
                                                                                           _remember_and_raise))
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in deferred}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        signal.raise_signal(received[0])


def forget_caught_interrupt() -> None:
    """Call once a KeyboardInterrupt has been caught and answered, so that the process exits
    with the status the program returns. CPython records an interrupt that ends code run by
    exec() or eval() of a string (dataclasses build their methods so, hundreds of them during
    torchvision's import) as unhandled even when a caller catches it, and under ``python -m``
    ends the process by SIGINT at exit; every exec of a string clears that record first."""
    exec("")
