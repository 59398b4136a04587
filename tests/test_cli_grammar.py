"""One grammar over every `medsweep` subcommand (issue 22.4), read from the parser itself: the same
`--data-root`, the same `--device` wherever a model runs, `--out` said and checked one way."""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys

import pytest

from analysis.cli import AnalysisError, check_out
from medsweep.cli import build_parser, data_root_flag, main
from medvit.config import DEVICES, TrainConfig
from pyproject_data import pyproject

# The subcommands that run a model (train it, evaluate it, or draw its GradCAM).
RUNS_A_MODEL = {"train", "collect", "evaluate", "ensemble", "confirm", "report", "gradcam"}
# The subcommands that read or write MedMNIST files.
READS_DATA = RUNS_A_MODEL | {"data download", "sweep", "resume"}


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf subcommand ("train", "data download", ...) and its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= subcommands(sub, f"{prefix}{name} ") or {f"{prefix}{name}": sub}
    return found


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((action for action in parser._actions if flag in action.option_strings), None)


COMMANDS = subcommands(build_parser())


def test_the_parser_has_the_subcommands_this_file_names():
    assert len(COMMANDS) == 11 and READS_DATA <= set(COMMANDS), sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_commands_help_says_what_it_does(command):
    # argparse drops add_parser's help from the command's own --help: it showed usage and options alone
    listed = subcommands_listed(build_parser())[command]
    assert listed and COMMANDS[command].description == listed
    assert listed in " ".join(COMMANDS[command].format_help().split())


def test_the_top_level_help_is_whole_sentences():
    # it was the module docstring's first line, cut off mid-sentence ("..., then calls")
    parser = build_parser()
    assert parser.description.endswith(".") and parser.epilog.endswith(".")
    assert "medsweep COMMAND --help" in " ".join(parser.format_help().split())


def subcommands_listed(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    """Each leaf subcommand and the help its parent's --help lists it with."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                sub = action.choices[listed.dest]
                found |= subcommands_listed(sub, f"{prefix}{listed.dest} ") or {f"{prefix}{listed.dest}": listed.help}
    return found


@pytest.mark.parametrize("command", sorted(RUNS_A_MODEL))
def test_every_command_that_runs_a_model_takes_the_same_device_option(command):
    device = option(COMMANDS[command], "--device")
    assert device is not None and tuple(device.choices) == DEVICES == ("auto", "cpu", "cuda")
    # train's flags default to None so that a --config file can set them; its default is TrainConfig's
    default = TrainConfig.model_fields["device"].default if command == "train" else device.default
    assert default == "auto"


@pytest.mark.parametrize("command", sorted(READS_DATA))
def test_every_command_that_reads_data_takes_data_root(command):
    data_root = option(COMMANDS[command], "--data-root")
    assert data_root is not None and data_root.dest == "data_root" and data_root.default is None
    root = option(COMMANDS[command], "--root")
    assert root is None or root.help == argparse.SUPPRESS  # data download's deprecated alias, not advertised


def test_every_out_is_required_and_says_whether_it_is_a_folder_or_which_file():
    outs = {name: option(parser, "--out") for name, parser in COMMANDS.items() if option(parser, "--out")}
    assert set(outs) == {"train", "collect", "evaluate", "ensemble", "confirm", "report", "gradcam"}
    assert all(action.required for action in outs.values())
    assert {name: action.metavar for name, action in outs.items()} == {
        "train": "FOLDER", "ensemble": "FOLDER", "report": "FOLDER",
        "collect": "FILE.parquet", "evaluate": "FILE.parquet", "confirm": "FILE.parquet", "gradcam": "FILE.png"}


def test_gradcam_and_report_show_the_same_number_of_images_by_default():
    images = option(COMMANDS["gradcam"], "--images")
    assert not images.required and images.default == option(COMMANDS["report"], "--gradcam-images").default == 4


def test_data_download_root_is_a_deprecated_alias_of_data_root(tmp_path, capsys):
    parser = COMMANDS["data download"]
    assert data_root_flag(parser.parse_args(["--dataset", "retinamnist", "--data-root", str(tmp_path)])) == \
        ("--data-root", str(tmp_path))
    assert capsys.readouterr().err == ""
    assert data_root_flag(parser.parse_args(["--dataset", "retinamnist", "--root", str(tmp_path)])) == \
        ("--root", str(tmp_path))
    assert capsys.readouterr().err == ("medsweep: warning: data download: --root is deprecated; use --data-root, "
                                       "as every other command\n")


def test_errors_name_the_subcommand_once(capsys):
    assert main(["evaluate", "x.parquet"]) == 2
    assert capsys.readouterr().err.startswith("medsweep: error: evaluate: the following arguments are required: --out")


@pytest.mark.parametrize(("argv", "command"), [
    (["evaluate", "results.parquet", "--out", "o.parquet", "--seeds", "3"], "evaluate"),
    (["data", "download", "--dataset", "retinamnist", "--seeds", "3"], "data download"),
])
def test_an_option_the_command_does_not_take_is_named_with_the_command(capsys, argv, command):
    """argparse names an unknown option through the top-level parser, which sent a user to
    `medsweep --help`, where no command's options are listed."""
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"medsweep: error: {command}: unrecognized arguments: --seeds 3 "
                                       f"(see medsweep {command} --help)\n")


