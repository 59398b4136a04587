"""Ctrl-C at any moment of `medsweep train`: exit 130, one line, no metrics.json. The first
seconds are the imports, where medmnist's bare `except` used to swallow the interrupt and the
run went on to write its metrics; a torch import cut short could crash the interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from medvit.interrupt import deferred_interrupt, raise_if_interrupted, remembered_interrupt

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("after_s", [1.0, 2.0, 2.5, 4.0])
def test_ctrl_c_during_train_start_is_exit_130_and_writes_nothing(after_s, real_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "MEDMNIST_ROOT": str(real_root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "medsweep", "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny",
         "--subset", "64", "--epochs", "30", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)  # what a user's Ctrl-C sends
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["medsweep: interrupted"], stderr
    assert not (out / "metrics.json").exists()


# `python -m` this module: Ctrl-C lands as the import of the training loop enters code it runs through
# exec() of a string (a dataclass method being built), then `medsweep train` runs as usual.
INTERRUPT_IN_EXEC = """
import os, signal, sys

def interrupt_in_string_code(frame, event, arg):
    code = frame.f_code
    if event == "call" and (code.co_filename, code.co_name) == ("<string>", "<module>") \\
            and "medvit.train" in sys.modules:
        sys.settrace(None)
        os.kill(os.getpid(), signal.SIGINT)

sys.settrace(interrupt_in_string_code)
from medsweep.cli import main
sys.exit(main(sys.argv[1:]))
"""


# Two commands whose imports build dataclasses (exec of a string): in each the interrupt ends an
# exec'd frame, and main must clear CPython's record of it.
@pytest.mark.parametrize("command", [
    ["train", "--dataset", "retinamnist", "--model", "medvit_28_tiny", "--subset", "64", "--epochs", "30"],
    ["gradcam", "--checkpoint", "no-such-checkpoint"],
], ids=["train", "gradcam"])
def test_ctrl_c_inside_code_run_by_exec_still_exits_130(command, real_root, tmp_path):
    """Under `python -m`, CPython ends by SIGINT (-2) after an interrupt raised inside exec() of
    a string, whatever main returns, unless the record of it is cleared."""
    (tmp_path / "interrupt_in_exec.py").write_text(INTERRUPT_IN_EXEC)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "interrupt_in_exec", *command, "--out", str(out) + (".png" if command[0] == "gradcam" else "")],
        cwd=tmp_path, env={**os.environ, "MEDMNIST_ROOT": str(real_root)}, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["medsweep: interrupted"], result.stderr
    assert not any(tmp_path.glob("run*"))


# `python -m` this module: Ctrl-C lands while the model is built, where library code loses it:
# inside a bare `except:` (mpmath's `import gmpy2` is one, reached from the optimizer's first
# import of torch._dynamo), or inside a finaliser, whose exception CPython drops; or where
# Python 3.11 wraps it in a RuntimeError: inside a `__set_name__` (a dataclass field's, as
# torch._functorch's classes are made).
INTERRUPT_LOST = """
import os, signal, sys
import medvit.train

build_model = medvit.train.build_model

def interrupt_inside_a_bare_except(*args, **kwargs):
    try:
        signal.raise_signal(signal.SIGINT)
    except:
        pass
    return build_model(*args, **kwargs)

class InterruptWhenFinalised:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)

def interrupt_inside_a_finaliser(*args, **kwargs):
    InterruptWhenFinalised()
    return build_model(*args, **kwargs)

class InterruptWhenNamed:
    def __set_name__(self, owner, name):
        signal.raise_signal(signal.SIGINT)

def interrupt_inside_set_name(*args, **kwargs):
    type("WithAField", (), {"field": InterruptWhenNamed()})
    return build_model(*args, **kwargs)

medvit.train.build_model = {"bare-except": interrupt_inside_a_bare_except,
                            "finaliser": interrupt_inside_a_finaliser,
                            "set-name": interrupt_inside_set_name}[os.environ["LOST_IN"]]
from medsweep.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("lost_in", ["bare-except", "finaliser", "set-name"])
def test_a_ctrl_c_that_library_code_loses_or_wraps_still_stops_train_before_its_first_epoch(lost_in, real_root, tmp_path):
    (tmp_path / "interrupt_lost.py").write_text(INTERRUPT_LOST)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "interrupt_lost", "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny",
         "--subset", "64", "--epochs", "3", "--out", str(out)],
        cwd=tmp_path, env={**os.environ, "MEDMNIST_ROOT": str(real_root), "LOST_IN": lost_in},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["medsweep: interrupted"], result.stderr
    assert "epoch " not in result.stdout
    assert not (out / "metrics.json").exists()


def test_a_swallowed_ctrl_c_is_remembered_through_nested_and_deferring_blocks():
    """An inner `remembered_interrupt` (or a deferral) must not forget what the outer one holds."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with remembered_interrupt():
                with remembered_interrupt():
                    try:
                        with deferred_interrupt():
                            signal.raise_signal(signal.SIGINT)
                    except KeyboardInterrupt:
                        pass  # swallowed, as a bare except in library code does
                raise_if_interrupted()
        raise_if_interrupted()  # forgotten once the outer block ends
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
