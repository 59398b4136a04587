"""The test-selection audit (`audit_test`): every epoch's test metrics are recorded, and no
choice reads them. The adversarial proof: the same runs with the test labels reversed (grade
g -> 4 - g, so what scores best on one labelling scores badly on the other) must make every
choice (selected epoch, ASHA's stops, the searcher's proposals, the ranking,
best_config.yaml) exactly as with the real labels, while the audit's numbers differ."""

import contextlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collect import _audit_columns, read_sweep
from analysis.confirm import Arm, _audit_row, _plan_line, _summary, confirm
from analysis.report import write_report
from analysis.schema import AUDIT_COLUMNS, CONFIRM_SCHEMA
from analysis.tables import AUDIT_HEADING, decision_audit, rank_trials
from hand_results import BEST, SWEEP, retina_confirm, retina_results
from medvit.config import build_config
from medvit.metrics import best_class_offsets, best_threshold
from medvit.train import AUDIT_PREFIX, Trainer, load_data, train
from sweep_helpers import results, retina_spec, trial_dirs
from medsweep.cli import main

TINY = dict(dataset="retinamnist", model="medvit_28_tiny", subset=128, batch_size=32, epochs=3, device="cpu",
            select_metric="val_loss", select_window=1)
# What changes from run to run of the same training, and the audit itself.
NOT_CHOICES = ("epoch_time_s", "images_per_s", "time_", "timestamp", "date", "hostname", "node", "pid",
               "trial_id", "experiment_id", "logdir", "time_since_restore", "time_this_iter_s", AUDIT_PREFIX)


@pytest.fixture(scope="module")
def reversed_root(tmp_path_factory, real_root) -> Path:
    """RetinaMNIST with the test labels reversed (grade g -> 4 - g); train and val untouched."""
    root = tmp_path_factory.mktemp("reversed")
    with np.load(real_root / "retinamnist.npz") as npz:
        arrays = dict(npz)
    arrays["test_labels"] = 4 - arrays["test_labels"]
    np.savez(root / "retinamnist.npz", **arrays)
    return root


def choices(record: dict) -> dict:
    """One epoch's result without timings, identities and the audit: what choices are made of."""
    return {k: v for k, v in record.items() if not any(k.startswith(p) for p in NOT_CHOICES)}


def audit_values(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k.startswith(AUDIT_PREFIX)} for record in history]


def test_the_audit_is_off_by_default(real_root):
    config = build_config({**TINY, "epochs": 1, "data_root": str(real_root)})
    assert config.audit_test is False
    result = train(config)
    assert "audit" not in result
    assert not any(key.startswith("audit") for record in result["history"] for key in record)


