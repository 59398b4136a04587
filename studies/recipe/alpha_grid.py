"""The seed paper's Table 2 (test ACC by the Ordinal Loss weight alpha) over seeds, from
run_arm.py's records, and what each way of choosing alpha would report.

    python -m studies.recipe.alpha_grid reports/recipe/ordinal-defaults.jsonl.gz reports/recipe/ordinal-alpha-grid.jsonl.gz

Records are grouped by their config's alpha, not their arm's name, and must share every other
config field but the seed (`--arms` picks the records of some arms out of files that hold
others). The first table: per alpha, mean +- std over seeds of the selection score on validation and of the test metrics at the epoch chosen on validation, and the paired
difference of test ACC to alpha 0 with its 95% interval over seeds, beside the paper's one run.
That interval speaks of this one test split; the next columns also resample its images (where the
records keep each image's prediction), so they say what another draw of patients could show. The
second table, over the seeds that ran every alpha: alpha chosen on validation (the best selection
score: what a sweep of the grid keeps; or its QWK), per seed and once for all seeds, against alpha
fixed at 0 and alpha chosen on test (per seed: the best row of a one-run Table 2, as the paper's),
with the seeds in which each gains at least what the paper's Table 2 prints (+0.042).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from functools import partial

import numpy as np

from analysis.reference import TABLE2
from analysis.stats import seed_image_bootstrap
from medvit.data import load_dataset
from medvit.metrics import quadratic_weighted_kappa
from studies import run_main
from studies.recipe.records import read_records, record_paths
from studies.recipe.run_arm import predictions
from studies.recipe.summarize import fmt, paired_cell

METRICS = ("acc", "auc", "qwk", "mae")
BOOTSTRAP_DRAWS = 2000
# what the paper's Table 2 prints for its best alpha over alpha 0, one run each (0.594 - 0.552)
PAPER_BEST_GAIN = max(ref.value for ref in TABLE2.values()) - TABLE2[0.0].value


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float((y == predicted).mean())


def test_predictions(record: dict) -> np.ndarray | None:
    """A run's predicted class per test image (run_arm.py's ``--predictions-only``, or the most
    probable class of its recorded probabilities); None if it kept neither."""
    if "predictions" in record:
        return np.asarray(record["predictions"]["test"])
    if "scores" in record:
        return np.asarray(predictions(record["scores"])["test"])
    return None


def seed_and_image_interval(y: np.ndarray, base: list[np.ndarray], arm: list[np.ndarray], metric,
                            draws: int = BOOTSTRAP_DRAWS) -> str:
    """The 95% interval of the mean over seeds of ``metric(arm) - metric(base)`` (paired runs:
    ``base[k]`` and ``arm[k]`` are one seed's test predictions), resampling the seeds and the test
    images (:func:`analysis.stats.seed_image_bootstrap`); "-" where a run kept no predictions."""
    if not base or any(p is None for p in (*base, *arm)):
        return "-"
    res = seed_image_bootstrap(lambda predicted, images: metric(y[images], predicted[images]), arm, len(y),
                               baseline=base, n_resamples=draws)
    return f"[{res.ci_low:+.3f}, {res.ci_high:+.3f}]"


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


def per_alpha_rows(by_alpha: dict[float, dict[int, dict]], y_test: np.ndarray) -> list[str]:
    """The first table's rows: one per alpha."""
    base = by_alpha[0.0]
    rows = []
    for alpha, runs in by_alpha.items():
        seeds = sorted(runs.keys() & base.keys())
        diffs = [runs[s]["result"]["test"]["acc"] - base[s]["result"]["test"]["acc"] for s in seeds]
        paired = ["-"] * 3
        if alpha:
            pairs = ([test_predictions(base[s]) for s in seeds], [test_predictions(runs[s]) for s in seeds])
            # the grades of the whole split, not of one resample (which may miss the rarest)
            qwk = partial(quadratic_weighted_kappa, num_classes=int(y_test.max()) + 1)
            paired = [f"{paired_cell(diffs)} ({sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)})",
                      *(seed_and_image_interval(y_test, *pairs, metric) for metric in (accuracy, qwk))]
        paper = TABLE2[alpha].printed if alpha in TABLE2 else "-"
        cells = [fmt(r["result"]["select_score"] for r in runs.values()),
                 *(fmt(r["result"]["test"][m] for r in runs.values()) for m in METRICS), *paired, paper]
        rows.append(f"| {alpha:g} | {len(runs)} | " + " | ".join(cells) + " |")
    return rows


def choice_rows(by_alpha: dict[float, dict[int, dict]], y_test: np.ndarray) -> list[str]:
    """The second table's rows, over the seeds every alpha ran: alpha fixed at 0; chosen on
    validation (the selection score, or QWK) and on test, per seed and once for all seeds (the
    best mean); ties go to the smaller alpha."""
    seeds = shared_seeds(by_alpha)
    alphas = list(by_alpha)

    def test_acc(alpha: float, seed: int) -> float:
        return by_alpha[alpha][seed]["result"]["test"]["acc"]

    def val_score(alpha: float, seed: int) -> float:
        return by_alpha[alpha][seed]["result"]["select_score"]

    def val_qwk(alpha: float, seed: int) -> float:
        return by_alpha[alpha][seed]["result"]["val"]["qwk"]

    def per_seed(score) -> list[float]:
        return [alphas[int(np.argmax([score(a, s) for a in alphas]))] for s in seeds]

    def for_all_seeds(score) -> list[float]:
        return [alphas[int(np.argmax([np.mean([score(a, s) for s in seeds]) for a in alphas]))]] * len(seeds)

    # (how, the alpha chosen per seed, whether the choice read the test split)
    choices = [
        ("fixed at 0 (cross-entropy)", [0.0] * len(seeds), False),
        ("chosen on validation, per seed (the best selection score: what a sweep of the grid keeps)",
         per_seed(val_score), False),
        ("chosen on validation, one for all seeds (the best mean selection score)", for_all_seeds(val_score), False),
        ("chosen on validation QWK (at the epoch chosen), per seed", per_seed(val_qwk), False),
        ("chosen on validation QWK, one for all seeds", for_all_seeds(val_qwk), False),
        ("chosen on test, per seed (the best row of a one-run Table 2, as the paper's)", per_seed(test_acc), True),
        ("chosen on test, one for all seeds (the best mean test ACC)", for_all_seeds(test_acc), True),
    ]
    rows = []
    base = [test_predictions(by_alpha[0.0][s]) for s in seeds]
    for how, chosen, reads_test in choices:
        accs = [test_acc(a, s) for a, s in zip(chosen, seeds)]
        gains = [acc - test_acc(0.0, s) for acc, s in zip(accs, seeds)]
        counts = ", ".join(f"{a:g}: {n}" for a, n in sorted(Counter(chosen).items()))
        # a choice made on test would have to be made again on each draw of test images
        images = "-" if reads_test or not any(gains) else seed_and_image_interval(
            y_test, base, [test_predictions(by_alpha[a][s]) for a, s in zip(chosen, seeds)], accuracy)
        as_large = sum(gain >= PAPER_BEST_GAIN - 1e-9 for gain in gains)  # 1e-9: 0.594 - 0.552 in floats
        rows.append(f"| {how} | {counts} | {fmt(accs)} | {paired_cell(gains) if any(gains) else '-'} | {images} "
                    f"| {as_large} of {len(seeds)} |")
    return rows


def main(by_alpha: dict[float, dict[int, dict]]) -> None:
    dataset = next(iter(by_alpha[0.0].values()))["config"]["dataset"]
    y_test = load_dataset(dataset).labels["test"].numpy().reshape(-1)
    print(f"{dataset}, test split at the epoch chosen on validation, mean +- std over seeds")
    print()
    print("| alpha | seeds | validation selection score | " + " | ".join(f"test {m}" for m in METRICS)
          + " | test acc minus alpha 0, paired over seeds [95% interval] (seeds higher / lower)"
          + " | the same over seeds and test images [95% bootstrap] | test qwk minus alpha 0, the same"
          + " | the paper's Table 2, one run |")
    print("|---|---|---|" + "---|" * len(METRICS) + "---|---|---|---|")
    print("\n".join(per_alpha_rows(by_alpha, y_test)))
    print()
    print(f"Choosing alpha among {', '.join(f'{a:g}' for a in by_alpha)}, per seed, "
          f"over the {len(shared_seeds(by_alpha))} seeds that ran every alpha:")
    print()
    print("| how alpha is chosen | chosen (alpha: seeds) | test acc | minus alpha 0, paired [95% interval]"
          f" | the same over seeds and test images [95% bootstrap] | seeds gaining the paper's +{PAPER_BEST_GAIN:.3f} or more |")
    print("|---|---|---|---|---|---|")
    print("\n".join(choice_rows(by_alpha, y_test)))


def parse_args(argv: list[str]) -> dict[float, dict[int, dict]]:
    """The grid of the record files named on the command line; a missing file or records that do
    not form a grid is a one-line error (exit 2)."""
    parser = argparse.ArgumentParser(prog="alpha_grid.py", description="The paper's Table 2 over seeds from "
                                     "run_arm.py's records.")
    parser.add_argument("--arms", nargs="+", metavar="ARM",
                        help="only the records of these arms (default: all), for files that hold other studies too")
    args = record_paths(parser, argv)
    records = [r for r in read_records(args.records) if args.arms is None or r["arm"] in args.arms]
    if not records:
        parser.error(f"--arms: no record of {', '.join(args.arms)} in {', '.join(args.records)}")
    try:
        return grid(records)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    run_main("alpha_grid.py", main, parse_args(sys.argv[1:]))
