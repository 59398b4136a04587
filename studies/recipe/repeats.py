"""Does ``repeats: 2`` pick a better winner than one seed per configuration, at the same budget?

Research tool behind reports/recipe/README.md. Runs small FIFO sweeps of sweep (c)'s space
with every configuration trained on ``--repeats`` seeds (Optuna; with fewer configurations than
its 10 start-up trials it samples at random, like the six one-seed sweeps it is compared with),
then for each sweep's winner, by the project's ranking (``analysis.tables.rank_trials``: the
configuration with the best mean selection score over its seeds), reports that validation mean,
the mean test accuracy of its seeds' selected weights, and the gap between them (the winner's
curse). ``--from DIR...`` reads finished sweeps instead of running them (the one-seed baseline:
the FIFO sweeps of ``benchmarks/bench_sweep_efficiency.py``). Test numbers are reported only.

    python -m studies.recipe.repeats --repeats 2 --seeds 0 1 2            # 3 sweeps of 4 configurations x 2 seeds
    python -m studies.recipe.repeats --from /tmp/s/fifo6/fifo-*           # the one-seed sweeps
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import ray

from analysis.collect import read_sweep
from analysis.evaluate import evaluate_checkpoint
from analysis.tables import rank_trials
from studies import run_main
from sweeps.launch import run_sweep, sweep_dir
from sweeps.spec import load_spec, spec_from_dict

RECIPE_SPEC = Path(__file__).resolve().parents[2] / "reports" / "recipe" / "retinamnist-recipe.yaml"


def winner(folder: str | Path, data_root: str | None) -> dict:
    """The best configuration of a finished sweep: its seeds' mean selection score and test ACC."""
    ranked = rank_trials(read_sweep(folder).to_pandas())
    group = ranked.iloc[0]["config_group"]  # None in a sweep without repeats: the winner is one trial
    seeds = ranked[ranked["config_group"] == group] if isinstance(group, str) else ranked.iloc[:1]
    tests = [evaluate_checkpoint(path, data_root, device="cpu")["acc"] for path in seeds["checkpoint_path"]]
    val = statistics.fmean(seeds["best_value"])
    return {"sweep": Path(folder).name, "seeds": len(tests), "val": val, "test": statistics.fmean(tests),
            "gap": val - statistics.fmean(tests)}


def run(repeats: int, seed: int, trials: int, epochs: int, storage: str, data_root: str | None) -> Path:
    spec = load_spec(RECIPE_SPEC).model_dump(mode="json", exclude_none=True)
    spec |= {"name": f"repeats{repeats}-seed{seed}", "storage": storage, "num_samples": trials, "repeats": repeats,
             "scheduler": {"type": "fifo"}, "searcher": {"type": "optuna", "seed": seed}, "max_concurrent": 2}
    spec["train"] = spec["train"] | {"epochs": epochs}
    spec = spec_from_dict(spec)
    run_sweep(spec, data_root=data_root)
    return Path(sweep_dir(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep: configurations x repeats")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--from", dest="folders", nargs="+", help="finished sweep folders to read instead")
    parser.add_argument("--data-root")
    args = parser.parse_args()
    folders = args.folders
    if not folders:
        storage = tempfile.mkdtemp(prefix="recipe-repeats-")
        print(f"sweeps under {storage}", flush=True)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        folders = [run(args.repeats, seed, args.trials, args.epochs, storage, args.data_root) for seed in args.seeds]
        ray.shutdown()
    try:
        rows = [winner(folder, args.data_root) for folder in folders]
    except ValueError as exc:  # a folder that is not a finished sweep: one line, not a traceback
        parser.exit(2, f"repeats.py: {exc}\n")
    print("\n| sweep | winner's seeds | validation (mean selection score) | test ACC (mean) | gap |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sweep']} | {r['seeds']} | {r['val']:.4f} | {r['test']:.4f} | {r['gap']:+.4f} |")
    for key in ("val", "test", "gap"):
        values = [r[key] for r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{key}: {statistics.fmean(values):.4f} +- {spread:.4f} over {len(rows)} sweeps")


if __name__ == "__main__":
    run_main("repeats.py", main)