@pytest.mark.parametrize(("kind", "name", "problem"), [
    ("folder", "afile.txt", "is a file, not a folder"),
    (".parquet", "sub", "does not end in .parquet"),
    (".parquet", "sub.parquet", "is a folder"),
    (".png", "cam.jpg", "does not end in .png"),
    (".png", "dangling.png", "leads nowhere"),
    (".parquet", "input.parquet", "would overwrite its input"),
    (".parquet", "link.parquet", "would overwrite its input"),
    ("folder", "sub", "would overwrite its input"),
])
def test_check_out_refuses_in_one_line(tmp_path, kind, name, problem):
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "sub.parquet").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "table1.csv").write_text("an input where the command writes *.csv")
    (tmp_path / "input.parquet").write_text("an input")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "input.parquet")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere" / "cam.png")
    inputs = [tmp_path / "input.parquet", tmp_path / "sub" / "table1.csv"]
    with pytest.raises(AnalysisError, match=f"^cmd: --out: .*{problem}.*; allowed: ") as caught:
        check_out("cmd", tmp_path / name, kind, inputs=inputs, writes=("*.csv",))
    assert "\n" not in str(caught.value)


def test_check_out_accepts_new_and_readable_places(tmp_path):
    assert check_out("cmd", tmp_path / "new" / "deeper", "folder") == tmp_path / "new" / "deeper"
    assert check_out("cmd", tmp_path / "r.parquet", ".parquet", inputs=[tmp_path / "other.parquet"])
    (tmp_path / "old.parquet").write_text("kept")
    seen = []
    check_out("cmd", tmp_path / "old.parquet", ".parquet", reader=seen.append)
    assert seen == [tmp_path / "old.parquet"]  # an existing file must pass its reader (a table to append to)
    assert not (tmp_path / "new").exists() and (tmp_path / "old.parquet").read_text() == "kept"


def test_help_and_argparse_errors_do_not_import_torch():
    """Matching an error against the user-error classes imported medvit.data (torch: seconds)."""
    code = ("import sys; from medsweep.cli import main; rc = main(['evaluate', 'x.parquet']); "
            "print(rc, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert run.stderr.startswith("medsweep: error: evaluate: the following arguments are required: --out")


@pytest.mark.parametrize("entry", [
    "from medsweep.cli import run; run()",  # what the console script runs
    "import runpy; runpy.run_module('medsweep', run_name='__main__')",  # python -m medsweep
])
def test_the_medsweep_command_ends_without_the_collectors_last_walk(entry):
    """Its end froze every live object, so the interpreter's end skips the garbage collector's
    walk over what torch and Ray loaded (1.3 s a command; benchmarks/RESULTS.md 15); main, which
    tests call in their own process, freezes nothing."""
    assert pyproject()["project"]["scripts"] == {"medsweep": "medsweep.cli:run"}
    code = ("import atexit, gc, sys; atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0)); "
            f"sys.argv = ['medsweep', 'evaluate', 'x.parquet']; {entry}")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (2, "frozen True\n"), run.stderr
    assert main(["evaluate", "x.parquet"]) == 2 and gc.get_freeze_count() == 0
