"""studies/recipe/rung_readout.py: both BatchNorm readouts from one run, the configs it draws,
the rungs it reads, and its tables on real records."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from medvit.config import build_config
from studies.recipe import rung_readout
from studies.recipe.run_arm import recomputed_bn_metrics, record_run
from sweeps.spec import parse_spec

SPEC = """
name: rung-test
dataset: retinamnist
train: {model: medvit_28_tiny, epochs: 3, batch_size: 16, subset: 32}
search:
  lr: {loguniform: [3.0e-4, 3.0e-3]}
  alpha: {choice: [0.0, 0.2]}
  margin: {loguniform: [0.02, 0.3], when: "alpha > 0"}
searcher: {type: optuna, seed: 0}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
metric: val_acc
"""


def test_the_recomputed_readout_leaves_training_and_the_running_statistics_alone(retina_data):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 2,
                           "batch_size": 16})
    data = retina_data.subset(48, seed=0)
    plain = record_run(config, data, "plain")
    both = record_run(config, data, "both", bn_readout=True)
    for key in ("train_loss", "val_loss", "test_loss", "selected_score"):
        assert [e[key] for e in plain["epochs"]] == [e[key] for e in both["epochs"]]
    assert plain["result"]["test"] == both["result"]["test"]
    assert plain["environment"]["torch"] == torch.__version__ and plain["environment"]["threads"] >= 1
    assert all(e["bn_val_loss"] != e["val_loss"] and "bn_test_acc" in e for e in both["epochs"])


def test_recomputed_metrics_put_every_buffer_back(retina_data):
    from medvit.train import Trainer

    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "device": "cpu", "epochs": 1,
                           "batch_size": 16})
    trainer = Trainer(config, retina_data.subset(32, seed=0))
    next(trainer.epochs())
    before = {name: buffer.clone() for name, buffer in trainer.eval_model.named_buffers()}
    readout = recomputed_bn_metrics(trainer, ("val",))
    assert set(readout) == {f"bn_val_{k}" for k in trainer.evaluate("val")[0]}
    for name, buffer in trainer.eval_model.named_buffers():
        torch.testing.assert_close(buffer, before[name])


def test_draws_are_seeded_and_keep_the_specs_conditions():
    spec = parse_spec(SPEC)
    first, again, other = (rung_readout.draw_configs(spec, 8, seed) for seed in (0, 0, 1))
    assert first == again and first != other
    assert all(config["margin"] == 0.1 for config in first if config["alpha"] == 0.0)  # `when` false: fixed value
    assert len({config["lr"] for config in first}) == 8
    assert all(config["epochs"] == 3 and config["subset"] == 32 for config in first)


def test_rungs_are_the_ashas_comparison_epochs():
    spec = parse_spec(SPEC.replace("epochs: 3", "epochs: 20").replace("grace_period: 1, reduction_factor: 2",
                                                                        "grace_period: 4, reduction_factor: 2"))
    assert rung_readout.rungs(spec) == [4, 8, 16]


def test_run_and_table_on_real_records(tmp_path, monkeypatch, real_root):
    monkeypatch.setenv("MEDMNIST_ROOT", str(real_root))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("subset: 32}", "subset: 32, bn_recompute: true}"))
    out = tmp_path / "records.jsonl"
    for worker in ("0/2", "1/2"):
        rung_readout.main(["run", "--spec", str(spec), "--configs", "3", "--worker", worker, "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["config_index"] for r in records) == [0, 1, 2]
    # a spec that recomputes still gets the running-statistics readout as the trial's own
    assert not any(r["config"]["bn_recompute"] for r in records)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rung_readout.main(["table", "--spec", str(spec), "--orders", "4", str(out)])
    rows = [line.split(" | ") for line in printed.getvalue().splitlines() if line.startswith("| running")
            or line.startswith("| recomputed")]
    assert [(row[0], row[1]) for row in rows[:4]] == [("| running statistics", "1"), ("| running statistics", "2"),
                                                    ("| recomputed (bn_recompute)", "1"),
                                                    ("| recomputed (bn_recompute)", "2")]
    assert all(row[2].endswith("of 3") for row in rows[:4])
    assert [row[0] for row in rows[4:]] == ["| running statistics", "| recomputed (bn_recompute)"]
    assert all(row[3].endswith("of 4") for row in rows[4:])
    # another training seed of configs 0 and 2: the same configs, and a held-out section over them
    rung_readout.main(["run", "--spec", str(spec), "--configs", "3", "--worker", "0/2", "--trial-seed", "1",
                       "--out", str(out)])
    again = [json.loads(line) for line in out.read_text().splitlines()][3:]
    assert [(r["config_index"], r["seed"]) for r in again] == [(0, 1), (2, 1)]
    assert [{**r["config"], "seed": 0} for r in again] == [r["config"] for r in records if r["config_index"] != 1]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rung_readout.main(["table", "--spec", str(spec), "--orders", "4", str(out)])
    assert "Over 2 training seeds (0, 1) of the 2 configs that have them all" in printed.getvalue()


def test_table_refuses_a_spec_without_asha_on_the_selection_score(tmp_path):
    spec = tmp_path / "fifo.yaml"
    spec.write_text(SPEC.replace("{type: asha, grace_period: 1, reduction_factor: 2}", "{type: fifo}"))
    with pytest.raises(SystemExit, match="--spec: rung-test has no ASHA on the selection score"):
        rung_readout.main(["table", "--spec", str(spec), str(tmp_path / "unread.jsonl")])


def _record(index: int, seed: int, val: list[float], test: list[float], bn_val: list[float]) -> dict:
    """A hand-made study record: per-epoch validation and test accuracy under both readouts."""
    epochs = [{"val_acc": v, "test_acc": t, "bn_val_acc": b, "bn_test_acc": t + 0.1}
              for v, t, b in zip(val, test, bn_val)]
    return {"arm": "rung-test", "seed": seed, "config_index": index, "config": {"select_window": 1}, "epochs": epochs}


def test_held_out_seeds_score_each_readouts_choice_on_the_other_seeds(tmp_path, capsys):
    # Config 0 leads validation under the running readout, config 1 under the recomputed one; on
    # test, config 1 is better in both seeds: choosing on one seed is scored by the other's test.
    test = {0: [0.40, 0.42, 0.44], 1: [0.50, 0.55, 0.60], 2: [0.30, 0.30, 0.30]}
    records = [_record(i, seed, val=[0.6 - 0.1 * i + 0.01 * seed] * 3, test=[t + 0.01 * seed for t in test[i]],
                       bn_val=[0.5 + 0.1 * (i == 1) + 0.01 * seed] * 3) for seed in (0, 1) for i in range(3)]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rung_readout.held_out_table(parse_spec(SPEC), {s: {r["config_index"]: r for r in records if r["seed"] == s}
                                                   for s in (0, 1)}, orders=5)
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0]: line.split(" | ") for line in out.splitlines() if line.startswith("| r")}
    # running: config 0 chosen (flat validation: its first epoch), scored by the other seed's test at
    # that epoch (0.40 + 0.01 s); recomputed: config 1, scored by its first epoch's bn test (0.60 + 0.01 s)
    assert rows["| running statistics"][1:3] == ["0.405 +- 0.007", "0.405 +- 0.007"]
    assert rows["| recomputed (bn_recompute)"][1:3] == ["0.605 +- 0.007", "0.605 +- 0.007"]
    assert rows["| running statistics"][3] == "0.505 |" and rows["| recomputed (bn_recompute)"][3] == "0.605 |"
    assert "recomputed minus running readout, paired by choosing seed: +0.200 +- 0.000 (+0.200, +0.200)" in out
