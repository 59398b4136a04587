"""The README's headline ("What the numbers say so far") is what the committed records give: each
figure of its table, of its paired bullets and of the range every honest arm falls in,
recomputed from the files under reports/ that the README's sections name, with the rules they
name; and so are the table of what choosing on test adds ("Where the gap to the papers is"), the
Ordinal Loss's table of paired differences and a paired t-test's power, and the H200 tables of
reports/protocol/README.md; each table of reports/recipe/README.md under the commands of the
scripts that print its tables (summarize.py, small_data.py, ...) is what they print (slow); and
every other mean ± std of the README is quoted from a report or recomputed from records. A
record file rewritten, a study added that moves the range, or a figure edited by hand fails here."""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from analysis.stats import detectable_difference, format_pm, paired_bootstrap, seeds_text
from medvit.data import load_dataset
from medvit.metrics import evaluate
from studies.recipe import summarize
from studies.recipe.records import read_records
from studies.recipe.summarize import (both_chosen_on_test, chosen_on_test, epoch_chosen_on_test, paired_differences,
                                     rule_chosen_on_test, selected)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "reports" / "recipe"
H200 = sorted((REPO / "reports" / "protocol" / "h200").glob("*.jsonl.gz"))


def headline() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## What the numbers say so far")
    return text[start:text.index("\n## ", start + 1)]


def cells(line: str) -> list[str]:
    """A Markdown table row's cells, stripped."""
    return [cell.strip() for cell in line.strip("|").split("|")]


def row(label: str) -> list[str]:
    """The cells after the first of the headline table's row that starts with ``label``."""
    [line] = [line for line in headline().splitlines() if line.startswith(f"| {label}")]
    return cells(line)[1:]


def arms(*paths: Path) -> dict[str, list[dict]]:
    runs = defaultdict(list)
    for record in read_records([str(path) for path in paths]):
        runs[record["arm"]].append(record)
    return runs


def spread(values: list[float], sign: bool = False) -> str:
    """Mean ± sample std as the docs print them (a paired difference with its sign)."""
    text = format_pm(float(np.mean(values)), float(np.std(values, ddof=1)))
    return f"+{text}" if sign and not text.startswith("-") else text


def paired(runs: dict[str, list[dict]], metric: str = "acc") -> list[float]:
    """The per-seed difference of the second arm to the first (the file's order, as summarize)."""
    [(*_, diffs)] = paired_differences(runs, selected(metric))
    return diffs


def test_our_28_px_row_is_the_choices_on_test_records():
    runs = arms(RECIPE / "choices-on-test.jsonl.gz")
    retina, pneumonia = ([r["result"]["test"]["acc"] for r in runs[arm]] for arm in ("retina-28", "pneumonia-28"))
    assert row("ours: `medvit_28_tiny` at 28 px") == [f"{spread(retina)} ({len(retina)} seeds)",
                                                      f"{spread(pneumonia)} ({len(pneumonia)} seeds)"]


def test_the_224_px_rows_and_their_audit_are_the_h200_records():
    runs = arms(*H200)
    assert len(H200) == 6 and {len(runs[arm]) for arm in ("retinamnist-a0", "retinamnist-a0.2")} == {3}
    honest = [spread([r["result"]["test"]["acc"] for r in runs[f"retinamnist-a{alpha}"]]) for alpha in ("0", "0.2")]
    on_test = [spread([chosen_on_test(r) for r in runs[f"retinamnist-a{alpha}"]]) for alpha in ("0", "0.2")]
    assert row("ours: `medvit_base`")[0] == f"{honest[0]} (alpha 0), {honest[1]} (alpha 0.2), 3 seeds each"
    assert row("audit of those 224 px runs")[0] == f"{on_test[0]}, {on_test[1]}"
    assert on_test != honest  # the audit row is another rule than the honest one


