import dataclasses
import itertools

import pytest
import torch
from torchvision.models import resnet as tv

from medvit.models import IMG_SIZES, MODELS, count_parameters, create_model, list_models
from medvit.models.medvit import LTB, MHCA, PRESETS, EfficientMHSA, MedViT, stage_sizes
from medvit.models.resnet import PRESETS as RESNET_PRESETS

NATIVE_28 = ("medvit_28_tiny", "medvit_28_small", "medvit_28_base")
# Every model at 28 px; every size for the 28 px presets and ResNet-18 (resnet18_224 resizes
# to 224, so it is the 224 case for both forms); the big models at 28 px plus one size.
SIZES_BY_MODEL = {
    **dict.fromkeys(("medvit_28_tiny", "medvit_28_small", "resnet18_224"), IMG_SIZES),
    "medvit_28_base": (28, 64, 128),
    "resnet18_28": (28, 64, 128),
    "medvit_small": (28, 224),
    "medvit_base": (28, 64),
    "medvit_large": (28, 128),
    "resnet50_28": (28, 64),
    "resnet50_224": (28,),  # resized to 224 inside forward whatever comes in
}
_chans_and_classes = itertools.cycle([(1, 2), (3, 5), (3, 14), (1, 5), (3, 2), (1, 14)])
CASES = [(name, size, *next(_chans_and_classes)) for name, sizes in SIZES_BY_MODEL.items() for size in sizes]


def test_every_model_is_covered():
    assert sorted(SIZES_BY_MODEL) == sorted(list_models())
    assert all(28 in sizes for sizes in SIZES_BY_MODEL.values())


@pytest.mark.parametrize(("name", "size", "in_chans", "num_classes"), CASES)
def test_forward_backward(name, size, in_chans, num_classes):
    torch.manual_seed(0)
    model = create_model(name, in_chans=in_chans, num_classes=num_classes, img_size=size)
    seen = {}
    model.gradcam_layer().register_forward_hook(lambda m, i, o: seen.__setitem__("cam", o.shape))
    if MODELS[name].family == "medvit":
        for k, stage in enumerate(model.stages):
            stage.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.shape[-1]))

    out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, num_classes)
    out.square().mean().backward()

    stem = next(model.parameters())  # the first conv of the stem
    assert stem.ndim == 4 and stem.shape[1] == in_chans
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    cam = seen["cam"]
    assert len(cam) == 4 and cam[0] == 2 and min(cam[2:]) >= (4 if size == 28 else 2), cam
    if MODELS[name].family == "medvit":
        # the module docstring's table of stage sizes is what the model really does
        assert [seen[k] for k in range(4)] == stage_sizes(model.cfg, size)


@pytest.mark.parametrize("name", NATIVE_28)
def test_28px_presets_keep_last_stage_2x2_and_cam_on_4x4(name):
    model = create_model(name, in_chans=3, num_classes=5, img_size=28)
    assert stage_sizes(PRESETS[name], 28) == [14, 7, 4, 2]
    assert model.gradcam_layer() is model.stages[2]


def test_gradcam_layer_choices():
    # stock stem at 28 px: stages are 7/4/2/1, so the second (4x4) is used; at 224 the last.
    # One block per stage keeps this cheap; the choice depends only on the stem and strides.
    shallow = dataclasses.replace(PRESETS["medvit_small"], depths=(1, 1, 1, 1))
    assert stage_sizes(shallow, 28) == [7, 4, 2, 1]
    at_28 = MedViT(shallow, in_chans=3, num_classes=2, img_size=28)
    assert at_28.gradcam_layer() is at_28.stages[1]
    at_224 = MedViT(shallow, in_chans=3, num_classes=2, img_size=224)
    assert at_224.gradcam_layer() is at_224.stages[3]
    for name in ("resnet18_28", "resnet50_224"):
        model = create_model(name, in_chans=1, num_classes=2)
        assert model.gradcam_layer() is model.layer4


@pytest.fixture(scope="module")
def medvit_small():
    return create_model("medvit_small", in_chans=3, num_classes=5, img_size=224)


def test_medvit_small_has_about_31m_parameters(medvit_small):
    n = count_parameters(medvit_small)
    assert 29.5e6 < n < 32.5e6, f"medvit_small has {n / 1e6:.2f} M parameters"