def test_medsweep_train_records_the_audit_and_never_selects_on_it(real_root, reversed_root, tmp_path, capsys):
    runs = {}
    two_epochs = {**TINY, "epochs": 2}  # the two labellings still choose different epochs on test
    for name, root in (("real", real_root), ("reversed", reversed_root)):
        out = tmp_path / name
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in two_epochs.items()]
        assert main(["train", *flags, "--audit-test", f"--data-root={root}", "--out", str(out)]) == 0
        runs[name] = json.loads((out / "metrics.json").read_text())
    printed = capsys.readouterr()
    assert "audit (never selects): the epoch chosen on test_loss would be" in printed.out
    assert "MD5 mismatch" in printed.err  # the reversed file is not the official one
    real, rev = runs["real"], runs["reversed"]

    # Every epoch carries the test split's metrics under audit_test_*, never test_*.
    for record in real["history"]:
        assert {f"{AUDIT_PREFIX}{m}" for m in ("loss", "acc", "auc", "qwk", "mae")} <= set(record)
        assert not any(key.startswith("test_") for key in record)
    # The selection is the same whatever the test labels say; the audit is not.
    assert [choices(r) for r in real["history"]] == [choices(r) for r in rev["history"]]
    assert (real["selected_epoch"], real["select_score"], real["val"]) == (rev["selected_epoch"],
                                                                           rev["select_score"], rev["val"])
    assert audit_values(real["history"]) != audit_values(rev["history"])
    # The labels are adversarial: selecting on test would pick another epoch under each labelling.
    assert real["audit"]["test_selected_epoch"] != rev["audit"]["test_selected_epoch"]
    # the decision rule chosen on test: RetinaMNIST's class offsets, at the validation-chosen epoch
    rule = real["audit"]["decision_on_test"]
    assert len(rule["offsets"]) == 5 and rule["acc"] >= real["test"]["acc"]  # zero offsets are where it starts
    assert (f"the class offsets (to the log-probabilities) chosen on test would be "
            f"[{', '.join(f'{v:+.2f}' for v in rule['offsets'])}], test acc {rule['acc']:.4f}") in printed.out

    # The audit record: the validation-selected epoch's test metrics are the reported ones, and
    # the test-selected epoch is the one with the lowest test loss (the select metric's kind).
    audit = real["audit"]
    assert audit["val_selected_epoch"] == real["selected_epoch"]
    assert audit["val_selected"] == pytest.approx({k: real["test"][k] for k in audit["val_selected"]})
    losses = [r[f"{AUDIT_PREFIX}loss"] for r in real["history"]]
    assert audit["test_selected_on"] == "test_loss"
    assert audit["test_selected_epoch"] == 1 + int(np.argmin(losses))
    assert audit["test_selected"]["loss"] == min(losses)

    # Training with the audit off goes exactly the same way: evaluating test draws no randomness.
    off = train(build_config({**two_epochs, "data_root": str(real_root)}))
    assert [choices(r) for r in off["history"]] == [choices(r) for r in real["history"]]


