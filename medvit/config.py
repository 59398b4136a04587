"""The configuration of one training run: every training field declared once, here.

Everything that trains (the CLI, the Ray trainable, `medsweep confirm`) builds a
`TrainConfig` first; a bad value fails here with one line naming the field, before any
data is read or any model is built. The other layers derive from these declarations rather
than repeating them: `medsweep train` makes one flag per field (help text from
`description`), a sweep spec's `train:` section takes the same fields with the same bounds,
`search:` may name the fields whose `SEARCH` kind is set, and the results table has one
column per field.

Importing this module imports neither torch nor Ray: the allowed names (datasets, model and
augmentation presets) are looked up when a value is validated.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from medvit.families import MEDVIT, model_family
from medvit.selection import SELECT_METRICS, select_metrics_for
from medvit.tasks import ORDINAL, TASKS
from medvit.yamlio import YamlError, dump_yaml, load_yaml, read_text_file

# The select metrics that exist for ordinal-regression tasks only (from medvit.selection's table).
ORDINAL_ONLY_METRICS = tuple(name for name in SELECT_METRICS
                             if all(name not in select_metrics_for(task) for task in TASKS if task != ORDINAL))

# How a field may be searched in a sweep spec (`search:`): the distribution kinds it takes.
NAME_SEARCH = ("choice", "grid")
FLOAT_SEARCH = ("uniform", "loguniform", "choice", "grid")
INT_SEARCH = ("int", "choice", "grid")
BOOL_SEARCH = ("choice", "grid")


def _field(default: Any, help: str, *, search: tuple[str, ...] | None = None, **bounds) -> Any:
    """A TrainConfig field: default, help text (CLI and docs), bounds, and how a sweep may
    search it. Floats are finite: inf and nan are refused at the edge."""
    extra = {"search": search} if search else None
    if isinstance(default, float):
        bounds["allow_inf_nan"] = False
    return Field(default, description=help, json_schema_extra=extra, **bounds)


@functools.cache
def allowed_values() -> dict[str, tuple]:
    """The values each named field accepts (looked up once, on first use)."""
    from medvit.augment import AUGMENT_PRESETS
    from medvit.data import DATASETS, SIZES
    from medvit.models import list_models

    return {
        "dataset": tuple(DATASETS),
        "model": tuple(list_models()),
        "augment": tuple(AUGMENT_PRESETS),
        "img_size": tuple(SIZES),
        "select_metric": tuple(SELECT_METRICS),
    }


# The largest integer torch and numpy hold (int64).
MAX_INT = 2**63 - 1


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the field."""


