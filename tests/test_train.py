"""The training loop and `medsweep train`, on the real RetinaMNIST file."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from medvit.checkpoint import SELECTION_FILE, Selection, read_selection, write_selection
from medvit.config import ConfigError, TrainConfig, build_config
from medvit.data import load_dataset
from medvit.augment import augment_batch, augment_config
from medvit.train import MEMORY_FORMAT, Trainer, batch_inputs, load_checkpoint_model, normalise, train
from medsweep.cli import main

TINY = dict(dataset="retinamnist", model="medvit_28_tiny", epochs=2, batch_size=64, subset=192, device="cpu")


def run_cli(tmp_path, name, *extra):
    out = tmp_path / name
    code = main([
        "train", "--dataset", "retinamnist", "--model", "medvit_28_tiny", "--alpha", "0.2",
        "--epochs", "2", "--batch-size", "64", "--subset", "256", "--seed", "3", "--out", str(out), *extra,
    ])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def test_cli_two_epochs_on_real_retina_writes_complete_metrics(real_root, tmp_path, capsys):
    metrics = run_cli(tmp_path, "a", "--data-root", str(real_root))
    printed = capsys.readouterr().out
    assert printed.count("epoch ") >= 2 and "train_loss" in printed
    for split in ("val", "test"):
        assert set(metrics[split]) >= {"acc", "auc", "qwk", "mae"}
        assert 0.0 <= metrics[split]["acc"] <= 1.0
        assert 0.0 <= metrics[split]["mae"] <= 4.0
    assert metrics["selected_epoch"] in (1, 2)
    assert metrics["config"]["alpha"] == 0.2 and metrics["config"]["model"] == "medvit_28_tiny"
    assert metrics["wall_time_s"] > 0
    assert [m["epoch"] for m in metrics["history"]] == [1, 2]
    # Where it ran: the same seed elsewhere ends elsewhere (medvit.train.environment).
    environment = dict(metrics["environment"])
    assert environment.pop("device")  # the CPU's model name, whatever this machine's is
    assert environment == {"torch": torch.__version__, "python": ".".join(map(str, sys.version_info[:3])),
                           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    # The selected epoch is the best validation epoch, and val reports that epoch's numbers.
    history = {m["epoch"]: m for m in metrics["history"]}
    assert metrics["val"]["acc"] == history[metrics["selected_epoch"]]["val_acc"]
    assert metrics["val"]["acc"] == max(m["val_acc"] for m in metrics["history"])

    # Same seed, same numbers.
    again = run_cli(tmp_path, "b", "--data-root", str(real_root))
    assert again["val"] == metrics["val"] and again["test"] == metrics["test"]
    assert [m["train_loss"] for m in again["history"]] == [m["train_loss"] for m in metrics["history"]]


def test_cli_flip_tta_is_printed_and_written_beside_the_plain_numbers(real_root, tmp_path, capsys):
    metrics = run_cli(tmp_path, "tta", "--data-root", str(real_root), "--tta", "flip")
    printed = capsys.readouterr().out
    assert "with flip test-time augmentation; test: acc " in printed
    assert set(metrics["test_tta"]) >= {"acc", "auc", "qwk", "mae", "qwk_decoded"}
    assert set(metrics["val_tta"]) >= {"acc", "auc"}
    assert metrics["config"]["tta"] == "flip"


def test_a_run_whose_out_another_run_wrote_meanwhile_keeps_both(real_root, tmp_path, capsys, monkeypatch):
    """Two `train` into one --out both pass the check at the start; the second to end used to
    replace the first's metrics.json without a word."""
    import medvit.train

    out, other = tmp_path / "run", '{"the other run": true}'
    trained = medvit.train.train

    def train_while_another_run_ends(*args, **kwargs):
        result = trained(*args, **kwargs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(other)
        return result

    monkeypatch.setattr(medvit.train, "train", train_while_another_run_ends)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["train", "--dataset", "retinamnist", "--model", "medvit_28_tiny", "--epochs", "1", "--subset", "64",
                 "--data-root", str(real_root), "--out", str(out)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1, error
    assert error[0].startswith(f"medsweep: error: train: --out: {out}/metrics.json was written by another run "
                               "while this one trained; this run is kept in "), error
    kept = Path(error[0].split("is kept in ")[1].split(":")[0])
    assert kept.parent == tmp_path and len(json.loads(kept.read_text())["history"]) == 1
    assert (out / "metrics.json").read_text() == other


def test_checkpoint_resume_continues_exactly(real_root):
    data = load_dataset("retinamnist", root=real_root).subset(192, seed=0)
    config = build_config({**TINY, "epochs": 3, "alpha": 0.3})
    straight = Trainer(config, data)
    straight_history = list(straight.epochs())

    first = Trainer(config, data)
    interrupted = [next(first.epochs())]
    state = first.state_dict()
    second = Trainer(config, data)
    second.load_state_dict(state)
    interrupted += list(second.epochs())

    keys = ("epoch", "train_loss", "val_loss", "val_acc", "lr")
    assert [{k: m[k] for k in keys} for m in interrupted] == [{k: m[k] for k in keys} for m in straight_history]
    assert second.finish()["test"] == straight.finish()["test"]


def test_checkpoint_model_reproduces_selected_epoch(real_root, tmp_path):
    data = load_dataset("retinamnist", root=real_root).subset(192, seed=0)
    trainer = Trainer(build_config(TINY), data)
    list(trainer.epochs())
    trainer.save(tmp_path)
    result = trainer.finish()
    model, config = load_checkpoint_model(tmp_path)
    assert config == trainer.config
    images = data.images["test"].float().div(127.5).sub(1.0)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    accuracy = (predicted == data.labels["test"]).float().mean().item()
    assert accuracy == pytest.approx(result["test"]["acc"])
    # beside state.pt, what an ensemble reads without it: the same scores, divergence and config
    selection = read_selection(tmp_path)
    np.testing.assert_array_equal(selection.val_scores, result["val_scores"])
    assert selection.diverged is False and TrainConfig(**selection.config) == trainer.config


def test_a_selection_without_a_selected_epoch_reads_back_as_none(tmp_path):
    # a run that diverged in its first epoch, or was saved before one: no scores, never a candidate
    write_selection(tmp_path, Selection(None, True, {"dataset": "retinamnist"}))
    assert read_selection(tmp_path) == Selection(None, True, {"dataset": "retinamnist"})


def test_a_selection_file_that_cannot_be_read_is_one_line(tmp_path):
    assert read_selection(tmp_path) is None  # a checkpoint written before the file
    (tmp_path / SELECTION_FILE).write_bytes(b"cut off")
    with pytest.raises(ValueError, match=rf"^{tmp_path}/{SELECTION_FILE}: not a readable medsweep selection file"):
        read_selection(tmp_path)


def test_train_learns_synthetic_binary_task(synthetic_root):
    # no warm-up: four epochs are too few to spend two of them warming up
    config = build_config(dict(dataset="breastmnist", model="medvit_28_tiny", epochs=4, batch_size=16,
                               lr=3e-3, augment="off", warmup_epochs=0, data_root=str(synthetic_root), device="cpu"))
    result = train(config)
    assert result["val"]["auc"] > 0.8
    assert set(result["test"]) == {"loss", "acc", "auc"}


def test_multilabel_chest_trains(synthetic_root):
    config = build_config(dict(dataset="chestmnist", model="medvit_28_tiny", epochs=1, batch_size=32,
                               data_root=str(synthetic_root), device="cpu", select_metric="val_auc"))
    result = train(config)
    assert 0.0 <= result["test"]["acc"] <= 1.0


@pytest.mark.parametrize(
    "values, field",
    [
        ({"dataset": "mnist"}, "dataset"),
        ({"dataset": "retinamnist", "model": "vit_huge"}, "model"),
        ({"dataset": "retinamnist", "alpha": 1.5}, "alpha"),
        ({"dataset": "retinamnist", "margin": -0.1}, "margin"),
        ({"dataset": "retinamnist", "epochs": 0}, "epochs"),
        ({"dataset": "retinamnist", "augment": "extreme"}, "augment"),
        ({"dataset": "retinamnist", "img_size": 32}, "img_size"),
        ({"dataset": "retinamnist", "lr": 0}, "lr"),
        ({"dataset": "retinamnist", "select_metric": "test_acc"}, "select_metric"),
        ({"dataset": "pathmnist", "alpha": 0.2}, "alpha"),
        ({"dataset": "pathmnist", "select_metric": "val_qwk"}, "select_metric"),
        ({"dataset": "retinamnist", "colour": "red"}, "colour"),
    ],
)
def test_bad_config_is_one_line_naming_the_field(values, field):
    with pytest.raises(ConfigError) as error:
        build_config(values)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{field}:")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--dataset", "retinamnist", "--alpha", "x", "--out", "o"], "--alpha"),
        (["train", "--dataset", "retinamnist", "--alpha", "2", "--out", "o"], "alpha"),
        (["train", "--dataset", "nope", "--out", "o"], "dataset"),
        (["train", "--dataset", "retinamnist"], "--out"),
        (["train", "--out", "o"], "--dataset"),
        (["train", "--dataset", "retinamnist", "--epochs", "-1", "--out", "o"], "epochs"),
        (["train", "--dataset", "retinamnist", "--tta", "rotate", "--out", "o"], "tta"),
        (["train", "--config", "missing.yaml", "--out", "o"], "config"),
        (["frobnicate"], "frobnicate"),
        (["data", "download", "--dataset", "nope"], "--dataset"),
        (["data", "download", "--dataset", "retinamnist", "--size", "32"], "--size"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err and "Traceback" not in err


def test_missing_data_file_is_one_line_with_fetch_command(tmp_path, capsys):
    code = main(["train", "--dataset", "dermamnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "dermamnist.npz" in err and "medsweep data download --dataset dermamnist" in err


def test_config_file_round_trip(real_root, tmp_path):
    config = build_config({**TINY, "alpha": 0.1, "data_root": str(real_root)})
    path = tmp_path / "best.yaml"
    path.write_text(config.to_yaml())
    metrics = run_cli(tmp_path, "c", "--config", str(path))
    assert metrics["config"]["data_root"] == str(real_root) and metrics["config"]["model"] == "medvit_28_tiny"
    # Flags override the file.
    assert metrics["config"]["alpha"] == 0.2 and metrics["config"]["seed"] == 3 and metrics["config"]["subset"] == 256


def test_console_script_reports_bad_argument_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "medsweep", "train", "--dataset", "retinamnist", "--batch-size", "0", "--out", "x"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "batch_size" in proc.stderr


def test_train_config_is_frozen_and_typed():
    config = TrainConfig(dataset="retinamnist")
    with pytest.raises(ValidationError, match="frozen"):
        config.alpha = 0.5
    assert config.select_mode == "max" and config.task == "ordinal-regression"


@pytest.mark.parametrize("preset", ["off", "shift", "light"])
def test_batch_inputs_augment_then_normalise_as_the_float_path_does(preset):
    images = torch.randint(0, 256, (16, 3, 28, 28), dtype=torch.uint8)
    index = torch.tensor([3, 0, 15, 7])
    cfg = augment_config(preset)
    batch = batch_inputs(images, index, cfg, torch.Generator().manual_seed(1))
    expected = augment_batch(normalise(images[index]), cfg, torch.Generator().manual_seed(1))
    assert batch.is_contiguous(memory_format=MEMORY_FORMAT) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, expected, rtol=0, atol=0)
    assert torch.equal(batch_inputs(images, index, None, None), normalise(images[index]))
