"""The seed paper's Table 2 (test ACC by the Ordinal Loss weight alpha) over seeds, from
run_arm.py's records, and what each way of choosing alpha would report.

    python -m studies.recipe.alpha_grid reports/recipe/ordinal-defaults.jsonl.gz reports/recipe/ordinal-alpha-grid.jsonl.gz

Records are grouped by their config's alpha, not their arm's name, and must share every other
config field but the seed. The first table: per alpha, mean +- std over seeds of the selection
score on validation and of the test metrics at the epoch chosen on validation, and the paired
difference of test ACC to alpha 0 with its 95% interval, beside the paper's one run. The second:
per seed, alpha chosen on validation (the best selection score: what a sweep of the grid, one
run an alpha, keeps) against alpha fixed at 0 and alpha chosen on test (the best row of a Table 2
of one run an alpha, as the paper's), over the seeds that ran every alpha.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import numpy as np

from analysis.reference import TABLE2
from studies import run_main
from studies.recipe.records import read_records, record_paths
from studies.recipe.summarize import fmt, paired_cell

METRICS = ("acc", "auc", "qwk", "mae")


def grid(records: list[dict]) -> dict[float, dict[int, dict]]:
    """``{alpha: {seed: record}}``, alphas ascending; a ValueError names the config field where
    two records differ, a run recorded twice, a grid without alpha 0 (the baseline every row is
    paired with) or without a seed that ran every alpha."""
    first = records[0]["config"]
    by_alpha: dict[float, dict[int, dict]] = defaultdict(dict)
    for record in records:
        config = record["config"]
        field = next((k for k in first.keys() | config.keys()
                      if k not in ("alpha", "seed") and first.get(k) != config.get(k)), None)
        if field:
            raise ValueError(f"records: {field} differs ({first.get(field)!r} and {config.get(field)!r}); "
                             "the grid compares runs that differ only in alpha and seed")
        if config["seed"] in by_alpha[config["alpha"]]:
            raise ValueError(f"records: alpha {config['alpha']} seed {config['seed']} recorded twice")
        by_alpha[config["alpha"]][config["seed"]] = record
    if 0.0 not in by_alpha:
        raise ValueError("records: no run at alpha 0, the baseline every row is paired with")
    by_alpha = dict(sorted(by_alpha.items()))
    if not shared_seeds(by_alpha):
        raise ValueError("records: no seed ran every alpha")
    return by_alpha


def shared_seeds(by_alpha: dict[float, dict[int, dict]]) -> list[int]:
    """The seeds that ran every alpha, the ones a choice of alpha can be made on."""
    return sorted(set.intersection(*(set(runs) for runs in by_alpha.values())))


def per_alpha_rows(by_alpha: dict[float, dict[int, dict]]) -> list[str]:
    """The first table's rows: one per alpha."""
    base = by_alpha[0.0]
    rows = []
    for alpha, runs in by_alpha.items():
        seeds = sorted(runs.keys() & base.keys())
        diffs = [runs[s]["result"]["test"]["acc"] - base[s]["result"]["test"]["acc"] for s in seeds]
        paired = f"{paired_cell(diffs)} ({sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)})" if alpha else "-"
        paper = TABLE2[alpha].printed if alpha in TABLE2 else "-"
        cells = [fmt(r["result"]["select_score"] for r in runs.values()),
                 *(fmt(r["result"]["test"][m] for r in runs.values()) for m in METRICS)]
        rows.append(f"| {alpha:g} | {len(runs)} | " + " | ".join(cells) + f" | {paired} | {paper} |")
    return rows


def choice_rows(by_alpha: dict[float, dict[int, dict]]) -> list[str]:
    """The second table's rows, over the seeds every alpha ran: alpha fixed at 0; chosen on
    validation and on test, per seed and once for all seeds (the best mean); ties go to the
    smaller alpha."""
    seeds = shared_seeds(by_alpha)
    alphas = list(by_alpha)

    def test_acc(alpha: float, seed: int) -> float:
        return by_alpha[alpha][seed]["result"]["test"]["acc"]

    def val_score(alpha: float, seed: int) -> float:
        return by_alpha[alpha][seed]["result"]["select_score"]

    def per_seed(score) -> list[float]:
        return [alphas[int(np.argmax([score(a, s) for a in alphas]))] for s in seeds]

    def for_all_seeds(score) -> list[float]:
        return [alphas[int(np.argmax([np.mean([score(a, s) for s in seeds]) for a in alphas]))]] * len(seeds)

    choices = {
        "fixed at 0 (cross-entropy)": [0.0] * len(seeds),
        "chosen on validation, per seed (the best selection score: what a sweep of the grid keeps)": per_seed(val_score),
        "chosen on validation, one for all seeds (the best mean selection score)": for_all_seeds(val_score),
        "chosen on test, per seed (the best row of a one-run Table 2, as the paper's)": per_seed(test_acc),
        "chosen on test, one for all seeds (the best mean test ACC)": for_all_seeds(test_acc),
    }
    rows = []
    for how, chosen in choices.items():
        accs = [test_acc(a, s) for a, s in zip(chosen, seeds)]
        gains = [acc - test_acc(0.0, s) for acc, s in zip(accs, seeds)]
        counts = ", ".join(f"{a:g}: {n}" for a, n in sorted(Counter(chosen).items()))
        rows.append(f"| {how} | {counts} | {fmt(accs)} | {paired_cell(gains) if any(gains) else '-'} |")
    return rows


def main(by_alpha: dict[float, dict[int, dict]]) -> None:
    dataset = next(iter(next(iter(by_alpha.values())).values()))["config"]["dataset"]
    print(f"{dataset}, test split at the epoch chosen on validation, mean +- std over seeds")
    print()
    print("| alpha | seeds | validation selection score | " + " | ".join(f"test {m}" for m in METRICS)
          + " | test acc minus alpha 0, paired [95% interval] (seeds higher / lower) | the paper's Table 2, one run |")
    print("|---|---|---|" + "---|" * len(METRICS) + "---|---|")
    print("\n".join(per_alpha_rows(by_alpha)))
    print()
    print(f"Choosing alpha among {', '.join(f'{a:g}' for a in by_alpha)}, per seed, "
          f"over the {len(shared_seeds(by_alpha))} seeds that ran every alpha:")
    print()
    print("| how alpha is chosen | chosen (alpha: seeds) | test acc | minus alpha 0, paired [95% interval] |")
    print("|---|---|---|---|")
    print("\n".join(choice_rows(by_alpha)))


def parse_args(argv: list[str]) -> dict[float, dict[int, dict]]:
    """The grid of the record files named on the command line; a missing file or records that do
    not form a grid is a one-line error (exit 2)."""
    parser = argparse.ArgumentParser(prog="alpha_grid.py", description="The paper's Table 2 over seeds from "
                                     "run_arm.py's records.")
    paths = record_paths(parser, argv).records
    try:
        return grid(list(read_records(paths)))
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    run_main("alpha_grid.py", main, parse_args(sys.argv[1:]))
