"""The test-selection audit (`audit_test`): every epoch's test metrics are recorded, and no
choice reads them. The adversarial proof: the same runs with the test labels reversed (grade
g -> 4 - g, so what scores best on one labelling scores badly on the other) must make every
choice (selected epoch, ASHA's stops, the searcher's proposals, the ranking,
best_config.yaml) exactly as with the real labels, while the audit's numbers differ."""

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.collect import read_sweep
from analysis.tables import rank_trials
from medvit.config import build_config
from medvit.train import AUDIT_PREFIX, Trainer, load_data, train
from sweep_helpers import results, retina_spec, trial_dirs
from sweeps.cli import main

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
    for name, root in (("real", real_root), ("reversed", reversed_root)):
        out = tmp_path / name
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
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
    off = train(build_config({**TINY, "data_root": str(real_root)}))
    assert [choices(r) for r in off["history"]] == [choices(r) for r in real["history"]]


def test_test_selection_prefers_the_earliest_of_tied_epochs(retina_data):
    trainer = Trainer(build_config({**TINY, "audit_test": True, "select_metric": "val_acc"}),
                      retina_data.subset(128, seed=0))
    trainer.audit = [{f"{AUDIT_PREFIX}acc": value} for value in (0.4, 0.6, 0.6, float("nan"))]
    assert trainer.test_selection_audit()["test_selected_epoch"] == 2
    trainer.diverged = True  # the last epoch diverged: never a candidate, whatever it scores
    trainer.audit[-1] = {f"{AUDIT_PREFIX}acc": 0.9}
    assert trainer.test_selection_audit()["test_selected_epoch"] == 2


def test_the_audit_survives_a_checkpoint_restore(real_root, tmp_path):
    config = build_config({**TINY, "audit_test": True, "data_root": str(real_root)})
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
    import ray

    from sweeps.launch import run_sweep, sweep_dir

    spec = retina_spec(storage, "retina-audit", num_samples=5, max_concurrent=1, metric="val_loss", mode="min",
                       train={"epochs": EPOCHS, "audit_test": True},
                       scheduler={"type": "asha", "max_t": EPOCHS, "grace_period": 1, "reduction_factor": 2})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(spec, data_root=str(data_root))
    finally:
        ray.shutdown()
    return Path(sweep_dir(spec))


def trial_index(trial_id: str) -> int:
    return int(trial_id.rsplit("_", 1)[1])


def sweep_record(directory: Path) -> dict:
    """Per trial (by creation order): sampled config, per-epoch results; and the ranking."""
    trials = {}
    for trial in trial_dirs(directory):
        history = results(trial)
        trials[trial_index(history[0]["trial_id"])] = {
            "params": json.loads((trial / "params.json").read_text()),
            "history": history,
        }
    ranked = rank_trials(read_sweep(directory).to_pandas())
    return {"trials": trials, "ranking": [trial_index(t) for t in ranked["trial_id"]],
            "best_epochs": [int(e) for e in ranked["best_epoch"]],
            "best_config": (directory / "best_config.yaml").read_text()}


@pytest.mark.slow
def test_no_sweep_choice_reads_the_audit(real_root, reversed_root, tmp_path):
    real = sweep_record(run_audited_sweep(tmp_path / "real", real_root))
    with pytest.warns(UserWarning, match="MD5 mismatch"):
        rev = sweep_record(run_audited_sweep(tmp_path / "reversed", reversed_root))

    assert sorted(real["trials"]) == sorted(rev["trials"]) == list(range(5))
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

    # The reversal is adversarial: the trial and epoch that selecting on test would pick differ.
    def test_pick(record):
        return min((r[f"{AUDIT_PREFIX}loss"], index, r["epoch"])
                   for index, trial in record["trials"].items() for r in trial["history"])[1:]

    assert test_pick(real) != test_pick(rev)
