"""The analysis subcommands of ``medsweep``: collect, evaluate, ensemble, confirm, report, gradcam.

``add_analysis_parsers(subparsers)`` adds them to the ``medsweep`` parser (``medsweep.cli``);
each sets ``run`` to a function ``run(args) -> int``. Bad input raises :class:`AnalysisError`
(a ``ValueError``) whose message is one line naming the argument; ``medsweep`` prints it and
exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

__all__ = ["AnalysisError", "add_analysis_parsers"]

# Each seed retrains every configuration confirmed: more than this is a typo, not a plan.
MAX_CONFIRM_SEEDS = 100


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
        raise AnalysisError(f"medsweep {command}: {argument}: {_line(exc)}") from None


def _results_file(command: str, argument: str, path: Path):
    """Check that ``path`` is a readable results table; return it as a pyarrow Table."""
    from analysis.collect import read_results

    with _input_errors(command, argument):
        return read_results(path)


def _writable(command: str, argument: str, folder: Path) -> None:
    """Refuse an output folder that cannot be written before any work is done."""
    from sweeps.paths import check_writable_folder

    try:
        check_writable_folder(folder)
    except ValueError as exc:
        raise AnalysisError(f"medsweep {command}: {argument}: {exc}; allowed: a path in a writable folder") from None


def _parquet_out(command: str, argument: str, path: Path, check) -> None:
    """An output file may be new; when it exists it must be readable by ``check``."""
    _writable(command, argument, path.parent)
    if path.exists():
        if path.is_dir():
            raise AnalysisError(f"medsweep {command}: {argument}: {path} is a folder; give a .parquet file path")
        with _input_errors(command, argument):
            check(path)


# -- collect -------------------------------------------------------------------------------


def _print_best(table, path: Path) -> None:
    from analysis.tables import best_trials

    df = table.to_pandas()
    for _, t in best_trials(df).iterrows():
        tests = [f"{c.removeprefix('test_')} {t[c]:.4f}" for c in ("test_acc", "test_auc", "test_qwk", "test_mae")
                 if t[c] is not None and t[c] == t[c]]
        test = ("test " + "  ".join(tests)) if tests else f"test not evaluated yet (medsweep evaluate {path})"
        print(f"best   {t['dataset']}: trial {t['trial_id']} of {t['sweep']} ({t['model']}), "
              f"{t['metric']} {t['best_value']:.4f} at epoch {int(t['best_epoch'])}; {test}")


def run_collect(args: argparse.Namespace) -> int:
    from analysis.collect import collect
    from analysis.evaluate import evaluate_best

    out = Path(args.out)
    _writable("collect", "--out", out.parent)
    before: set = set()
    if out.exists():
        old = _results_file("collect", "--out", out)
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
    from analysis.ensemble import ensemble_sweep

    sweep = Path(args.sweep_dir)
    if not sweep.is_dir():
        raise AnalysisError(f"medsweep ensemble: sweep_dir: {sweep} is not a folder; allowed: a sweep folder <storage>/<name>")
    from analysis.ensemble import MAX_ROUNDS

    if not 0 <= args.rounds <= MAX_ROUNDS:
        raise AnalysisError(f"medsweep ensemble: --rounds: {args.rounds}; allowed: 0 to {MAX_ROUNDS}")
    _writable("ensemble", "--out", Path(args.out))
    with _input_errors("ensemble", "sweep_dir"):
        result = ensemble_sweep(sweep, args.out, data_root=args.data_root, rounds=args.rounds, device=args.device)
    members = ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in result["members"])
    print(f"members ({len(result['members'])} of {result['candidates']} trials, chosen on validation): {members}")
    winner = result.get("winner")  # the sweep's best trial by the ranking; none when no candidate is ranked
    for split in ("val", "test"):
        print(f"{split:<5}  " + "  ".join(f"{k} {v:.4f}" for k, v in result[split].items() if v is not None))
        if winner:
            print(f"{'':<5}  winner {winner['trial_id']} alone: "
                  + "  ".join(f"{k} {v:.4f}" for k, v in winner[split].items() if v is not None))
    print(f"wrote {Path(args.out) / 'ensemble.json'}")
    return 0


# -- evaluate ------------------------------------------------------------------------------


def run_evaluate(args: argparse.Namespace) -> int:
    from analysis.evaluate import evaluate_best

    from analysis.evaluate import trials_to_evaluate

    path = Path(args.results)
    table = _results_file("evaluate", "results", path)
    if table.num_rows == 0:
        raise AnalysisError(f"medsweep evaluate: results: {path}: the results table has no trials; "
                            "allowed: a table medsweep collect filled")
    if trials_to_evaluate(table).empty:
        raise AnalysisError(f"medsweep evaluate: results: {path}: no trial is ranked (each is unfinished, "
                            "errored or diverged), so there is nothing to evaluate")
    with _input_errors("evaluate", "results"):
        table = evaluate_best(path, data_root=args.data_root, force=args.force, device=args.device,
                              progress=print)
    _print_best(table, path)
    print(f"wrote {path}")
    return 0


# -- confirm -------------------------------------------------------------------------------


def run_confirm(args: argparse.Namespace) -> int:
    from analysis.collect import read_sweep
    from analysis.confirm import confirm, plan_arms, read_confirm

    if not 1 <= args.seeds <= MAX_CONFIRM_SEEDS:
        raise AnalysisError(f"confirm: --seeds: {args.seeds}; allowed: 1 to {MAX_CONFIRM_SEEDS}")
    if args.epochs is not None and args.epochs < 1:
        raise AnalysisError(f"medsweep confirm: --epochs: need at least 1 epoch, got {args.epochs}")
    _parquet_out("confirm", "--out", Path(args.out), read_confirm)
    with _input_errors("confirm", "sweep_dir"):
        plan_arms(read_sweep(args.sweep_dir).to_pandas())  # fail before any training
    confirm(args.sweep_dir, seeds=args.seeds, out=Path(args.out), data_root=args.data_root, epochs=args.epochs,
            device=args.device, audit_test=args.audit_test)
    return 0


# -- report --------------------------------------------------------------------------------


def auto_gradcam_checkpoints(results) -> tuple[str, str, str] | None:
    """RetinaMNIST checkpoints for the GradCAM figure, as ``(alpha = 0, alpha > 0, caption)``, or None.

    The best (by validation) alpha = 0 and alpha > 0 trials of one architecture, the best-ranked
    one that has both, so the figure shows the loss's effect alone; where no architecture has
    both, the best trial of each, and the caption says that the architectures differ.
    """
    from analysis.tables import load_results_frame, rank_trials

    df = load_results_frame(results)
    ranked = rank_trials(df[df["dataset"].str.lower() == "retinamnist"])
    ranked = ranked[ranked["checkpoint_path"].map(lambda p: isinstance(p, str) and (Path(p) / "state.pt").is_file())]
    ce = ranked[ranked["alpha"].fillna(0) == 0]
    ordinal = ranked[ranked["alpha"].fillna(0) > 0]
    if ce.empty or ordinal.empty:
        return None
    both = [m for m in ranked["model"] if m in set(ce["model"]) and m in set(ordinal["model"])]
    if both:
        a, b = ce[ce["model"] == both[0]].iloc[0], ordinal[ordinal["model"] == both[0]].iloc[0]
        caption = (f"GradCAM of {both[0]} trained with cross-entropy (α = 0, trial {a['trial_id']}) and with the "
                   f"Ordinal Loss (α = {b['alpha']:g}, trial {b['trial_id']}): the best-by-validation RetinaMNIST "
                   f"trial of each with this architecture.")
    else:
        a, b = ce.iloc[0], ordinal.iloc[0]
        caption = (f"GradCAM of the best-by-validation RetinaMNIST trials at α = 0 ({a['model']}, trial "
                   f"{a['trial_id']}) and α > 0 ({b['model']}, α = {b['alpha']:g}, trial {b['trial_id']}). Not a "
                   "comparison of the losses alone: the architectures differ, as no architecture has "
                   "checkpoints at both.")
    return a["checkpoint_path"], b["checkpoint_path"], caption


# What analysis.report.write_report writes into its folder (its tables, best configs and figures).
REPORT_WRITES = ("*.md", "*.csv", "*.html", "best_*.yaml", "figures/*.png")


def _overwrites_no_input(out: Path, inputs: list) -> None:
    """Refuse a report folder where the report would write over one of its own inputs."""
    import fnmatch

    for path in map(Path, inputs):
        try:
            inside = path.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:  # not inside the report folder
            continue
        clash = next((pattern for pattern in REPORT_WRITES if fnmatch.fnmatch(inside, pattern)), None)
        if clash:
            raise AnalysisError(f"medsweep report: --out: the report writes {clash} into {out}, which would overwrite "
                                f"its input {path}; allowed: a folder that holds none of the inputs")


def run_report(args: argparse.Namespace) -> int:
    from analysis.confirm import read_confirm
    from analysis.gradcam import gradcam_checkpoints
    from analysis.report import read_ensemble, write_report

    results = Path(args.results)
    table = _results_file("report", "results", results)
    if table.num_rows == 0:
        raise AnalysisError(f"medsweep report: results: {results}: the results table has no trials")
    if args.confirm is not None:
        with _input_errors("report", "--confirm"):
            read_confirm(args.confirm)
    with _input_errors("report", "--ensemble"):
        for path in args.ensemble:
            read_ensemble(path)
    if (args.gradcam_ce is None) != (args.gradcam_ordinal is None):
        raise AnalysisError("medsweep report: --gradcam-ce and --gradcam-ordinal go together: give both or neither")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"medsweep report: --out: {out} is a file; give a folder")
    _writable("report", "--out", out)
    _overwrites_no_input(out, [results, *([args.confirm] if args.confirm else []), *args.ensemble])
    if args.gradcam_images < 1:
        raise AnalysisError(f"medsweep report: --gradcam-images: need at least 1 image, got {args.gradcam_images}")
    extra = []
    explicit = args.gradcam_ce is not None
    pair = ((args.gradcam_ce, args.gradcam_ordinal, "GradCAM of the cross-entropy (α=0) and Ordinal Loss (α>0) "
             "checkpoints given on the command line.") if explicit else auto_gradcam_checkpoints(table))
    if pair is None:
        print("gradcam skipped: needs RetinaMNIST trials with alpha = 0 and alpha > 0 that have checkpoints "
              "(or --gradcam-ce CKPT --gradcam-ordinal CKPT)")
    else:
        ce, ordinal, caption = pair
        try:
            png = gradcam_checkpoints([ce, ordinal],
                                      out / "figures" / "gradcam.png", images=args.gradcam_images,
                                      data_root=args.data_root,
                                      title="GradCAM: cross-entropy vs. Ordinal Loss (map explains the true grade)")
        except ValueError as exc:
            if explicit:
                raise AnalysisError(f"medsweep report: --gradcam-ce/--gradcam-ordinal: {_line(exc)}") from None
            print(f"gradcam skipped: {_line(exc)}")
        else:
            extra.append((png, caption))
            print(f"gradcam {png}")
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

    if args.images < 1:
        raise AnalysisError(f"medsweep gradcam: --images: need at least 1 image, got {args.images}")
    out = Path(args.out)
    if out.is_dir():
        raise AnalysisError(f"medsweep gradcam: --out: {out} is a folder; give a .png file path")
    _writable("gradcam", "--out", out.parent)
    try:
        png = gradcam_checkpoints(args.checkpoint, out, images=args.images, grades=args.grades, split=args.split,
                                  data_root=args.data_root)
    except AnalysisError:
        raise
    except ValueError as exc:
        message = _line(exc)
        head = message.split(":", 1)[0]
        if head in _GRADCAM_FLAGS:
            message = f"{_GRADCAM_FLAGS[head]}:{message.split(':', 1)[1]}"
        raise AnalysisError(f"medsweep gradcam: {message}") from None
    print(f"wrote {png}")
    return 0


# -- parsers -------------------------------------------------------------------------------

_DEVICES = ("auto", "cpu", "cuda")
_DATA_ROOT_HELP = "folder of MedMNIST .npz files (default: the run's, else $MEDMNIST_ROOT, else ~/.medmnist)"


def add_analysis_parsers(subparsers) -> None:
    """Add collect, evaluate, confirm, report and gradcam to ``medsweep``'s subparsers."""
    p = subparsers.add_parser("collect", help="read sweep folders into the results table (Parquet)")
    p.add_argument("sweep_dirs", nargs="+", metavar="sweep_dir", help="sweep folders <storage>/<name>")
    p.add_argument("--out", required=True, help="results Parquet file (created or updated)")
    p.add_argument("--evaluate-test", action="store_true",
                   help="also evaluate the test split of each dataset's best trial (medsweep evaluate)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.add_argument("--device", default="auto", choices=_DEVICES, help="device for --evaluate-test (default auto)")
    p.set_defaults(run=run_collect)

    p = subparsers.add_parser("evaluate", help="evaluate the test split once for each dataset's best trial")
    p.add_argument("results", help="results Parquet file (from medsweep collect)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.add_argument("--force", action="store_true", help="evaluate again trials that already have test metrics")
    p.add_argument("--device", default="auto", choices=_DEVICES, help="auto (a GPU when there is one), cpu or cuda")
    p.set_defaults(run=run_evaluate)

    p = subparsers.add_parser("ensemble", help="greedy ensemble of a sweep's trials, chosen on validation, tested once")
    p.add_argument("sweep_dir", help="the sweep folder <storage>/<name>")
    p.add_argument("--out", required=True, help="folder for ensemble.json")
    p.add_argument("--rounds", type=int, default=20, help="greedy additions after the best single trial (default 20)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.add_argument("--device", default="auto", choices=_DEVICES, help="auto (a GPU when there is one), cpu or cuda")
    p.set_defaults(run=run_ensemble)

    p = subparsers.add_parser("confirm", help="retrain a sweep's best configuration with fresh seeds")
    p.add_argument("sweep_dir", help="the sweep folder <storage>/<name>")
    p.add_argument("--seeds", type=int, default=5, help="seeds per configuration, 1000, 1001, ... (default 5)")
    p.add_argument("--out", required=True, help="confirm Parquet file (created or appended to)")
    p.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of the config's")
    p.add_argument("--device", default=None, choices=_DEVICES, help="auto, cpu or cuda (default: the config's)")
    p.add_argument("--audit-test", default=None, action=argparse.BooleanOptionalAction,
                   help="the test-selection audit: also report the epoch chosen on test beside the one chosen "
                        "on validation (never selects; default: the config's audit_test)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.set_defaults(run=run_confirm)

    p = subparsers.add_parser("report", help="write the HTML/Markdown report, tables and figures")
    p.add_argument("results", help="results Parquet file (from medsweep collect)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--confirm", default=None, help="confirm Parquet file (from medsweep confirm)")
    p.add_argument("--ensemble", action="append", default=[], metavar="PATH",
                   help="ensemble.json (or its folder) from medsweep ensemble; repeat for several")
    p.add_argument("--gradcam-ce", default=None, metavar="CKPT", help="cross-entropy checkpoint for the GradCAM figure")
    p.add_argument("--gradcam-ordinal", default=None, metavar="CKPT",
                   help="Ordinal Loss checkpoint for the GradCAM figure (default for RetinaMNIST: the best "
                        "alpha = 0 and alpha > 0 trials)")
    p.add_argument("--gradcam-images", type=int, default=4, help="images in the GradCAM figure (default 4)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.set_defaults(run=run_report)

    p = subparsers.add_parser("gradcam", help="GradCAM figure of trained checkpoints (MedViT or ResNet)")
    p.add_argument("--checkpoint", action="append", required=True, metavar="CKPT",
                   help="checkpoint folder (state.pt inside); repeat to compare checkpoints side by side")
    p.add_argument("--images", type=int, required=True, metavar="N", help="number of images (rows)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--grades", type=int, nargs="+", default=None,
                   help="grades/classes to show (default 1 2 for RetinaMNIST, else every class)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    p.set_defaults(run=run_gradcam)