def test_medvit_block_layout_follows_official_pattern(medvit_small):
    kinds = ["".join("L" if isinstance(b, LTB) else "E" for b in stage) for stage in medvit_small.stages]
    assert kinds == ["EEE", "EEEL", "EEEELEEEEL", "EEL"]


@pytest.mark.parametrize("name", ["resnet18_28", "resnet50_224"])
def test_resnet_is_torchvisions_weight_for_weight_under_a_seed(name):
    """The baselines adopt torchvision's layers: a seed gives the weights, checkpoint keys and
    outputs that torchvision's own ResNet class gives with the same stem."""
    cfg = RESNET_PRESETS[name]
    torch.manual_seed(7)
    ours = create_model(name, in_chans=1, num_classes=3).eval()
    torch.manual_seed(7)
    theirs = tv.ResNet(getattr(tv, cfg.block), list(cfg.layers), num_classes=3).eval()
    kernel, stride, padding = (3, 1, 1) if cfg.resize_to is None else (7, 2, 3)
    theirs.conv1 = torch.nn.Conv2d(1, 64, kernel, stride=stride, padding=padding, bias=False)
    torch.nn.init.kaiming_normal_(theirs.conv1.weight, mode="fan_out", nonlinearity="relu")
    if cfg.resize_to is None:
        theirs.maxpool = torch.nn.Identity()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    x = torch.randn(2, 1, cfg.resize_to or 28, cfg.resize_to or 28)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_resnet_224_resizes_inside_forward():
    model = create_model("resnet18_224", in_chans=1, num_classes=2, img_size=28).eval()
    seen = []
    model.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-2:]))
    with torch.no_grad():
        model(torch.randn(1, 1, 28, 28))
    assert seen == [(224, 224)]


def _far_pixel_effect(module, chans):
    """How much the output at (0, 0) moves when only the opposite corner's input changes."""
    torch.manual_seed(0)
    module.eval()
    x = torch.randn(1, chans, 8, 8)
    x2 = x.clone()
    x2[..., 7, 7] += 10.0
    with torch.no_grad():
        return (module(x)[..., 0, 0] - module(x2)[..., 0, 0]).abs().max().item()


@pytest.mark.parametrize("sr_ratio", [1, 2, 16])  # 16 > the 8x8 map: clamped, pools to 1x1
def test_ltb_attention_is_global(sr_ratio):
    assert _far_pixel_effect(EfficientMHSA(64, head_dim=32, sr_ratio=sr_ratio), 64) > 1e-3
    # control: the convolutional branch is local, so the same probe must see nothing
    assert _far_pixel_effect(MHCA(64, head_dim=32), 64) < 1e-6


def test_ltb_attention_runs_in_the_model():
    model = create_model("medvit_28_tiny", in_chans=3, num_classes=5)
    attn = [m for m in model.modules() if isinstance(m, EfficientMHSA)]
    calls = []
    for m in attn:
        m.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    model(torch.randn(2, 3, 28, 28))
    assert len(attn) == 3 and len(calls) == 3


def test_drop_path_is_off_by_default_and_random_when_on():
    x = torch.randn(4, 3, 28, 28)
    torch.manual_seed(0)
    model = create_model("medvit_28_tiny", in_chans=3, num_classes=5, drop_path=0.5)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_registry_names_and_errors():
    assert list_models() == [
        "medvit_small", "medvit_base", "medvit_large",
        "medvit_28_tiny", "medvit_28_small", "medvit_28_base",
        "resnet18_28", "resnet50_28", "resnet18_224", "resnet50_224",
    ]
    assert {spec.native_img_size for spec in MODELS.values()} == {28, 224}
    with pytest.raises(ValueError, match=r"model: unknown 'vit_huge'; allowed: medvit_small, .*resnet50_224"):
        create_model("vit_huge", in_chans=3, num_classes=2)
    with pytest.raises(ValueError, match=r"img_size.*32.*allowed: 28, 64, 128, 224"):
        create_model("resnet18_28", in_chans=3, num_classes=2, img_size=32)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet18_28", in_chans=3, num_classes=0)
