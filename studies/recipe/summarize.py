"""The tables of reports/recipe/README.md from the JSON lines that run_arm.py writes.

    python -m studies.recipe.summarize reports/recipe/a.jsonl.gz reports/recipe/b.jsonl.gz ...

(plain records, `*.jsonl`, read the same.)

Per arm: mean +- std over seeds of the test metrics of the epoch each run selected on
validation; the seed ensemble (the seeds' selected-epoch probabilities averaged, cut-points
for decoded QWK/MAE tuned on the averaged validation probabilities); and, from the per-epoch
test numbers that only this research tool records, how other selection rules would have done
(the default's trailing mean of 5 epochs for runs that selected otherwise, the last epoch, and
the epoch chosen on test: what a paper that selects on test would print; on a binary task also
the decision threshold chosen on validation, moved for the test split's positive share, and
chosen on test; on a multi-class task the class offsets chosen on test); every choice on test
beside another (and the epoch and the rule chosen together, where the records keep the rule's
ACC at every epoch), with the expected best of 3 runs and of all the seeds chosen on test; and,
for arms of the same dataset, the paired difference of each test metric (ACC, AUC, QWK, MAE) and
of the ACC that choosing the epoch on test would claim, to the first arm of that dataset over
the seeds both ran (name the baseline's file first, or the arm with `--baseline ARM`), with
the 95% interval of each mean difference, and the seeds a paired t-test would need to find that
ACC difference at its spread (:func:`analysis.stats.seeds_needed`).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from analysis.stats import POWER, expected_best_of, mean_ci, seeds_text
from medvit.config import TrainConfig
from medvit.data import load_dataset
from medvit.metrics import best_decision_rule, best_threshold, decoded_metrics, evaluate, threshold_accuracy
from medvit.selection import best_epoch
from medvit.tasks import BINARY
from studies import run_main
from studies.recipe.records import read_records, record_paths

DEFAULT_WINDOW = TrainConfig.model_fields["select_window"].default

METRICS = ("acc", "auc", "qwk", "mae", "qwk_decoded", "mae_decoded")
BEST_OF = 3  # the runs a paper that prints its best run is taken to have run, beside all of them


def fmt(values) -> str:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    return f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}" if len(values) else "-"


def main(paths: list[str], baseline: str | None = None) -> None:
    runs = defaultdict(list)
    for record in read_records(paths):
        runs[f'{record["config"]["dataset"]} {record["arm"]}'].append(record)
    if baseline is not None:
        names = {arm.split(" ", 1)[1]: arm for arm in runs}
        if baseline not in names:
            print(f"summarize.py: error: --baseline: no arm {baseline!r} in the records; allowed: {', '.join(names)}",
                  file=sys.stderr)
            sys.exit(2)
        baseline = names[baseline]
    # Every dataset first: a missing file stops the summary before it prints half a table.
    datasets = dict.fromkeys(records[0]["config"]["dataset"] for records in runs.values())
    data = {dataset: load_dataset(dataset) for dataset in datasets}
    print("| arm | seeds | " + " | ".join(f"test {m}" for m in METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for arm, records in runs.items():
        dataset = records[0]["config"]["dataset"]
        print(f"| {arm} | {len(records)} | " + " | ".join(fmt(r["result"]["test"].get(m) for r in records) for m in METRICS) + " |")
        if len(records) > 1 and "scores" in records[0]:
            y_val, y_test = (data[dataset].labels[s].numpy() for s in ("val", "test"))
            val = np.mean([r["scores"]["val_scores"] for r in records], axis=0)
            test = np.mean([r["scores"]["test_scores"] for r in records], axis=0)
            metrics = evaluate(data[dataset].info.task, y_test, test)
            if data[dataset].info.task == "ordinal-regression":
                metrics |= decoded_metrics(y_val, val, y_test, test)
            print(f"| {arm}: seed ensemble of {len(records)} | 1 | " + " | ".join(f"{metrics[m]:.3f}" if m in metrics else "-" for m in METRICS) + " |")
    # each run's test ACC with the decision rule chosen on test, for the two tables that show it
    rule_accs = {arm: [rule_chosen_on_test(r, data[r["config"]["dataset"]].labels["test"].numpy(),
                                           data[r["config"]["dataset"]].info.task) for r in records]
                 for arm, records in runs.items()}
    print()
    print("| arm | selection rule | test acc | test qwk |")
    print("|---|---|---|---|")
    for arm, records in runs.items():
        rules = defaultdict(list)
        for r in records:
            epochs = r["epochs"]
            val = np.array([e["val_acc"] for e in epochs])
            picks = {
                f"trailing mean of {r['config']['select_window']} (what ran)": r["result"]["selected_epoch"] - 1,
                "best single epoch (raw val_acc)": int(np.argmax(val)),
            }
            if r["config"]["select_window"] != DEFAULT_WINDOW:  # e.g. the paper's recipe: our rule on its runs
                picks[f"trailing mean of {DEFAULT_WINDOW} of val_acc (the default rule)"] = trailing_pick(val, DEFAULT_WINDOW)
            picks |= {
                "last epoch": len(epochs) - 1,
                "best epoch on test (what selecting on test would report)": epoch_chosen_on_test(r),
            }
            for rule, i in picks.items():
                rules[rule].append((epochs[i]["test_acc"], epochs[i].get("test_qwk")))
            dataset = data[r["config"]["dataset"]]
            if dataset.info.task == BINARY and "scores" in r:
                for rule, acc in threshold_rules(r, dataset.labels).items():
                    rules[rule].append((acc, None))
        if data[records[0]["config"]["dataset"]].info.task != BINARY and None not in rule_accs[arm]:
            rules["class offsets chosen on test (what tuning them on test would report)"] = [
                (acc, None) for acc in rule_accs[arm]]
        for rule, values in rules.items():
            print(f"| {arm} | {rule} | {fmt(v[0] for v in values)} | {fmt(v[1] for v in values)} |")
    print()
    print_stacked(runs, rule_accs)
    print()
    print_paired(runs, baseline)


def threshold_rules(record: dict, labels: dict) -> dict[str, float]:
    """A binary run's test ACC at its selected epoch with the decision threshold chosen on
    validation; moved for the test split's positive share, as the EM of Saerens et al. (2002)
    estimates it from the unlabeled test scores, and as the test labels give it (a test
    statistic); and chosen on test (the audit). ``labels`` maps each split to its labels."""
    val, test = (np.asarray(record["scores"][f"{split}_scores"]) for split in ("val", "test"))
    y_train, y_val, y_test = (labels[split].numpy().ravel() for split in ("train", "val", "test"))
    trained_on = float(y_train.mean())
    return {"decision threshold chosen on validation (the selected epoch)":
            threshold_accuracy(y_test, test, best_threshold(y_val, val)[0]),
            "threshold for the positive share EM estimates from the unlabeled test scores":
            threshold_accuracy(y_test, test, prior_threshold(trained_on, em_positive_share(test[:, 1], trained_on))),
            "threshold for the test split's positive share (a test-label statistic)":
            threshold_accuracy(y_test, test, prior_threshold(trained_on, float(y_test.mean()))),
            "decision threshold chosen on test (what tuning it on test would report)": best_threshold(y_test, test)[1]}


def reweighted(positive: np.ndarray | float, trained_on: float, share: float) -> np.ndarray | float:
    """Probabilities of the positive class from a model trained on a positive share
    ``trained_on``, reweighted for images whose positive share is ``share``."""
    keep, drop = share / trained_on, (1 - share) / (1 - trained_on)
    return positive * keep / (positive * keep + (1 - positive) * drop)


def prior_threshold(trained_on: float, share: float) -> float:
    """The score threshold at which the reweighted probability (:func:`reweighted`) is 0.5."""
    return 1 - reweighted(0.5, trained_on, share)


def em_positive_share(positive: np.ndarray, trained_on: float, rounds: int = 200) -> float:
    """The positive share of unlabeled images that makes a model's reweighted probabilities
    average to it (Saerens, Latinne and Decaestecker 2002: EM, started at ``trained_on``)."""
    share = trained_on
    for _ in range(rounds):
        share = float(np.mean(reweighted(positive, trained_on, share)))
    return share


def trailing_pick(val: np.ndarray, window: int) -> int:
    """The epoch index the Trainer would select on the trailing mean of ``window`` epochs of
    ``val`` (the first epochs average what there is; a tie keeps the earlier epoch)."""
    means = [val[max(0, i + 1 - window):i + 1].mean() for i in range(len(val))]
    return best_epoch(enumerate(means), "max")[1]


def selected(metric: str) -> Callable[[dict], float | None]:
    """A run's test ``metric`` at the epoch it selected on validation (None if not recorded)."""
    return lambda record: record["result"]["test"].get(metric)


