"""The analysis subcommands of ``medsweep``: collect, evaluate, ensemble, confirm, report, gradcam.

``add_analysis_parsers(subparsers)`` adds them to the ``medsweep`` parser (``medsweep.cli``);
each sets ``run`` to a function ``run(args) -> int``. Bad input raises :class:`AnalysisError`
(a ``ValueError``) whose message is one line naming the subcommand and the argument;
``medsweep`` prints it and exits with code 2.

One grammar for all of them (and ``train``): ``--data-root`` for the MedMNIST folder,
``--device`` (:data:`medvit.config.DEVICES`, default ``auto``) wherever a model runs, and ``--out`` checked by
:func:`check_out`: a folder, or the one file the command writes (``.parquet``, ``.png``).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import glob
from pathlib import Path

from medvit.config import DEVICES

__all__ = ["AnalysisError", "add_analysis_parsers", "check_out"]

# Each seed retrains every configuration confirmed: more than these is a typo, not a plan.
MAX_CONFIRM_SEEDS = 100
MAX_CONFIRM_TOP = 20


class AnalysisError(ValueError):
    """Bad input to an analysis subcommand: a one-line message naming the argument."""


def _line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines) if lines else "invalid input"


@contextlib.contextmanager
def _input_errors(command: str, argument: str):
    """Turn the library's one-line ValueErrors about its input into AnalysisError (a missing or
    unreadable MedMNIST file is about --data-root)."""
    try:
        yield
    except AnalysisError:
        raise
    except ValueError as exc:
        if type(exc).__name__ == "DataError":
            argument = "--data-root"
        raise AnalysisError(f"{command}: {argument}: {_line(exc)}") from None


def _results_file(command: str, argument: str, path: Path):
    """Check that ``path`` is a readable results table; return it as a pyarrow Table."""
    from analysis.collect import read_results

    with _input_errors(command, argument):
        return read_results(path)


def check_out(command: str, out: str | Path, kind: str, *, inputs=(), writes=(), reader=None) -> Path:
    """The one check of every command's ``--out``, before any work: a bad one is one line, and no
    finished work is lost to a path that fails only when the results are written.

    Args:
        kind: ``"folder"`` (the command writes the files matching ``writes`` into it) or the
            suffix of the one file it writes (``".parquet"``, ``".png"``).
        inputs: the command's input paths, none of which the output may overwrite.
        reader: for a file that exists, the reader it must pass (the command appends to or
            replaces it; a file of another kind is refused, not overwritten).
    """
    from sweeps.paths import check_writable_folder

    out = Path(out)
    allowed = "a folder, new or writable" if kind == "folder" else f"a {kind} file path in a writable folder"

    def refuse(what: str) -> AnalysisError:
        return AnalysisError(f"{command}: --out: {what}; allowed: {allowed}")

    if kind != "folder" and out.suffix != kind:
        raise refuse(f"{out} does not end in {kind}")
    try:
        check_writable_folder(out if kind == "folder" else out.parent)  # names, links, a file in the way
        if kind != "folder" and out.is_dir():
            raise ValueError(f"{out} is a folder")
        if out.is_symlink() and not out.exists():
            raise ValueError(f"{out} is a symbolic link that leads nowhere (dangling, or a loop)")
    except ValueError as exc:
        raise refuse(str(exc)) from None
    except OSError as exc:  # a name too long for the filesystem, say
        raise refuse(f"{str(out)[:80]}...: {exc.strerror}") from None
    real = out.resolve()  # a link to an input is that input
    _overwrites_no_input(command, *((out, writes) if kind == "folder" else (real.parent, (glob.escape(real.name),))),
                         inputs)
    if reader is not None and kind != "folder" and out.exists():
        with _input_errors(command, "--out"):
            reader(out)
    return out


def _overwrites_no_input(command: str, folder: Path, writes, inputs) -> None:
    """Refuse an output place where the command would write over one of its own inputs."""
    for path in map(Path, inputs):
        try:
            inside = path.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:  # not inside the output folder
            continue
        clash = next((pattern for pattern in writes if fnmatch.fnmatch(inside, pattern)), None)
        if clash:
            raise AnalysisError(f"{command}: --out: it writes {clash} into {folder}, which would overwrite "
                                f"its input {path}; allowed: a place that holds none of the inputs")


def _images(command: str, flag: str, images: int) -> None:
    if images < 1:
        raise AnalysisError(f"{command}: {flag}: need at least 1 image, got {images}")


# -- collect -------------------------------------------------------------------------------


def _print_best(table, path: Path) -> None:
    from analysis.schema import TEST_COLUMNS
    from analysis.tables import best_trials, with_inputs

    df = with_inputs(table.to_pandas())
    for _, t in best_trials(df).iterrows():
        tests = [f"{c.removeprefix('test_')} {t[c]:.4f}" for c in TEST_COLUMNS
                 if t[c] is not None and t[c] == t[c]]
        test = ("test " + "  ".join(tests)) if tests else \
            f"test not evaluated yet (medsweep evaluate {path} --out {path.with_name(path.stem + '-test.parquet')})"
        print(f"best   {t['dataset']}: trial {t['trial_id']} of {t['sweep']} ({t['model']} at {t['input']}), "
              f"{t['metric']} {t['best_value']:.4f} at epoch {int(t['best_epoch'])}; {test}")


def run_collect(args: argparse.Namespace) -> int:
    from analysis.collect import collect, read_results
    from analysis.evaluate import evaluate_best

    out = check_out("collect", args.out, ".parquet", reader=read_results)
    before: set = set()
    if out.exists():
        old = read_results(out)
        before = set(zip(old.column("sweep_dir").to_pylist(), old.column("trial_id").to_pylist()))
    with _input_errors("collect", "sweep_dir"):
        table = collect(args.sweep_dirs, out)
    keys = set(zip(table.column("sweep_dir").to_pylist(), table.column("trial_id").to_pylist()))
    print(f"collected {len(args.sweep_dirs)} sweep(s): {len(keys - before)} rows added, "
          f"{table.num_rows} rows in total -> {out}")
    if args.evaluate_test:
        with _input_errors("collect", "--evaluate-test"):
            table = evaluate_best(out, data_root=args.data_root, device=args.device, progress=print)
    _print_best(table, out)
    return 0


# -- ensemble ------------------------------------------------------------------------------


def run_ensemble(args: argparse.Namespace) -> int:
    from analysis.ensemble import MAX_ROUNDS, ensemble_sweep
    from sweeps.paths import local_folder

    sweep = local_folder(args.sweep_dir) or args.sweep_dir  # a bucket's (s3://, gs://) as its URI
    if isinstance(sweep, Path) and not sweep.is_dir():
        raise AnalysisError(f"ensemble: sweep_dir: {sweep} is not a folder; allowed: a sweep folder <storage>/<name>")
    if not 0 <= args.rounds <= MAX_ROUNDS:
        raise AnalysisError(f"ensemble: --rounds: {args.rounds}; allowed: 0 to {MAX_ROUNDS}")
    out = check_out("ensemble", args.out, "folder", inputs=[sweep] if isinstance(sweep, Path) else [],
                    writes=("ensemble.json",))
    with _input_errors("ensemble", "sweep_dir"):
        result = ensemble_sweep(sweep, out, data_root=args.data_root, rounds=args.rounds, device=args.device)
    members = ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in result["members"])
    print(f"members ({len(result['members'])} of {result['candidates']} trials, chosen on validation): {members}")
    winner = result.get("winner")  # the sweep's best trial by the ranking; none when no candidate is ranked
    for split in ("val", "test"):
        print(f"{split:<5}  " + "  ".join(f"{k} {v:.4f}" for k, v in result[split].items() if v is not None))
        if winner:
            print(f"{'':<5}  winner {winner['trial_id']} alone: "
                  + "  ".join(f"{k} {v:.4f}" for k, v in winner[split].items() if v is not None))
    print(f"wrote {out / 'ensemble.json'}")
    return 0


# -- evaluate ------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> int:
    from analysis.collect import read_results
    from analysis.evaluate import evaluate_best, trials_to_evaluate

    path = Path(args.results)
    table = _results_file("evaluate", "results", path)
    out = check_out("evaluate", args.out, ".parquet", inputs=[path], reader=read_results)
    if table.num_rows == 0:
        raise AnalysisError(f"evaluate: results: {path}: the results table has no trials; "
                            "allowed: a table medsweep collect filled")
    if trials_to_evaluate(table).empty:
        raise AnalysisError(f"evaluate: results: {path}: no trial is ranked (each is unfinished, "
                            "errored or diverged), so there is nothing to evaluate")
    with _input_errors("evaluate", "results"):
        table = evaluate_best(path, data_root=args.data_root, force=args.force, device=args.device,
                              progress=print, out=out)
    _print_best(table, out)
    print(f"wrote {out}")
    return 0


# -- confirm -------------------------------------------------------------------------------


def run_confirm(args: argparse.Namespace) -> int:
    from analysis.collect import read_sweep
    from analysis.confirm import confirm, plan_arms, read_confirm

    if not 1 <= args.seeds <= MAX_CONFIRM_SEEDS:
        raise AnalysisError(f"confirm: --seeds: {args.seeds}; allowed: 1 to {MAX_CONFIRM_SEEDS}")
    if args.epochs is not None and args.epochs < 1:
        raise AnalysisError(f"confirm: --epochs: need at least 1 epoch, got {args.epochs}")
    if not 1 <= args.top <= MAX_CONFIRM_TOP:
        raise AnalysisError(f"confirm: --top: {args.top}; allowed: 1 to {MAX_CONFIRM_TOP}")
    out = check_out("confirm", args.out, ".parquet", reader=read_confirm)
    with _input_errors("confirm", "sweep_dir"):
        plan_arms(read_sweep(args.sweep_dir).to_pandas())  # fail before any training
    confirm(args.sweep_dir, seeds=args.seeds, out=out, data_root=args.data_root, epochs=args.epochs,
            device=args.device, audit_test=args.audit_test, top=args.top)
    return 0


# -- report --------------------------------------------------------------------------------


def _how_it_ended(trial, side: str) -> str:
    """The trial and how far it trained; a trial stopped early is shown only when no trial of its
    side (``side``: "α = 0") ran all its epochs, and the caption says so."""
    if trial["stop_reason"] == "finished":
        return f"trial {trial['trial_id']}, all {int(trial['epochs_run'])} epochs"
    return (f"trial {trial['trial_id']}, stopped early at epoch {int(trial['epochs_run'])}: no {side} trial "
            "ran all its epochs")


def checkpoint_is_there(path) -> bool:
    """A trial's checkpoint is on this machine, or in the bucket its sweep was collected from
    (collect saw its folder there)."""
    from sweeps.paths import local_folder

    return isinstance(path, str) and (local_folder(path) is None or (Path(path) / "state.pt").is_file())


def auto_gradcam_checkpoints(results) -> tuple[str, str, str] | None:
    """RetinaMNIST checkpoints for the GradCAM figure, as ``(alpha = 0, alpha > 0, caption)``, or None.

    Of each side (alpha = 0, alpha > 0) the trials that ran all their epochs where there are
    some (a trial ASHA stopped early is a half-trained model; a diverged one is never ranked),
    else every ranked one; then the best (by validation) of each with one architecture, the
    best-ranked one that has both, so the figure shows the loss's effect alone; where no
    architecture has both, the best of each, and the caption says that the architectures differ.
    A model at another input (``resize``) is another architecture here.
    """
    from analysis.tables import load_results_frame, rank_trials, with_inputs

    df = with_inputs(load_results_frame(results))
    # the architecture a trial trained: its model, and the input where it is not the stored size
    df["arch"] = [m if key[0] == key[1] else f"{m} at {label}"
                  for m, key, label in zip(df["model"], df["input_key"], df["input"])]
    ranked = rank_trials(df[df["dataset"].str.lower() == "retinamnist"])
    ranked = ranked[ranked["checkpoint_path"].map(checkpoint_is_there)]
    sides = [ranked[ranked["alpha"].fillna(0) == 0], ranked[ranked["alpha"].fillna(0) > 0]]
    if any(side.empty for side in sides):
        return None
    ce, ordinal = (side[side["stop_reason"] == "finished"] if (side["stop_reason"] == "finished").any() else side
                   for side in sides)
    both = [m for m in ranked["arch"] if m in set(ce["arch"]) and m in set(ordinal["arch"])]
    a, b = (ce[ce["arch"] == both[0]].iloc[0], ordinal[ordinal["arch"] == both[0]].iloc[0]) if both else \
        (ce.iloc[0], ordinal.iloc[0])
    ended = [_how_it_ended(a, "α = 0"), _how_it_ended(b, "α > 0")]
    if both:
        caption = (f"GradCAM of {both[0]} trained with cross-entropy (α = 0, {ended[0]}) and with the "
                   f"Ordinal Loss (α = {b['alpha']:g}, {ended[1]}): the best-by-validation RetinaMNIST "
                   f"trial of each with this architecture, among those that ran all their epochs where any did.")
    else:
        caption = (f"GradCAM of the best-by-validation RetinaMNIST trials at α = 0 ({a['arch']}, {ended[0]}) and "
                   f"α > 0 ({b['arch']}, α = {b['alpha']:g}, {ended[1]}), among those that ran all their epochs "
                   "where any did. Not a comparison of the losses alone: the architectures differ, as no "
                   "architecture has checkpoints at both.")
    return a["checkpoint_path"], b["checkpoint_path"], caption


# What analysis.report.write_report writes into its folder (its tables, best configs and figures).
REPORT_WRITES = ("*.md", "*.csv", "*.html", "best_*.yaml", "figures/*.png")


def _check_report_inputs(args: argparse.Namespace, results: Path) -> None:
    """Every input of the report readable, and the GradCAM options whole, before any work."""
    from analysis.confirm import read_confirm
    from analysis.report import read_ensemble

    if _results_file("report", "results", results).num_rows == 0:
        raise AnalysisError(f"report: results: {results}: the results table has no trials")
    if args.confirm is not None:
        with _input_errors("report", "--confirm"):
            read_confirm(args.confirm)
    with _input_errors("report", "--ensemble"):
        for path in args.ensemble:
            read_ensemble(path)
    if (args.gradcam_ce is None) != (args.gradcam_ordinal is None):
        raise AnalysisError("report: --gradcam-ce and --gradcam-ordinal go together: give both or neither")
    _images("report", "--gradcam-images", args.gradcam_images)


def _report_gradcam(args: argparse.Namespace, results: Path, out: Path) -> list[tuple[Path, str]]:
    """The report's GradCAM figure and its caption (none when there is nothing to compare)."""
    from analysis.gradcam import gradcam_checkpoints

    explicit = args.gradcam_ce is not None
    pair = ((args.gradcam_ce, args.gradcam_ordinal, "GradCAM of the cross-entropy (α=0) and Ordinal Loss (α>0) "
             "checkpoints given on the command line.") if explicit else auto_gradcam_checkpoints(results))
    if pair is None:
        print("gradcam skipped: needs RetinaMNIST trials with alpha = 0 and alpha > 0 that have checkpoints "
              "(or --gradcam-ce CKPT --gradcam-ordinal CKPT)")
        return []
    ce, ordinal, caption = pair
    try:
        figure = gradcam_checkpoints([ce, ordinal], out / "figures" / "gradcam.png", images=args.gradcam_images,
                                     data_root=args.data_root, device=args.device,
                                     title="GradCAM: cross-entropy vs. Ordinal Loss (map explains the true grade)")
    except ValueError as exc:
        if explicit:
            raise AnalysisError(f"report: --gradcam-ce/--gradcam-ordinal: {_line(exc)}") from None
        print(f"gradcam skipped: {_line(exc)}")
        return []
    print(f"gradcam {figure.path}")
    return [(figure.path, f"{caption} {figure.images_note}")]