# Where a run trains and every command that runs a model evaluates (auto: a GPU when there is one).
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = _field(..., "MedMNIST 2D flag, e.g. retinamnist")
    model: str = _field("medvit_28_small", "model preset (medvit_28_tiny/small/base, medvit_small, resnet18_28, ...)",
                        search=NAME_SEARCH)
    alpha: float = _field(0.0, "Ordinal Loss weight in [0, 1] (ordinal tasks only; 0 = cross-entropy)",
                          search=FLOAT_SEARCH, ge=0.0, le=1.0)
    margin: float = _field(0.1, "Ordinal Loss margin", search=FLOAT_SEARCH, ge=0.0)
    epochs: int = _field(30, "training epochs", ge=1)
    batch_size: int = _field(128, "batch size", search=INT_SEARCH, ge=1)
    lr: float = _field(1e-3, "AdamW peak learning rate (linear warm-up, then cosine decay)",
                       search=FLOAT_SEARCH, gt=0.0)
    weight_decay: float = _field(0.05, "AdamW weight decay (never on norms and biases)",
                                 search=FLOAT_SEARCH, ge=0.0)
    warmup_epochs: int = _field(2, "epochs of linear learning-rate warm-up", search=INT_SEARCH, ge=0)
    bn_recompute: bool = _field(False, "before each validation, recompute the evaluated weights' BatchNorm "
                                       "statistics on up to 2,048 unaugmented training images (the running "
                                       "averages trail fast-moving weights; on a few hundred images they held "
                                       "validation at the majority class for half the run)",
                                search=BOOL_SEARCH)
    grad_clip: float = _field(1.0, "clip the gradient norm to this (0 = off)", search=FLOAT_SEARCH, ge=0.0)
    label_smoothing: float = _field(0.1, "label smoothing of the cross-entropy term", search=FLOAT_SEARCH,
                                    ge=0.0, lt=1.0)
    drop_path: float = _field(0.1, "stochastic depth rate of the deepest MedViT block (MedViT only)",
                              search=FLOAT_SEARCH, ge=0.0, lt=1.0)
    mixup: float = _field(0.0, "mixup Beta(a, a) parameter (0 = off)", search=FLOAT_SEARCH, ge=0.0)
    ema: float = _field(0.99, "decay of the weights' exponential moving average, which is what is "
                              "validated, selected and tested (0 = off)", search=FLOAT_SEARCH, ge=0.0, lt=1.0)
    augment: str = _field("shift", "augmentation preset: off, flip, shift (sharp, integer pixels), "
                                   "light, medium, strong (affine) or augmix (torchvision's AugMix defaults, "
                                   "per-image chains)", search=NAME_SEARCH)
    img_size: int = _field(28, "MedMNIST image size: 28, 64, 128, 224")
    resize: int | None = _field(None, "resize every batch on the device to this many px before the model "
                                      "(after augmentation); 224 from 28 px images is the MedViT paper's "
                                      "protocol (default: the stored size)", search=INT_SEARCH, ge=8, le=512)
    resize_mode: Literal["nearest", "bilinear"] = _field("nearest", "interpolation of `resize`: nearest "
                                                         "(MedMNIST v2's 224 rows) or bilinear",
                                                         search=NAME_SEARCH)
    seed: int = _field(0, "random seed", search=INT_SEARCH, ge=0)
    select_metric: str = _field("val_acc", "validation metric that picks the epoch")
    select_window: int = _field(5, "select on the mean of the metric over this many trailing epochs",
                                ge=1)
    compile: bool = _field(False, "torch.compile the training forward pass (CUDA graphs on a GPU)")
    precision: Literal["fp32", "bf16"] = _field("fp32", "floating point of the forward pass: fp32, or bf16 "
                                                "autocast (measured slower for 28 px models on an H100)")
    tta: Literal["off", "flip"] = _field("off", "test-time augmentation, reported beside the plain numbers "
                                         "(never selects): off, or flip (mean over the dataset's flips)")
    audit_test: bool = _field(False, "record each epoch's test metrics (audit_test_*) to audit what selecting "
                                     "the epoch on test would claim; never used to select")
    subset: int | None = _field(None, "use at most this many images per split (smoke runs)", ge=1)
    data_root: str | None = _field(None, "folder of MedMNIST .npz files (default $MEDMNIST_ROOT, else ~/.medmnist)")
    device: Device = _field("auto", "auto, cpu or cuda")

    @field_validator("dataset", "model", "augment", "img_size", "select_metric")
    @classmethod
    def _one_of_allowed(cls, value, info: ValidationInfo):
        allowed = allowed_values()[info.field_name]
        if value not in allowed:
            raise ValueError(f"unknown {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, values: Any) -> Any:
        # Strict at the edge: YAML's true is no epoch count (pydantic would take it as 1), and an
        # integer past int64 overflows torch and numpy (the seed) long after validation.
        for name, value in values.items() if isinstance(values, dict) else ():
            info = cls.model_fields.get(name)
            types = (get_args(info.annotation) or (info.annotation,)) if info else ()
            if isinstance(value, bool) and bool not in types and ({int, float} & set(types)):
                raise ValueError(f"{name}: {str(value).lower()} is a boolean; allowed: a number")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
                raise ValueError(f"{name}: {value} is past 64-bit integers; allowed: at most {MAX_INT}")
        return values

    @model_validator(mode="before")
    @classmethod
    def _no_default_drop_path_for_resnets(cls, values: Any) -> Any:
        # The default stochastic depth is MedViT's; a ResNet asked for without one gets 0.
        if isinstance(values, dict) and "drop_path" not in values and model_family(values.get("model", MEDVIT)) != MEDVIT:
            return {**values, "drop_path": 0.0}
        return values

    @model_validator(mode="after")
    def _fits_the_task(self) -> "TrainConfig":
        ordinal = self.task == ORDINAL
        if self.alpha > 0 and not ordinal:
            raise ValueError(
                f"alpha: the Ordinal Loss applies to ordinal-regression tasks only; "
                f"{self.dataset} is {self.task}, so alpha must be 0"
            )
        if self.select_metric not in select_metrics_for(self.task):
            raise ValueError(
                f"select_metric: {self.select_metric} exists for ordinal-regression tasks only; "
                f"allowed for {self.dataset}: {', '.join(select_metrics_for(self.task))}"
            )
        if self.drop_path > 0 and model_family(self.model) != MEDVIT:
            raise ValueError(f"drop_path: stochastic depth exists in MedViT presets only; {self.model} needs 0")
        return self

    @property
    def task(self) -> str:
        from medvit.data import dataset_info

        return dataset_info(self.dataset).task

    @property
    def select_mode(self) -> Literal["max", "min"]:
        return SELECT_METRICS[self.select_metric]

    def to_yaml(self) -> str:
        return dump_yaml(self.model_dump(exclude_none=True))


def searchable_fields(config_class: type[BaseModel] = TrainConfig) -> dict[str, tuple[str, ...]]:
    """Field -> the distribution kinds a sweep's `search:` section may give it."""
    return {
        name: info.json_schema_extra["search"]
        for name, info in config_class.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and "search" in info.json_schema_extra
    }


def build_config(values: dict, config_class: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """Validate `values` into a TrainConfig, turning pydantic's report into one line."""
    try:
        return config_class(**values)
    except ValidationError as exc:
        raise ConfigError(one_line_error(exc, config_class)) from None


def load_config_file(path: str | Path) -> dict:
    """Read a YAML file of TrainConfig fields (as `medsweep sweep` writes for the best trial)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config: {path} is a folder; expected a YAML file of TrainConfig fields")
    try:
        values = load_yaml(read_text_file(path), source=str(path))
    except FileNotFoundError:
        raise ConfigError(f"config: no such file {path}") from None
    except YamlError as exc:
        raise ConfigError(f"config: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config: {path} must hold a mapping of TrainConfig fields")
    return values


def one_line_error(exc: ValidationError, config_class: type[BaseModel] = TrainConfig) -> str:
    """The first error of a pydantic ValidationError as `field: what is wrong`."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown field; allowed: {', '.join(config_class.model_fields)}"
        if isinstance(first.get("input"), dict):  # most often the home of a YAML anchor for `<<: *name`
            message += ("; YAML merge keys (<<: *anchor) are not supported: the anchored mapping would need "
                        "a key of its own, and no field holds one")
    if not field:
        return message
    if message.startswith(f"{field}:"):
        return message
    return f"{field}: {message}"