def epoch_chosen_on_test(record: dict) -> int:
    """The index of a run's best test-ACC epoch: what a paper that selects on test would report."""
    return int(np.argmax([epoch["test_acc"] for epoch in record["epochs"]]))


def chosen_on_test(record: dict) -> float:
    return record["epochs"][epoch_chosen_on_test(record)]["test_acc"]


def rule_chosen_on_test(record: dict, y_test: np.ndarray, task: str) -> float | None:
    """A run's test ACC at its selected epoch with the decision rule chosen on test (a binary
    task's threshold, a multi-class task's class offsets); None without its scores or for a
    multi-label task."""
    if "scores" not in record:
        return None
    rule = best_decision_rule(task, y_test, np.asarray(record["scores"]["test_scores"]))
    return rule["acc"] if rule else None


def both_chosen_on_test(record: dict) -> float | None:
    """A run's best test ACC over its epochs with the decision rule chosen on test at each:
    the epoch and the rule chosen on test together (None for records without ``test_rule_acc``)."""
    values = [epoch.get("test_rule_acc") for epoch in record["epochs"]]
    return max(values) if values and None not in values else None


def print_stacked(runs: dict[str, list[dict]], rule_accs: dict[str, list[float | None]]) -> None:
    """What choosing on test claims, one choice beside and on top of another, per arm: test
    ACC with the epoch chosen on validation (the honest number); with the epoch chosen on test;
    with the decision rule chosen on test at the validation-chosen epoch (``rule_accs``, per arm
    and run, from :func:`rule_chosen_on_test`); with both chosen on
    test together (records that keep ``test_rule_acc`` at every epoch); and the best run of 3,
    and of all the seeds, with each (the expected best of k runs drawn from the seeds,
    :func:`analysis.stats.expected_best_of`): what a paper that prints its best run would print."""
    print(f"| arm | seeds | test acc, epoch chosen on val (honest) | epoch chosen on test | decision rule chosen on "
          f"test | both chosen on test | best run of {BEST_OF} chosen on test (epoch / rule / both) | best run of "
          "all the seeds (epoch / rule / both) |")
    print("|---|---|---|---|---|---|---|---|")
    for arm, records in runs.items():
        claims = [[chosen_on_test(r) for r in records], rule_accs[arm], [both_chosen_on_test(r) for r in records]]
        claims = [values if None not in values else [] for values in claims]

        def best_of(k: int) -> str:
            return " / ".join(f"{expected_best_of(v, k):.3f}" if len(v) >= k else "-" for v in claims)

        print(f"| {arm} | {len(records)} | {fmt(selected('acc')(r) for r in records)} | "
              + " | ".join(fmt(values) for values in claims) + f" | {best_of(BEST_OF)} | {best_of(len(records))} |")