def test_the_paired_bullets_are_their_records():
    text = " ".join(headline().split())
    retina = paired({"medvit": arms(RECIPE / "resize-retina.jsonl.gz")["retina-28"],
                     "resnet18": arms(RECIPE / "resnet18-retina.jsonl.gz")["resnet18"]})
    pneumonia = paired({
        "medvit": arms(RECIPE / "resize-pneumonia.jsonl.gz",
                       RECIPE / "pneumonia-28-seeds-3-4.jsonl.gz")["pneumonia-28"],
        "resnet18": arms(RECIPE / "resnet18-pneumonia.jsonl.gz")["pneumonia-resnet18"]})
    assert len(retina) == len(pneumonia) == 5
    assert (f"minus MedViT, paired over 5 seeds, {spread(retina, sign=True)} on RetinaMNIST and "
            f"{spread(pneumonia, sign=True)} on PneumoniaMNIST") in text
    ordinal = arms(RECIPE / "ordinal-defaults.jsonl.gz")  # alpha 0 first: the baseline
    acc, qwk = (paired(ordinal, metric) for metric in ("acc", "qwk"))
    assert len(acc) == len(qwk) == 20
    assert (f"helps RetinaMNIST by a third of what the paper printed: {np.mean(acc):+.3f} test ACC and "
            f"{np.mean(qwk):+.3f} QWK over alpha 0, 20 paired seeds") in text


def test_the_range_of_every_honest_arm_is_the_records_and_so_is_the_gap_to_the_papers():
    # every arm of one configuration over seeds on a whole dataset: the records of studies/recipe
    # and of the H200, not a subset's (train_images) nor a sweep's configurations (config_index)
    means = defaultdict(list)
    for paths in [*([path] for path in sorted(RECIPE.glob("*.jsonl.gz"))), H200]:  # the H200's: a file a run
        runs = defaultdict(list)
        for record in read_records(map(str, paths)):
            if "train_images" not in record and "config_index" not in record:
                runs[record["config"]["dataset"], record["arm"]].append(record["result"]["test"]["acc"])
        for (dataset, _), accs in runs.items():
            means[dataset].append(np.mean(accs))
    papers = {"retinamnist": (0.561, 0.594), "pneumoniamnist": (0.961, 0.939)}
    retina, pneumonia = (f"{min(means[d]):.3f}-{max(means[d]):.3f}" for d in papers)
    gaps = [f(gap for d, numbers in papers.items() for gap in (min(numbers) - max(means[d]),
                                                              max(numbers) - min(means[d]))) for f in (min, max)]
    text = " ".join(headline().split())
    assert (f"scores {retina} on RetinaMNIST and {pneumonia} on PneumoniaMNIST (the arms' means), "
            f"{gaps[0]:.2f}-{gaps[1]:.2f} below the papers") in text
    protocol = (REPO / "README.md").read_text()
    assert (f"keeps RetinaMNIST within {retina} and PneumoniaMNIST within {pneumonia} (the arms' means on the "
            f"whole datasets), {gaps[0]:.2f}-{gaps[1]:.2f} below all four") in " ".join(protocol.split())


# "Where the gap to the papers is": each row's records, in the table's order under its dataset
GAP_ROWS = {
    "retinamnist": [((RECIPE / "choices-on-test.jsonl.gz",), "retina-28"),
                    ((RECIPE / "choices-on-test.jsonl.gz", RECIPE / "ordinal-seeds-5-19.jsonl.gz"), "paper-28-a0.2"),
                    (H200, "retinamnist-a0"), (H200, "retinamnist-a0.2")],
    "pneumoniamnist": [((RECIPE / "choices-on-test.jsonl.gz",), "pneumonia-28"),
                       ((RECIPE / "resnet18-pneumonia.jsonl.gz",), "pneumonia-resnet18"),
                       ((RECIPE / "paper-recipe-28-pneumonia-5-seeds.jsonl.gz",), "pneumonia-paper-28")],
}


def gap_table() -> dict[str, list[list[str]]]:
    """The cells after the first of each row of the README's gap table, under its dataset."""
    text = (REPO / "README.md").read_text()
    start = text.index("| | epoch chosen on validation (ours) | epoch chosen on test |")
    rows, dataset = defaultdict(list), None
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        first, *rest = cells(line)
        if first.startswith("**"):
            dataset = first.split("**")[1].lower()
        else:
            rows[dataset].append(rest)
    return rows


def test_the_gap_tables_rows_are_their_records(real_root):
    table = gap_table()
    for dataset, sources in GAP_ROWS.items():
        data = load_dataset(dataset, root=real_root)
        y_test = data.labels["test"].numpy()
        assert len(table[dataset]) >= len(sources)
        for (paths, arm), shown in zip(sources, table[dataset]):
            runs = arms(*paths)[arm]
            both = [both_chosen_on_test(r) for r in runs]
            assert shown == [
                spread([r["result"]["test"]["acc"] for r in runs]), spread([chosen_on_test(r) for r in runs]),
                spread([rule_chosen_on_test(r, y_test, data.info.task) for r in runs]),
                "not recorded" if None in both else spread(both)], (dataset, arm)