def run_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    results = Path(args.results)
    _check_report_inputs(args, results)
    out = check_out("report", args.out, "folder", writes=REPORT_WRITES,
                    inputs=[results, *([args.confirm] if args.confirm else []), *args.ensemble])
    extra = _report_gradcam(args, results, out)
    with _input_errors("report", "results"):
        html_path, md_path = write_report(results, out, confirm_parquet=args.confirm, extra_figures=extra,
                                          ensembles=args.ensemble)
    print(f"wrote {html_path}")
    print(f"wrote {md_path}")
    return 0


# -- gradcam -------------------------------------------------------------------------------

_GRADCAM_FLAGS = {"checkpoint": "--checkpoint", "images": "--images", "grades": "--grades", "split": "--split"}


def run_gradcam(args: argparse.Namespace) -> int:
    from analysis.gradcam import gradcam_checkpoints

    _images("gradcam", "--images", args.images)
    out = check_out("gradcam", args.out, ".png")
    try:
        figure = gradcam_checkpoints(args.checkpoint, out, images=args.images, grades=args.grades, split=args.split,
                                     data_root=args.data_root, device=args.device)
    except AnalysisError:
        raise
    except ValueError as exc:
        message = _line(exc)
        head = message.split(":", 1)[0]
        if head in _GRADCAM_FLAGS:
            message = f"{_GRADCAM_FLAGS[head]}:{message.split(':', 1)[1]}"
        raise AnalysisError(f"gradcam: {message}") from None
    print(figure.images_note)
    print(f"wrote {figure.path}")
    return 0


