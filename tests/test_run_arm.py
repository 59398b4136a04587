"""studies/recipe/run_arm.py: its small-data option, the validation metrics of the trained (not EMA)
weights (its training split of `--subset N` is `MedMNISTData.with_train_subset`, tested in test_data),
and its arm (a) with AugMix being the paper specs' recipe."""

from __future__ import annotations

import numpy as np
import pytest

from medvit.config import build_config
from medvit.metrics import best_class_offsets
from medvit.train import Trainer, load_data
from studies.recipe import run_arm
from studies.recipe.records import read_records
from sweeps.spec import load_spec


def test_raw_val_metrics_are_the_trained_weights_and_leave_the_ema_in_place(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 1,
                           "batch_size": 16, "ema": 0.9})
    trainer = Trainer(config, retina_data.subset(64, seed=0))
    trainer.train_epoch()
    ema = trainer.ema
    raw = run_arm.raw_val_metrics(trainer)
    assert trainer.ema is ema
    ema_val, _ = trainer.evaluate("val")
    assert set(raw) == {f"raw_val_{k}" for k in ema_val}
    assert raw["raw_val_loss"] != ema_val["loss"]
    trainer.ema = None
    assert trainer.evaluate("val")[0]["loss"] == raw["raw_val_loss"]


def test_every_epoch_records_the_acc_of_the_decision_rule_chosen_on_test(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 2,
                           "batch_size": 16, "ema": 0.0, "select_window": 1})
    data = retina_data.subset(48, seed=0)
    record = run_arm.record_run(config, data, "rule")
    assert all(e["test_rule_acc"] >= e["test_acc"] for e in record["epochs"])
    # at the last epoch (selected or not) the scores are the model's as it ends: the same rule
    last = Trainer(config, data)
    for _ in last.epochs():
        pass
    _, scores = last.evaluate("test")
    assert record["epochs"][-1]["test_rule_acc"] == best_class_offsets(data.labels["test"].numpy(), scores)[1]
    assert np.isclose(record["epochs"][-1]["test_acc"], last.evaluate("test")[0]["acc"])


def test_a_written_record_keeps_five_digits_of_every_number_and_its_structure(tmp_path):
    # Full-precision probabilities doubled the shipped records and pushed the tree past what a
    # GPU call can carry beside Ray's wheels (tests/test_device_carry.py caught it). The config is
    # the input, kept exact: the protocol study refuses a kept record whose lr differs from its own.
    record = {"arm": "a", "seed": 3, "result": {"test": {"acc": 0.5249999999999999, "n": 400}},
              "scores": {"test_scores": [[0.123456789, 0.876543211], [1.0, 0.0]]},
              "epochs": [{"epoch": 1, "lr": 1.23456789e-7, "diverged": False, "test_qwk": None}],
              "config": {"lr": 0.00123456789, "weight_decay": 0.05}, "wall_s": 183.456789}
    path = tmp_path / "r.jsonl.gz"
    run_arm.append_record(str(path), record)
    (read,) = read_records([path])
    assert read == {"arm": "a", "seed": 3, "result": {"test": {"acc": 0.525, "n": 400}},
                    "scores": {"test_scores": [[0.12346, 0.87654], [1.0, 0.0]]},
                    "epochs": [{"epoch": 1, "lr": 1.2346e-7, "diverged": False, "test_qwk": None}],
                    "config": {"lr": 0.00123456789, "weight_decay": 0.05}, "wall_s": 183.46}


def test_small_data_table_reads_when_validation_leaves_the_majority_and_pairs_seeds():
    from studies.recipe import small_data

    epochs = [{"epoch": 1, "val_acc": 0.75, "raw_val_acc": 0.75}, {"epoch": 2, "val_acc": 0.75, "raw_val_acc": 0.9},
              {"epoch": 3, "val_acc": 0.8, "raw_val_acc": 0.9}]
    assert small_data.leaves_majority(epochs, "val_acc", 0.75) == "3"
    assert small_data.leaves_majority(epochs, "raw_val_acc", 0.75) == "2"
    assert small_data.leaves_majority(epochs[:2], "val_acc", 0.75) == "never"
    base = [{"seed": s, "result": {"test": {"acc": a}}} for s, a in ((0, 0.8), (1, 0.9))]
    arm = [{"seed": s, "result": {"test": {"acc": a}}} for s, a in ((1, 0.95), (0, 0.9), (7, 0.1))]
    assert small_data.paired(arm, base, "acc") == "0.075 +- 0.035"
    assert small_data.paired(base, base, "acc") == "-"


@pytest.mark.parametrize("dataset", ["retinamnist", "pneumoniamnist"])
def test_arm_a_with_augmix_trains_the_paper_specs_recipe(dataset):
    # reports/recipe runs "the paper's recipe at 28 px" as `--arm a --set augment=augmix`: the
    # same config as the paper/<dataset> spec's train section but for the model and its input.
    model_and_input = {"model", "resize", "resize_mode", "img_size", "audit_test", "seed"}
    paper = {k: v for k, v in load_spec(f"paper/{dataset}").train.model_dump(exclude_unset=True).items()
             if k not in model_and_input}
    arm = build_config({"dataset": dataset, **run_arm.ARMS["a"], "augment": "augmix"})
    spec = build_config({"dataset": dataset, **paper})
    assert arm == spec


def test_predictions_only_keeps_each_images_class_and_the_summary_reads_the_record(tmp_path, monkeypatch, capsys,
                                                                                   real_root):
    # --predictions-only keeps a 20-seed study within the tree a device call carries, and what
    # resampling the test images needs (studies/recipe/alpha_grid.py); summarize.py must still
    # read its records (no seed ensemble, no rule at the selected epoch).
    from studies.recipe import summarize

    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    out = tmp_path / "r.jsonl.gz"
    argv = ["run_arm.py", "--arm", "b", "--seeds", "0", "1", "--train-images", "32", "--set", "epochs=1",
            "--predictions-only", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    run_arm.main()
    records = list(read_records([out]))
    assert [r["seed"] for r in records] == [0, 1]
    data = load_data(build_config({"dataset": "retinamnist"}))
    for r in records:
        assert "scores" not in r and "test_acc" in r["epochs"][0]
        assert r["train_images"] == 32  # the subset is no config field: the record names it
        for split in ("val", "test"):
            right = np.asarray(r["predictions"][split]) == data.labels[split].numpy()
            assert np.isclose(right.mean(), r["result"][split]["acc"], atol=1e-5)
    summarize.main([str(out)])
    assert "| retinamnist b | 2 |" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", [*argv[:-2], "--dataset", "chestmnist", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        run_arm.main()
    assert exit_info.value.code == 2
    assert "--predictions-only: chestmnist is multi-label" in capsys.readouterr().err