# "The Ordinal Loss": each row's records and its two arms, alpha 0 first
ORDINAL_ROWS = [
    (H200, "retinamnist-a0", "retinamnist-a0.2"),
    ((RECIPE / "paper-recipe-28.jsonl.gz",), "paper-28", "paper-28-a0.2"),
    ((RECIPE / "resnet18-retina.jsonl.gz", RECIPE / "resnet18-ordinal-retina.jsonl.gz"), "resnet18",
     "resnet18-alpha0.2"),
    ((RECIPE / "choices-on-test.jsonl.gz", RECIPE / "ordinal-seeds-5-19.jsonl.gz"), "paper-28", "paper-28-a0.2"),
    ((RECIPE / "ordinal-defaults.jsonl.gz",), "retina-28", "retina-28-a0.2"),
]


def test_the_ordinal_loss_table_is_its_records_and_the_paired_t_tests_power():
    text = (REPO / "README.md").read_text()
    start = text.index("| paired runs, RetinaMNIST, alpha 0.2 minus alpha 0 |")
    rows = [cells(line)[1:] for line in text[start:].splitlines()[2:2 + len(ORDINAL_ROWS)]]
    for (paths, base, arm), shown in zip(ORDINAL_ROWS, rows, strict=True):
        runs = arms(*paths)
        diffs = paired({base: runs[base], arm: runs[arm]})
        std = float(np.std(diffs, ddof=1))
        assert shown == [str(len(diffs)), spread(diffs, sign=True), f"±{detectable_difference(std, len(diffs)):.3f}",
                         seeds_text(std, 0.042), seeds_text(std, float(np.mean(diffs)))], (paths, arm)


def test_the_protocol_reports_h200_tables_are_its_records(real_root):
    text = (REPO / "reports" / "protocol" / "README.md").read_text()
    data = load_dataset("retinamnist", root=real_root)
    y_test = data.labels["test"].numpy()
    runs = arms(*H200)
    for alpha in ("0", "0.2"):
        records = sorted(runs[f"retinamnist-a{alpha}"], key=lambda r: r["seed"])
        honest = spread([r["result"]["test"]["acc"] for r in records])
        auc = spread([r["result"]["test"]["auc"] for r in records])
        ensemble = evaluate(data.info.task, y_test, np.mean([r["scores"]["test_scores"] for r in records], axis=0))
        assert (f"| RetinaMNIST, alpha {alpha} | **{honest}** ({auc}) | {spread([chosen_on_test(r) for r in records])} "
                f"| {spread([r['epochs'][-1]['test_acc'] for r in records])} "
                f"| {ensemble['acc']:.3f} ({ensemble['auc']:.3f}) |") in text
        per_seed = " | ".join(f"{r['result']['selected_epoch']}: {r['result']['test']['acc']:.3f}; "
                              f"{epoch_chosen_on_test(r) + 1}: {chosen_on_test(r):.3f}" for r in records)
        assert f"| alpha {alpha} | {per_seed} |" in text


# The study scripts whose output reports/recipe/README.md pastes as tables (`rung_readout run` trains).
TABLE_SCRIPTS = ("summarize", "small_data", "rung_readout table", "alpha_grid", "rank_metric", "halving_order")
# What the tables hold: a mean ± std, or an interval.
SPREAD_OR_INTERVAL = re.compile(r"[+-]?\d\.\d{3} ± \d\.\d{3}|\[[+-]?\d\.\d{3}, [+-]?\d\.\d{3}\]")


def table_blocks(doc: str) -> list[tuple[int, list[list[str]], str]]:
    """Each ```bash block of ``doc`` with TABLE_SCRIPTS commands on files of the tree (not a
    template's DIR or a loop's $s): its line, each command's module and arguments, and the
    Markdown tables between it and the next block (the tables it prints)."""
    blocks = list(re.finditer(r"```bash\n(.*?)```", doc, re.S))
    found = []
    for block, after in zip(blocks, [*blocks[1:], None]):
        commands = []
        for line in block[1].replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            scripts = (f"python -m studies.recipe.{script} " for script in TABLE_SCRIPTS)
            if any(line.startswith(script) for script in scripts) and "$" not in line:
                arguments = shlex.split(line)[2:]
                if all((REPO / a).is_file() for a in arguments if a.endswith((".jsonl", ".jsonl.gz"))):
                    commands.append(arguments)
        if commands:
            tables = doc[block.end():after.start() if after else len(doc)]
            found.append((doc.count("\n", 0, block.start()) + 1, commands,
                          "\n".join(line for line in tables.splitlines() if line.startswith("|"))))
    return found


