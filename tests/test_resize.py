"""`resize`: every model sees its batch resized on the device, in training, evaluation,
checkpoints, GradCAM and sweep specs, and bad values are one line."""

from __future__ import annotations

import pytest
import torch

from analysis.gradcam import gradcam_maps
from medvit.config import ConfigError, build_config
from medvit.models import MODELS, create_model, list_models
from medvit.models.medvit import stage_sizes
from medvit.train import Trainer, build_model, load_checkpoint_model, load_data
from medsweep.cli import main
from sweeps.space import trial_config
from sweeps.spec import SpecError, parse_spec


def _stem_input_side_and_output(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The side of the batch the model's first layer received, and the model's output."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    first.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    model.eval()
    with torch.no_grad():
        out = model(x)
    return seen[0], out


@pytest.mark.parametrize("name", list_models())
def test_every_model_sees_the_resized_batch(name):
    torch.manual_seed(0)
    model = create_model(name, in_chans=3, num_classes=5, img_size=28, resize=40)
    x = torch.randn(2, 3, 28, 28)
    # the ResNet 224 forms resize to 224 themselves, after ours
    expected = 224 if MODELS[name].native_img_size == 224 and MODELS[name].family == "resnet" else 40
    side, out = _stem_input_side_and_output(model, x)
    assert side == expected and out.shape == (2, 5)


def test_official_medvit_at_224_has_the_official_stage_maps():
    torch.manual_seed(0)
    model = create_model("medvit_small", in_chans=3, num_classes=5, img_size=28, resize=224).eval()
    sides = {}
    for k, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda m, i, o, k=k: sides.__setitem__(k, o.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 28, 28))
    assert [sides[k] for k in range(4)] == [56, 28, 14, 7] == stage_sizes(model.cfg, 224)
    assert model.gradcam_layer() is model.stages[3]  # 7x7 at 224: the last stage has extent


def test_nearest_is_pixel_replication_and_bilinear_differs():
    x = torch.randn(2, 1, 28, 28)
    resized = {}
    for mode in ("nearest", "bilinear"):
        model = create_model("resnet18_28", in_chans=1, num_classes=2, img_size=28, resize=224, resize_mode=mode)
        model.conv1.register_forward_hook(lambda m, i, o, mode=mode: resized.__setitem__(mode, i[0]))
        model.eval()(x)
    replicated = x.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    assert torch.equal(resized["nearest"], replicated)  # MedMNIST v2's 28 -> 224 rows
    assert not torch.allclose(resized["bilinear"], replicated, atol=1e-3)


def test_same_size_is_no_resize_and_parameters_are_unchanged():
    plain = create_model("medvit_28_tiny", in_chans=3, num_classes=5, img_size=28)
    same = create_model("medvit_28_tiny", in_chans=3, num_classes=5, img_size=28, resize=28)
    bigger = create_model("medvit_28_tiny", in_chans=3, num_classes=5, img_size=28, resize=56)
    assert not same._forward_pre_hooks and bigger._forward_pre_hooks
    # a hook, not a wrapper: the parameter names (and so checkpoints) are those of the model
    assert list(plain.state_dict()) == list(bigger.state_dict())


def test_trainer_checkpoint_evaluate_and_gradcam_apply_the_resize(tmp_path, real_root):
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "data_root": str(real_root),
                           "subset": 48, "epochs": 1, "batch_size": 16, "resize": 56, "device": "cpu"})
    trainer = Trainer(config, load_data(config))
    sides = []
    for model in (trainer.model, trainer.eval_model):  # the EMA copy is what evaluates
        model.stem[0].register_forward_hook(lambda m, i, o: sides.append(i[0].shape[-1]))
    metrics = list(trainer.epochs())
    assert sides and set(sides) == {56}  # training batches
    assert metrics[-1]["val_acc"] is not None
    sides.clear()
    result = trainer.finish()
    assert set(sides) == {56}  # the test split
    trainer.save(tmp_path)

    model, restored = load_checkpoint_model(tmp_path)  # what `evaluate`, `confirm` and GradCAM load
    assert restored.resize == 56
    batch = trainer._inputs("test", torch.arange(8))
    assert _stem_input_side_and_output(model, batch)[0] == 56
    with torch.no_grad():
        assert torch.allclose(model(batch), trainer.eval_model.eval()(batch), atol=1e-5)
    maps = gradcam_maps(model, batch[:2], [0, 1])
    assert maps.shape == (2, 28, 28)  # mapped back onto the stored image
    assert set(result["test"]) >= {"acc", "auc"}


def test_build_model_follows_the_config():
    config = build_config({"dataset": "retinamnist", "model": "medvit_28_tiny", "resize": 64,
                           "resize_mode": "bilinear"})
    model = build_model(config, 3, 5)
    hook = next(iter(model._forward_pre_hooks.values()))
    assert (hook.side, hook.mode) == (64, "bilinear")
    assert model.img_size == 64  # the GradCAM layer is chosen for what the model sees


@pytest.mark.parametrize(("values", "expected"), [
    ({"resize": 4}, "resize: Input should be greater than or equal to 8"),
    ({"resize": 4096}, "resize: Input should be less than or equal to 512"),
    ({"resize_mode": "bicubic"}, "resize_mode: Input should be 'nearest' or 'bilinear'"),
])
def test_bad_values_are_one_line(values, expected):
    with pytest.raises(ConfigError) as err:
        build_config({"dataset": "retinamnist", **values})
    assert str(err.value) == expected


def test_cli_refuses_a_bad_resize_in_one_line(tmp_path, capsys):
    # In this process: the console script's own path (a fresh interpreter) is
    # tests/test_train.py's test_console_script_reports_bad_argument_without_traceback.
    assert main(["train", "--dataset", "retinamnist", "--resize", "3", "--out", str(tmp_path / "unused")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "resize" in lines[0] and "8" in lines[0]
    assert not (tmp_path / "unused").exists()


SPEC = """
name: resize-search
dataset: retinamnist
train: {model: medvit_28_tiny, epochs: 2}
search:
  resize: {choice: [28, 56]}
  resize_mode: {choice: [nearest, bilinear]}
searcher: {type: random, seed: 0}
scheduler: {type: fifo}
num_samples: 2
resources: {cpu: 1, gpu: 0}
"""


def test_a_spec_searches_resize():
    spec = parse_spec(SPEC)
    config = trial_config(spec, {"resize": 56, "resize_mode": "bilinear"})
    assert (config["resize"], config["resize_mode"]) == (56, "bilinear")
    with pytest.raises(SpecError, match="resize"):
        parse_spec(SPEC.replace("[28, 56]", "[28, 2]"))