def test_a_binary_run_audits_the_decision_threshold_chosen_on_test(real_root, tmp_path, capsys):
    config = build_config({**TINY, "dataset": "pneumoniamnist", "epochs": 1, "audit_test": True,
                           "data_root": str(real_root)})
    data = load_data(config)
    result = train(config, data)
    threshold, acc = best_threshold(data.labels["test"].numpy(), result["test_scores"])
    assert result["audit"]["decision_on_test"] == {"threshold": threshold, "acc": acc}
    assert acc >= result["test"]["acc"]  # 0.5 is one of the thresholds it chose from
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in config.model_dump().items()
             if k in {*TINY, "dataset", "epochs", "data_root"}]
    assert main(["train", *flags, "--audit-test", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["audit"]["decision_on_test"]["acc"] == pytest.approx(acc)
    assert f"the decision threshold chosen on test would be {threshold:.3f}, test acc {acc:.4f}" in capsys.readouterr().out


def test_a_multi_class_run_audits_the_class_offsets_chosen_on_test(real_root):
    config = build_config({**TINY, "epochs": 1, "audit_test": True, "data_root": str(real_root)})
    data = load_data(config)
    result = train(config, data)
    offsets, acc = best_class_offsets(data.labels["test"].numpy(), result["test_scores"])
    assert result["audit"]["decision_on_test"] == {"offsets": list(offsets), "acc": acc}
    assert acc >= result["test"]["acc"]


def test_the_audit_keeps_the_latest_epochs_test_probabilities(real_root):
    # what the protocol study chooses each epoch's decision rule on, without a second test pass
    config = build_config({**TINY, "epochs": 1, "audit_test": True, "data_root": str(real_root)})
    trainer = Trainer(config, load_data(config))
    assert trainer.audit_scores is None
    (epoch,) = trainer.epochs()
    metrics, scores = trainer.evaluate("test")  # the evaluated weights, as the audit saw them
    assert np.array_equal(trainer.audit_scores, scores) and epoch[f"{AUDIT_PREFIX}acc"] == metrics["acc"]


def test_test_selection_prefers_the_earliest_of_tied_epochs(retina_data):
    trainer = Trainer(build_config({**TINY, "audit_test": True, "select_metric": "val_acc"}),
                      retina_data.subset(128, seed=0))
    trainer.audit = [{f"{AUDIT_PREFIX}acc": value} for value in (0.4, 0.6, 0.6, float("nan"))]
    assert trainer.test_selection_audit()["test_selected_epoch"] == 2
    trainer.diverged = True  # the last epoch diverged: never a candidate, whatever it scores
    trainer.audit[-1] = {f"{AUDIT_PREFIX}acc": 0.9}
    assert trainer.test_selection_audit()["test_selected_epoch"] == 2


def test_the_audit_survives_a_checkpoint_restore(real_root, tmp_path):
    # Two epochs: the restored trainer runs the second, so its audit mixes both runs' records.
    config = build_config({**TINY, "epochs": 2, "audit_test": True, "data_root": str(real_root)})
    data = load_data(config)
    whole = train(config, data)
    first = Trainer(config, data)
    next(first.epochs())
    first.save(tmp_path)
    resumed = Trainer(config, data)
    resumed.restore(tmp_path)
    list(resumed.epochs())
    assert resumed.finish()["audit"] == whole["audit"]


# -- the sweep ------------------------------------------------------------------------------

EPOCHS = 3


def run_audited_sweep(storage: Path, data_root: Path) -> Path:
    """Optuna + ASHA, one trial at a time on val_loss (continuous: no ties), so two runs of
    the same sweep make the same choices unless something reads what differs between them."""
    from sweeps.launch import run_sweep, sweep_dir

    spec = retina_spec(storage, "retina-audit", num_samples=5, max_concurrent=1, metric="val_loss", mode="min",
                       train={"epochs": EPOCHS, "audit_test": True},
                       scheduler={"type": "asha", "max_t": EPOCHS, "grace_period": 1, "reduction_factor": 2})
    run_sweep(spec, data_root=str(data_root))
    return Path(sweep_dir(spec))


def sweep_record(directory: Path) -> dict:
    """Per trial, by creation order (the index in its folder's name; Ray's trial ids differ
    from run to run): its sampled config and per-epoch results; and the ranking."""
    trials, index_of = {}, {}
    for trial in trial_dirs(directory):
        history = results(trial)
        index = int(trial.name.split("_")[3])
        index_of[history[0]["trial_id"]] = index
        trials[index] = {"params": json.loads((trial / "params.json").read_text()), "history": history}
    ranked = rank_trials(read_sweep(directory).to_pandas())
    return {"trials": trials, "ranking": [index_of[t] for t in ranked["trial_id"]],
            "best_epochs": [int(e) for e in ranked["best_epoch"]],
            "best_config": best_config_text(directory)}


def best_config_text(directory: Path) -> str:
    """best_config.yaml with the winner's folder name in its comment reduced to the trial's index."""
    text = (directory / "best_config.yaml").read_text()
    return re.sub(r"train_medvit_[0-9a-f]+_(\d+)_[^)\s]*", r"trial \1", text)


@pytest.fixture(scope="module")
def audited_sweeps(real_root, reversed_root, tmp_path_factory) -> tuple[Path, Path]:
    """The same sweep with the real test labels and with the reversed ones, on one local Ray
    (each sweep's trial workers end with its run, so the second starts from no state of the first)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        real_dir = run_audited_sweep(tmp_path_factory.mktemp("real"), real_root)
        with pytest.warns(UserWarning, match="MD5 mismatch"):
            rev_dir = run_audited_sweep(tmp_path_factory.mktemp("reversed"), reversed_root)
    finally:
        ray.shutdown()
    return real_dir, rev_dir


@pytest.mark.slow
def test_no_sweep_choice_reads_the_audit(audited_sweeps):
    real, rev = (sweep_record(directory) for directory in audited_sweeps)

    assert sorted(real["trials"]) == sorted(rev["trials"]) == list(range(1, 6))
    for index, trial in real["trials"].items():
        other = rev["trials"][index]
        assert trial["params"] == other["params"], f"trial {index}: the searcher proposed another config"
        assert len(trial["history"]) == len(other["history"]), f"trial {index}: ASHA stopped it differently"
        assert [choices(r) for r in trial["history"]] == [choices(r) for r in other["history"]], index
        assert audit_values(trial["history"]) != audit_values(other["history"]), index
        assert all(audit_values(trial["history"])), f"trial {index} reported no audit"
    lengths = [len(t["history"]) for t in real["trials"].values()]
    assert min(lengths) < EPOCHS == max(lengths), "ASHA made no cut to compare"
    assert real["ranking"] == rev["ranking"] and real["best_epochs"] == rev["best_epochs"]
    assert real["best_config"] == rev["best_config"]
    assert "audit_test: true" in real["best_config"]

    # The reversal is adversarial: selecting on test would pick other epochs within the trials
    # (on test loss, the select metric's kind) and rank the trials in another order (on test
    # ACC, what papers choose on; the loss's scale moves with alpha). Ties to the earlier epoch.
    def test_picks(record):
        epochs = {index: min((r[f"{AUDIT_PREFIX}loss"], r["epoch"]) for r in trial["history"])[1]
                  for index, trial in record["trials"].items()}
        best_acc = {index: min((-r[f"{AUDIT_PREFIX}acc"], r["epoch"]) for r in trial["history"])
                    for index, trial in record["trials"].items()}
        return epochs, sorted(best_acc, key=lambda index: (best_acc[index], index))

    (real_epochs, real_order), (rev_epochs, rev_order) = test_picks(real), test_picks(rev)
    assert real_epochs != rev_epochs and real_order != rev_order


@pytest.mark.slow
def test_collect_takes_each_trials_audit_and_leaves_every_choice_alone(audited_sweeps):
    real, rev = (read_sweep(directory).to_pandas().set_index("trial_id") for directory in audited_sweeps)
    for trial in trial_dirs(audited_sweeps[0]):
        history = results(trial)
        row = real.loc[history[0]["trial_id"]]
        # the epoch of the lowest test loss (the sweep selects on val_loss), the earliest of ties
        loss, epoch = min((r[f"{AUDIT_PREFIX}loss"], r["epoch"]) for r in history)
        assert row["audit_epoch"] == epoch
        assert row["audit_test_acc"] == history[epoch - 1][f"{AUDIT_PREFIX}acc"]
        assert row["audit_test_qwk"] == history[epoch - 1][f"{AUDIT_PREFIX}qwk"]
    # the same choices from both labellings, other audit values
    chosen = ["best_value", "best_epoch", "stop_reason", "epochs_run"]
    assert real.sort_values("best_value")[chosen].values.tolist() == rev.sort_values("best_value")[chosen].values.tolist()
    assert sorted(real["audit_test_acc"]) != sorted(rev["audit_test_acc"])


def test_the_audit_columns_follow_the_trainers_rule():
    history = [{"epoch": 1, "audit_test_acc": 0.50, "audit_test_auc": 0.70},
               {"epoch": 2, "audit_test_acc": 0.60, "audit_test_auc": 0.71},
               {"epoch": 3, "audit_test_acc": 0.60, "audit_test_auc": 0.72},
               {"epoch": 4, "audit_test_acc": 0.90, "diverged": True}]
    assert _audit_columns(history, "val_acc", "max") == {
        "audit_epoch": 2, "audit_test_acc": 0.60, "audit_test_auc": 0.71, "audit_test_qwk": None, "audit_test_mae": None}
    assert _audit_columns(history, "val_auc", "max")["audit_epoch"] == 3
    assert _audit_columns([{"epoch": 1, "val_acc": 0.5}], "val_acc", "max") == {
        "audit_epoch": None, **dict.fromkeys(AUDIT_COLUMNS)}


def test_the_report_sets_the_sweeps_audit_beside_the_validation_chosen_winner(tmp_path):
    df = retina_results()
    df["audit_epoch"] = df["best_epoch"] + 1
    df["audit_test_acc"] = np.linspace(0.55, 0.60, len(df))
    df["audit_test_auc"] = 0.75
    _, md_path = write_report(df, tmp_path / "sweep-audit", figures=False)
    md = md_path.read_text()
    section = md[md.index("### Test-selection audit of the sweeps: trial and epoch chosen on test"):]
    row = next(r for r in section.splitlines() if r.startswith("| RetinaMNIST |"))
    winner = df[df["trial_id"] == BEST].iloc[0]
    oracle = df.loc[df["audit_test_acc"].idxmax()]
    assert row == (f"| RetinaMNIST | 28 px | ACC | {len(df)} | 0.547 | {winner['audit_test_acc']:.3f} (epoch "
                   f"{winner['audit_epoch']}; validation chose {winner['best_epoch']}) | {oracle['audit_test_acc']:.3f} "
                   f"(trial {oracle['trial_id']}, epoch {oracle['audit_epoch']}) | {oracle['audit_test_acc'] - 0.547:+.3f} |")
    assert "never read by the selection, ASHA, the searcher or the ranking" in section


@pytest.mark.slow
def test_confirm_with_the_audit_chooses_on_validation_only(audited_sweeps, real_root, reversed_root, tmp_path):
    # confirm retrains the winners with the audit: the same epochs chosen on validation and the
    # same validation numbers whatever the test labels, the audit beside them.
    confirmed = {}
    for name, root in (("real", real_root), ("reversed", reversed_root)):
        with pytest.warns(UserWarning, match="MD5 mismatch") if name == "reversed" else contextlib.nullcontext():
            confirmed[name] = confirm(audited_sweeps[0], seeds=1, epochs=2, out=tmp_path / f"{name}.parquet",
                                      data_root=root, device="cpu", audit_test=True, log=None)
    real_rows, rev_rows = (confirmed[name].rows for name in ("real", "reversed"))
    assert real_rows["audit_epoch"].notna().all() and real_rows["audit_test_acc"].notna().all()
    honest = ["label", "seed", "selected_epoch", *(f"val_{m}" for m in ("acc", "auc", "qwk", "mae"))]
    pd.testing.assert_frame_equal(real_rows[honest], rev_rows[honest])
    assert not real_rows[list(AUDIT_COLUMNS)].equals(rev_rows[list(AUDIT_COLUMNS)])
    assert any(", audit over 1 seeds" in line for line in confirmed["real"].summary)


# -- confirm's summary and the report, on hand-built rows -------------------------------------

def audited_confirm() -> pd.DataFrame:
    """The shipped example's confirm table with the audit on: choosing the epoch on test adds
    0.03-0.05 ACC to every seed."""
    conf = retina_confirm()
    return conf.assign(audit_epoch=[9, 14, 12, 7, 16, 11], selected_epoch=[8, 13, 12, 6, 15, 11],
                       audit_test_acc=conf["test_acc"] + [0.030, 0.040, 0.050, 0.035, 0.045, 0.040],
                       audit_test_auc=conf["test_auc"] + 0.01, audit_test_qwk=conf["test_qwk"] + 0.05,
                       audit_test_mae=conf["test_mae"] - 0.05)


def test_confirm_summary_puts_the_test_chosen_epoch_beside_the_validation_chosen_one():
    rows = audited_confirm()
    arms = [Arm("best", BEST, {"alpha": 0.0}, "n", "ce"), Arm("best alpha>0 (alpha=0.1)", "t", {"alpha": 0.1}, "n", "ordinal")]
    lines = _summary(rows, arms, "head")
    (audit,) = [line for line in lines if line.startswith("best, audit over 3 seeds")]
    best = rows[rows["label"] == "best"]
    assert (f"ACC {best['test_acc'].mean():.4f} ± {best['test_acc'].std():.4f} on validation, "
            f"{best['audit_test_acc'].mean():.4f} ± {best['audit_test_acc'].std():.4f} on test") in audit
    assert "epochs 8, 13, 12 on validation, 9, 14, 12 on test" in audit
    assert "the honest number" in audit and "what selecting on test would report" in audit
    # without the audit (older tables, audit off) the summary has no audit line
    plain = _summary(retina_confirm().assign(selected_epoch=8), arms, "head")
    assert not any("audit" in line for line in plain)


def test_confirm_rows_take_the_audit_record():
    audit = {"test_selected_on": "test_acc", "val_selected_epoch": 3, "val_selected": {"acc": 0.5},
             "test_selected_epoch": 5, "test_selected": {"loss": 1.0, "acc": 0.6, "auc": 0.7, "qwk": 0.4, "mae": 0.8}}
    assert _audit_row(audit) == {"audit_epoch": 5, "audit_test_acc": 0.6, "audit_test_auc": 0.7,
                                 "audit_test_qwk": 0.4, "audit_test_mae": 0.8}
    assert _audit_row(None) == {"audit_epoch": None, **dict.fromkeys(AUDIT_COLUMNS)}
    assert set(_audit_row(None)) <= set(CONFIRM_SCHEMA.names)


def test_confirms_plan_line_says_when_test_is_scored_every_epoch():
    arms = [Arm("best", BEST, {"dataset": "retinamnist"}, "n", "ce")]
    plain = _plan_line("s", arms, {"best": {"epochs": 20}}, [1000, 1001])
    audited = _plan_line("s", arms, {"best": {"epochs": 20, "audit_test": True}}, [1000, 1001])
    assert plain.endswith("test split evaluated once per run")
    assert "evaluated once" not in audited and "every epoch for the audit" in audited


def test_report_shows_both_epochs_under_an_audit_heading(tmp_path):
    conf = audited_confirm()
    html_path, md_path = write_report(retina_results(), tmp_path / "audited", confirm_parquet=conf, figures=False)
    md = md_path.read_text()
    # In the HTML, Table 2's audit columns stand under their own heading, beside the honest ones.
    assert f'<th colspan="2">{AUDIT_HEADING}</th>' in html_path.read_text()
    assert '<th colspan="4">Ours, epoch chosen on validation (the honest numbers)</th>' in html_path.read_text()
    best, positive = conf[conf["label"] == "best"], conf[conf["label"] != "best"]

    def pm(values):
        return f"{values.mean():.3f} ± {values.std():.3f}"

    # Table 1: the honest row as before, the audit row under its own label, never bold.
    table1 = md[md.index("### Table 1"):md.index("### Table 2")]  # RetinaMNIST is in its first block
    honest = next(r for r in table1.splitlines() if r.startswith("| medsweep MedViT (ours, 28 px) |"))
    audit = next(r for r in table1.splitlines() if r.startswith(f"| medsweep MedViT (ours, 28 px), {AUDIT_HEADING} |"))
    assert pm(best["test_acc"]) in honest and pm(best["audit_test_acc"]) in audit
    assert pm(best["audit_test_auc"]) in audit and "**" not in audit
    assert "what a paper that selects its epoch (or checkpoint) on test would print" in md
    # Table 2: audit columns beside the validation-selected ones, in each confirmed alpha's row.
    table2 = md[md.index("### Table 2"):]
    header = next(r for r in table2.splitlines() if r.startswith("| Input | α |"))
    assert f"Ours ACC ({AUDIT_HEADING})" in header and f"Ours QWK ({AUDIT_HEADING})" in header
    cells = {r.split(" | ")[1]: r.split(" | ")[1:] for r in table2.splitlines() if r.startswith("| 28 px | 0.")}
    assert cells["0.0"][2].strip("*") == pm(best["test_acc"])
    assert cells["0.0"][6] == pm(best["audit_test_acc"]) and cells["0.1"][6] == pm(positive["audit_test_acc"])
    assert cells["0.1"][7] == pm(positive["audit_test_qwk"])
    # Its own section: per configuration, both epochs and what choosing on test adds.
    section = md[md.index(f"### {AUDIT_HEADING} beside the epoch chosen on validation"):]
    row = next(r for r in section.splitlines() if r.startswith(f"| RetinaMNIST | {SWEEP} | best |"))
    added = best["audit_test_acc"] - best["test_acc"]
    assert f"| {pm(best['test_acc'])} | {pm(best['audit_test_acc'])} | {added.mean():+.3f} ± {added.std():.3f} |" in row
    assert row.endswith("| 8, 13, 12 / 9, 14, 12 |")


def pneumonia_audited_confirm() -> pd.DataFrame:
    """Three audited re-runs on a binary dataset with their test probabilities, whose scores
    put one of three healthy images above 0.5 and two of five pneumonia images below it."""
    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    scores = [[0.1, 0.2, 0.55, 0.3, 0.4, 0.6, 0.7, 0.8], [0.2, 0.1, 0.6, 0.45, 0.35, 0.9, 0.7, 0.8],
              [0.05, 0.3, 0.25, 0.2, 0.4, 0.6, 0.7, 0.95]]
    return pd.DataFrame({
        "dataset": "pneumoniamnist", "sweep": "pneu", "label": "best", "seed": [1000, 1001, 1002],
        "test_acc": [0.750, 0.625, 0.750], "test_auc": 0.9, "selected_epoch": [4, 5, 6], "audit_epoch": [5, 5, 6],
        "audit_test_acc": [0.8, 0.75, 0.75], "audit_test_auc": 0.91,
        **dict.fromkeys(["test_qwk", "test_mae", "audit_test_qwk", "audit_test_mae"], float("nan")),  # ordinal only
        "test_scores": [[[1 - p, p] for p in run] for run in scores], "test_labels": [[[y] for y in labels]] * 3,
    })


def retina_audited_with_scores() -> pd.DataFrame:
    """audited_confirm() with each run's test probabilities over 5 grades of 12 images."""
    rng = np.random.default_rng(0)
    conf = audited_confirm()
    return conf.assign(test_scores=[rng.dirichlet(np.ones(5), 12).tolist() for _ in range(len(conf))],
                       test_labels=[[[int(g)] for g in rng.integers(0, 5, 12)] for _ in range(len(conf))])


def rule_on_test(rows: pd.DataFrame, choose) -> list[float]:
    return [choose(np.array(y), np.array(p))[1] for p, y in zip(rows["test_scores"], rows["test_labels"])]


def test_the_audit_chooses_the_decision_rule_on_test_too(tmp_path):
    pneumonia = pneumonia_audited_confirm()
    on_test = rule_on_test(pneumonia, best_threshold)
    assert all(acc > honest for acc, honest in zip(on_test, pneumonia["test_acc"]))
    expected = f"{np.mean(on_test):.3f} ± {np.std(on_test, ddof=1):.3f}"
    lines = _summary(pneumonia, [Arm("best", "t", {}, "n", "plain")], "head")
    (audit,) = [line for line in lines if line.startswith("best, audit over 3 seeds")]
    assert (f"ACC {np.mean(on_test):.4f} ± {np.std(on_test, ddof=1):.4f} with the decision rule (threshold or "
            "class offsets) chosen on test") in audit
    # the report: a column for it, filled where the runs kept their test probabilities, and the note
    retina = retina_audited_with_scores()
    best = retina[retina["label"] == "best"]
    retina_on_test = rule_on_test(best, best_class_offsets)
    conf = pd.concat([retina, pneumonia], ignore_index=True)
    _, md_path = write_report(retina_results(), tmp_path / "both", confirm_parquet=conf, figures=False)
    section = md_path.read_text()[md_path.read_text().index(f"### {AUDIT_HEADING} beside the epoch chosen on validation"):]
    assert "| ACC, decision rule chosen on test |" in section.splitlines()[2]
    assert next(r for r in section.splitlines() if r.startswith("| PneumoniaMNIST | pneu | best |")).endswith(f"| {expected} |")
    assert next(r for r in section.splitlines() if r.startswith(f"| RetinaMNIST | {SWEEP} | best |")).endswith(
        f"| {np.mean(retina_on_test):.3f} ± {np.std(retina_on_test, ddof=1):.3f} |")
    assert "what a paper that tunes its decision rule on the test split would print" in section
    # a multi-label task has no one decision rule: its runs give the column nothing
    chest = pneumonia.assign(dataset="chestmnist", test_scores=[[[0.2] * 14] * 8] * 3,
                             test_labels=[[[0] * 14] * 8] * 3)
    assert decision_audit(chest) == []
    # runs without their test probabilities have no such column
    _, md_path = write_report(retina_results(), tmp_path / "no-scores", confirm_parquet=audited_confirm(), figures=False)
    assert "decision rule" not in md_path.read_text()


def test_report_without_the_audit_has_no_audit_rows(tmp_path):
    _, md_path = write_report(retina_results(), tmp_path / "plain", confirm_parquet=retina_confirm(), figures=False)
    md = md_path.read_text()
    assert AUDIT_HEADING not in md and "Test-selection audit" not in md