def printed_by(module: str, argv: list[str], monkeypatch) -> str:
    """What ``python -m module argv`` prints, run in this process (a second interpreter would
    import torch again for every command)."""
    printed = io.StringIO()
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        # summarize is imported above; running it as __main__ again is what is meant
        warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
        runpy.run_module(module, run_name="__main__")
    return printed.getvalue()


def arm_result_spreads(paths: list[str]) -> set[str]:
    """Mean ± std over seeds of every number each arm's records keep of its selected epoch."""
    values = defaultdict(list)
    for record in read_records(paths):
        for split in ("val", "test"):
            for metric, value in record["result"].get(split, {}).items():
                if isinstance(value, (int, float)):
                    values[record["config"]["dataset"], record["arm"], split, metric].append(value)
    return {spread(v) for v in values.values() if len(v) > 1}


def paired_bootstraps(paths: list[str], baseline: str | None) -> set[str]:
    """The 95% paired bootstrap interval (analysis.stats.paired_bootstrap: 10,000 resamples, seed
    0) of each difference summarize.py pairs, which the report gives beside its t intervals."""
    runs = defaultdict(list)
    for record in read_records(paths):
        runs[record["arm"]].append(record)
    intervals = set()
    for value in summarize.PAIRED.values():
        for *_, diffs in paired_differences(runs, value, baseline):
            if len(diffs) > 1:
                found = paired_bootstrap(diffs, np.zeros(len(diffs)))
                intervals.add(f"[{found.ci_low:+.3f}, {found.ci_high:+.3f}]")
    return intervals


@pytest.mark.slow  # 24 blocks, 31 commands, each reading its records (summarize its dataset too): about 90 s
def test_every_table_of_the_recipe_report_is_what_its_commands_print(real_root, monkeypatch):
    # The first block's tables also hold six sweeps' winners and ensembles, whose folders are not
    # in the tree: after it, each table below the scripts' commands is their output.
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    monkeypatch.chdir(REPO)
    blocks = table_blocks((RECIPE / "README.md").read_text())[1:]
    assert len(blocks) >= 24 and {command[0] for _, commands, _ in blocks for command in commands} == {
        f"studies.recipe.{script.split()[0]}" for script in TABLE_SCRIPTS}
    for line, commands, tables in blocks:
        printed, known = "", set()
        for module, *argv in commands:
            printed += printed_by(module, argv, monkeypatch)
            if module == "studies.recipe.summarize":
                paths, baseline = summarize.parse_args(argv)
                known |= arm_result_spreads(paths) | paired_bootstraps(paths, baseline)
        known |= set(printed.replace(" +- ", " ± ").split(" | "))
        figures = SPREAD_OR_INTERVAL.findall(tables)
        assert figures, line
        unknown = [f for f in figures if not any(f in cell or f.lstrip("+") in cell for cell in known)]
        assert not unknown, f"reports/recipe/README.md, the tables below line {line}: {unknown}"


def test_every_spread_the_readme_prints_is_quoted_from_a_report_or_recomputed_here():
    # a figure of the README that no report, benchmark result or doc holds, and that no record's
    # arm gives, is one nobody can trace (the gap table's own cells are recomputed above)
    readme = (REPO / "README.md").read_text()
    reports = "".join(path.read_text() for path in [*(REPO / "reports").rglob("*.md"), *(REPO / "docs").glob("*.md"),
                                                    REPO / "benchmarks" / "RESULTS.md"])
    recomputed = arm_result_spreads([str(path) for path in [*RECIPE.glob("*.jsonl.gz"), *H200]])
    recomputed |= {cell for rows in gap_table().values() for gap_row in rows for cell in gap_row}
    figures = set(re.findall(r"[+-]?\d\.\d{3} ± \d\.\d{3}", readme))
    assert len(figures) > 50
    untraced = sorted(f for f in figures if f.lstrip("+") not in reports and f not in reports and f not in recomputed)
    assert not untraced