PAIRED = {f"test {m} (val-selected)": selected(m) for m in ("acc", "auc", "qwk", "mae")} | {
    "test acc, epoch chosen on test": chosen_on_test}


def paired_differences(
        runs: dict[str, list[dict]], value: Callable[[dict], float | None] = selected("acc"),
        baseline: str | None = None,
) -> list[tuple[str, str, list[int], list[float]]]:
    """For each arm but the baseline of its dataset (the arm named ``baseline``, else the first):
    (arm, baseline, seeds both ran, the per-seed difference of ``value``, arm minus baseline)."""
    rows, first = [], {}
    if baseline is not None:
        first[runs[baseline][0]["config"]["dataset"]] = baseline
    for arm, records in runs.items():
        dataset = records[0]["config"]["dataset"]
        if dataset not in first:
            first[dataset] = arm
        if arm == first[dataset]:
            continue
        base = {r["seed"]: value(r) for r in runs[first[dataset]]}
        mine = {r["seed"]: value(r) for r in records}
        seeds = sorted(seed for seed in base.keys() & mine.keys() if None not in (base[seed], mine[seed]))
        rows.append((arm, first[dataset], seeds, [mine[s] - base[s] for s in seeds]))
    return rows


def print_paired(runs: dict[str, list[dict]], baseline: str | None = None) -> None:
    """One row per arm but its dataset's baseline (``baseline``, else the first arm), over the
    seeds both ran (listed, and each seed's ACC difference after the ACC column's mean); a metric
    that no shared seed has in both arms prints as -."""
    columns = [paired_differences(runs, value, baseline) for value in PAIRED.values()]
    if not columns[0]:
        return
    print("| arm | against | seeds | " + " | ".join(f"paired difference of {name}" for name in PAIRED)
          + f" | seeds to find that ACC difference ({POWER:.0%} power, paired t-test at 5%) |")
    print("|---|---|---|" + "---|" * (len(PAIRED) + 1))
    for row in zip(*columns):
        arm, base, seeds, acc_diffs = row[0]
        cells = [paired_cell(diffs) for *_, diffs in row]
        cells[0] += (" (" + ", ".join(f"{d:+.3f}" for d in acc_diffs) + ")") if acc_diffs else ""
        print(f"| {arm} | {base} | {' '.join(map(str, seeds)) or 'none shared'} | " + " | ".join(cells)
              + f" | {seeds_to_find(acc_diffs)} |")


