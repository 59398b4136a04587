"""The small-data schedule table of reports/recipe/README.md from run_arm.py's records.

    python -m studies.recipe.small_data --train-images 546 reports/recipe/small-pneumonia.jsonl.gz

Per arm, over its seeds: optimizer steps in all, test ACC and AUC of the epoch selected on
validation (mean +- std) and their paired difference to the first arm, the selected epochs,
the test ACC that choosing the epoch on test would report, and the first epoch at which
validation accuracy leaves the majority class's share (for the EMA weights that are
selected and, in `--raw-val` records, for the trained weights).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from medvit.data import load_dataset
from medvit.train import train_steps
from studies import run_main
from studies.recipe.records import read_records
from studies.recipe.summarize import chosen_on_test, fmt


def leaves_majority(epochs: list[dict], key: str, majority: float) -> str:
    """The first epoch whose validation accuracy differs from always predicting the majority."""
    first = next((e["epoch"] for e in epochs if key in e and abs(e[key] - majority) > 1e-9), None)
    return "never" if first is None else str(first)


def paired(records: list[dict], baseline: list[dict], metric: str) -> str:
    """Mean +- std over the seeds both ran of the val-selected test metric, arm minus baseline."""
    base = {r["seed"]: r["result"]["test"][metric] for r in baseline}
    diffs = [r["result"]["test"][metric] - base[r["seed"]] for r in records if r["seed"] in base]
    return fmt(diffs) if diffs and records is not baseline else "-"


def main(paths: list[str], n_train: int) -> None:
    runs = defaultdict(list)
    for record in read_records(paths):
        runs[record["arm"]].append(record)
    majorities = {}
    first = next(iter(runs.values()))
    print("| arm | steps | seeds | test ACC | test AUC | paired to the first arm: ACC / AUC | selected epochs "
          "| ACC, epoch chosen on test | val ACC leaves majority at epoch (EMA / trained weights) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm, records in runs.items():
        config = records[0]["config"]
        if config["dataset"] not in majorities:
            labels = load_dataset(config["dataset"], root=config["data_root"]).labels["val"].numpy().ravel()
            majorities[config["dataset"]] = np.bincount(labels).max() / len(labels)
        majority = majorities[config["dataset"]]
        steps = config["epochs"] * train_steps(n_train, config["batch_size"])
        exits = [f'{leaves_majority(r["epochs"], "val_acc", majority)} / '
                 f'{leaves_majority(r["epochs"], "raw_val_acc", majority)}' for r in records]
        print(f"| {arm} | {steps} | {' '.join(str(r['seed']) for r in records)} "
              f"| {fmt([r['result']['test']['acc'] for r in records])} "
              f"| {fmt([r['result']['test']['auc'] for r in records])} "
              f"| {paired(records, first, 'acc')} / {paired(records, first, 'auc')} "
              f"| {', '.join(str(r['result']['selected_epoch']) for r in records)} of {config['epochs']} "
              f"| {fmt(map(chosen_on_test, records))} | {', '.join(exits)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-images", type=int, required=True, help="run_arm.py's --train-images")
    parser.add_argument("records", nargs="+")
    args = parser.parse_args()
    run_main("small_data.py", main, args.records, args.train_images)