# -- parsers -------------------------------------------------------------------------------

GRADCAM_IMAGES = 4


def _add_common(p, run, device: str | None = None) -> None:
    """The options every analysis command shares the same way: --data-root, and --device where
    it runs a model (``device`` says for what)."""
    p.add_argument("--data-root", default=None,
                   help="folder of MedMNIST .npz files (default: the run's, else $MEDMNIST_ROOT, else ~/.medmnist)")
    if device is not None:
        p.add_argument("--device", default="auto", choices=DEVICES,
                       help=f"where {device} runs: auto (a GPU when there is one), cpu or cuda (default auto)")
    p.set_defaults(run=run)


def _add_collect_parsers(subparsers) -> None:
    p = subparsers.add_parser("collect", help="read sweep folders into the results table (Parquet)")
    p.add_argument("sweep_dirs", nargs="+", metavar="sweep_dir",
                   help="sweep folders <storage>/<name>, local or in a bucket (s3://, gs://)")
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="results table (created or updated)")
    p.add_argument("--evaluate-test", action="store_true",
                   help="also evaluate the test split of each dataset's best trial (medsweep evaluate)")
    _add_common(p, run_collect, device="--evaluate-test")

    p = subparsers.add_parser("evaluate", help="evaluate the test split once for each dataset's best trial")
    p.add_argument("results", help="results Parquet file (from medsweep collect); never written")
    p.add_argument("--out", required=True, metavar="FILE.parquet",
                   help="the results table with the test metrics filled in (not the input)")
    p.add_argument("--force", action="store_true", help="evaluate again trials that already have test metrics")
    _add_common(p, run_evaluate, device="the evaluation")