def paired_cell(diffs: list[float]) -> str:
    """Mean +- std of per-seed differences and, where they spread, the 95% Student-t interval of
    their mean (:func:`analysis.stats.mean_ci`); - with none."""
    if not diffs:
        return "-"
    if not spreads(diffs):
        return fmt(diffs)
    ci = mean_ci(diffs)
    return f"{fmt(diffs)} [{ci.ci_low:+.3f}, {ci.ci_high:+.3f}]"


def seeds_to_find(diffs: list[float]) -> str:
    """The seeds a paired t-test needs to find the mean of ``diffs`` at their spread; - with
    fewer than 2 differences or none of it."""
    if not spreads(diffs):
        return "-"
    return seeds_text(float(np.std(diffs, ddof=1)), float(np.mean(diffs)))


def spreads(diffs: list[float]) -> bool:
    """Whether ``diffs`` are at least two and not all equal: what an interval or a t-test needs."""
    return len(diffs) >= 2 and np.std(diffs) > 0


def parse_args(argv: list[str]) -> tuple[list[str], str | None]:
    """The record files named on the command line and the paired tables' baseline arm; a missing
    file is a one-line error (exit 2)."""
    parser = argparse.ArgumentParser(prog="summarize.py", description="The tables of reports/recipe/README.md "
                                     "from run_arm.py's records.")
    parser.add_argument("--baseline", metavar="ARM", help="the arm the paired table compares the others of its "
                        "dataset with (default: the first)")
    args = record_paths(parser, argv)
    return args.records, args.baseline


if __name__ == "__main__":
    run_main("summarize.py", main, *parse_args(sys.argv[1:]))
