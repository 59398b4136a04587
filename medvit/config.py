"""The configuration of one training run, validated once at the edge.

Everything that trains (the CLI, the Ray trainable, `medsweep confirm`) builds a
`TrainConfig` first; a bad value fails here with one line naming the field, before any
data is read or any model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from medvit.augment import AUGMENT_PRESETS
from medvit.data import DATASETS, SIZES, dataset_info
from medvit.models import list_models

# Validation metrics a run may select its best epoch on, with the direction that is better.
SELECT_METRICS: dict[str, Literal["max", "min"]] = {
    "val_acc": "max",
    "val_auc": "max",
    "val_qwk": "max",
    "val_mae": "min",
    "val_loss": "min",
}
ORDINAL_ONLY_METRICS = ("val_qwk", "val_mae")


def allowed_values() -> dict[str, tuple]:
    """The values each named field accepts (model presets are looked up when asked)."""
    return {
        "dataset": DATASETS,
        "model": tuple(list_models()),
        "augment": tuple(AUGMENT_PRESETS),
        "img_size": SIZES,
        "select_metric": tuple(SELECT_METRICS),
    }


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line naming the field."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    model: str = "medvit_28_small"
    alpha: float = Field(0.0, ge=0.0, le=1.0)
    margin: float = Field(0.1, ge=0.0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    augment: str = "light"
    img_size: int = 28
    seed: int = Field(0, ge=0)
    select_metric: str = "val_acc"
    subset: int | None = Field(None, ge=1, description="at most this many images per split (smoke runs)")
    data_root: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("dataset", "model", "augment", "img_size", "select_metric")
    @classmethod
    def _one_of_allowed(cls, value, info: ValidationInfo):
        allowed = allowed_values()[info.field_name]
        if value not in allowed:
            raise ValueError(f"unknown {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value

    @model_validator(mode="after")
    def _fits_the_task(self) -> "TrainConfig":
        ordinal = self.task == "ordinal-regression"
        if self.alpha > 0 and not ordinal:
            raise ValueError(
                f"alpha: the Ordinal Loss applies to ordinal-regression tasks only; "
                f"{self.dataset} is {self.task}, so alpha must be 0"
            )
        if self.select_metric in ORDINAL_ONLY_METRICS and not ordinal:
            raise ValueError(
                f"select_metric: {self.select_metric} exists for ordinal-regression tasks only; "
                f"allowed for {self.dataset}: val_acc, val_auc, val_loss"
            )
        return self

    @property
    def task(self) -> str:
        return dataset_info(self.dataset).task

    @property
    def select_mode(self) -> Literal["max", "min"]:
        return SELECT_METRICS[self.select_metric]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False)


def build_config(values: dict) -> TrainConfig:
    """Validate `values` into a TrainConfig, turning pydantic's report into one line."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise ConfigError(one_line_error(exc)) from None


def load_config_file(path: str | Path) -> dict:
    """Read a YAML file of TrainConfig fields (as `medsweep sweep` writes for the best trial)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: no such file {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config: {path} is not valid YAML{where}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config: {path} must hold a mapping of TrainConfig fields")
    return values


def one_line_error(exc: ValidationError) -> str:
    """The first error of a pydantic ValidationError as `field: what is wrong`."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown field; allowed: {', '.join(TrainConfig.model_fields)}"
    if not field:
        return message
    if message.startswith(f"{field}:"):
        return message
    return f"{field}: {message}"