def _add_sweep_analysis_parsers(subparsers) -> None:
    p = subparsers.add_parser("ensemble", help="greedy ensemble of a sweep's trials, chosen on validation, tested once")
    p.add_argument("sweep_dir", help="the sweep folder <storage>/<name>, local or in a bucket (s3://, gs://)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="folder for ensemble.json")
    p.add_argument("--rounds", type=int, default=20, help="greedy additions after the best single trial (default 20)")
    _add_common(p, run_ensemble, device="the ensemble's evaluation")

    p = subparsers.add_parser("confirm", help="retrain a sweep's best configuration with fresh seeds")
    p.add_argument("sweep_dir", help="the sweep folder <storage>/<name>, local or in a bucket (s3://, gs://)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per configuration, 1000, 1001, ... (default 5)")
    p.add_argument("--out", required=True, metavar="FILE.parquet",
                   help="confirm table (created or appended to; its runs of the same config and seed are kept)")
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of the config's")
    p.add_argument("--top", type=int, default=1, metavar="K",
                   help="also retrain the configurations ranked 2nd to Kth, each paired with the winner: does "
                        "its lead on validation hold on test? (default 1: the winner alone)")
    p.add_argument("--audit-test", default=None, action=argparse.BooleanOptionalAction,
                   help="the test-selection audit: also report the epoch chosen on test beside the one chosen "
                        "on validation (never selects; default: the config's audit_test)")
    _add_common(p, run_confirm, device="training")


def _add_figure_parsers(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the HTML/Markdown report, tables and figures")
    p.add_argument("results", help="results Parquet file (from medsweep collect)")
    p.add_argument("--out", required=True, metavar="FOLDER", help="report folder")
    p.add_argument("--confirm", default=None, help="confirm Parquet file (from medsweep confirm)")
    p.add_argument("--ensemble", action="append", default=[], metavar="PATH",
                   help="ensemble.json (or its folder) from medsweep ensemble; repeat for several")
    p.add_argument("--gradcam-ce", default=None, metavar="CKPT", help="cross-entropy checkpoint for the GradCAM figure")
    p.add_argument("--gradcam-ordinal", default=None, metavar="CKPT",
                   help="Ordinal Loss checkpoint for the GradCAM figure (default for RetinaMNIST: the best "
                        "alpha = 0 and alpha > 0 trials that ran all their epochs)")
    p.add_argument("--gradcam-images", type=int, default=GRADCAM_IMAGES, metavar="N",
                   help=f"images (rows) in the GradCAM figure (default {GRADCAM_IMAGES})")
    _add_common(p, run_report, device="GradCAM")

    p = subparsers.add_parser("gradcam", help="GradCAM figure of trained checkpoints (MedViT or ResNet)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="CKPT",
                   help="checkpoint folder (state.pt inside); repeat to compare checkpoints side by side")
    p.add_argument("--images", type=int, default=GRADCAM_IMAGES, metavar="N",
                   help=f"images (rows): of each grade the first on which the checkpoints disagree (default "
                        f"{GRADCAM_IMAGES})")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the figure")
    p.add_argument("--grades", type=int, nargs="+", default=None,
                   help="grades/classes to show (default 1 2 for RetinaMNIST, else every class)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    _add_common(p, run_gradcam, device="GradCAM")


def add_analysis_parsers(subparsers) -> None:
    """Add collect, evaluate, ensemble, confirm, report and gradcam to ``medsweep``'s subparsers."""
    _add_collect_parsers(subparsers)
    _add_sweep_analysis_parsers(subparsers)
    _add_figure_parsers(subparsers)
