"""Sweep specifications: one YAML file describes one hyperparameter sweep.

A spec names a dataset, the fixed training values every trial starts from (``train``),
the hyperparameters to search with their distributions (``search``), the searcher, the
trial scheduler, the budget, the resources of one trial, the metric and where results go.
``load_spec`` validates all of it before Ray starts; every problem becomes a ``SpecError``
whose message is one line::

    <file>: <dotted.field>: <what is wrong and what is allowed>

Nothing about training is declared here: ``train`` takes exactly the fields of
``medvit.config.TrainConfig`` (less ``dataset`` and ``select_metric``, which are the spec's
``dataset`` and ``metric``) with the same bounds and defaults, ``search`` the fields that
TrainConfig marks searchable, and every fixed or searched value is checked by building a
TrainConfig from it. Distributions (one key per entry)::

    lr:           {loguniform: [1.0e-4, 3.0e-3]}     # low > 0, low < high
    alpha:        {uniform: [0.0, 0.5]}
    batch_size:   {int: [32, 256], log: true}        # integers, both ends included
    augment:      {choice: [off, light, medium]}     # a bare list means the same: [off, light]
    seed:         {grid: [0, 1, 2]}                  # every value, with the random/grid searcher
    margin:       {loguniform: [0.01, 0.5], when: "alpha > 0"}   # optuna searcher only

``when`` is a small expression over hyperparameters searched *earlier* in the file
(comparisons ``== != < <= > >= in``, combined with ``and``/``or``/``not``); when it is false
the trial uses the fixed value from ``train``. YAML is read by ``medvit.yamlio`` (YAML 1.2
scalars: ``off`` stays a string).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from medvit.config import ORDINAL_ONLY_METRICS, SELECT_METRICS, TrainConfig, one_line_error, searchable_fields
from medvit.tasks import ORDINAL
from medvit.userpath import expand_home
from medvit.yamlio import YamlError, dump_yaml, load_yaml, read_text_file
from sweeps.paths import refuse_uri_options
from sweeps.ranking import SCORE

__all__ = ["SpecError", "SweepSpec", "TrainSection", "Distribution", "SEARCHABLE", "SPECS_DIR", "SPEC_GROUPS",
           "train_section", "spec_class", "load_spec", "parse_spec", "spec_from_dict", "list_specs", "evaluate_when",
           "when_names"]

SPECS_DIR = Path(__file__).resolve().parent / "specs"
# Subfolders of SPECS_DIR whose specs are named <group>/<name>: `paper`, the MedViT paper's
# protocol (224 px from the 28 px images; the spec's own `name` is paper-<name>).
SPEC_GROUPS = ("paper",)
# Set at the spec's top level rather than in `train`.
TOP_LEVEL_FIELDS = {"dataset": "dataset", "select_metric": "metric"}
SEARCHABLE: dict[str, tuple[str, ...]] = searchable_fields(TrainConfig)
DIST_KINDS = ("uniform", "loguniform", "int", "choice", "grid")
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")
MAX_REPEATS = 10
# More trials than a sweep could ever run: a bound that turns a typo into one line, not a sweep for ever.
MAX_NUM_SAMPLES = 100_000


class SpecError(ValueError):
    """A sweep spec is invalid; ``str(error)`` is one line naming the file and the field."""

    def __init__(self, message: str, *, source: str = "", field: str = ""):
        super().__init__(" ".join(message.split()))
        self.source = source
        self.field = field


class _At(ValueError):
    """Raised inside a validator: a problem at ``loc`` below the validated object (pydantic
    would place it at the object itself)."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = tuple(loc)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


@functools.cache
def train_section(config_class: type[TrainConfig] = TrainConfig) -> type[BaseModel]:
    """The ``train:`` section: the config class's fields (their types, bounds and defaults),
    less the ones the spec sets at its top level. Names and cross-field rules are checked by
    building the config class itself (``SweepSpec._check_config``)."""
    fields = {name: (info.annotation, info) for name, info in config_class.model_fields.items()
              if name not in TOP_LEVEL_FIELDS}
    name = "TrainSection" if config_class is TrainConfig else f"{config_class.__name__}Section"
    return _picklable(create_model(name, __base__=_Strict, __module__=__name__, **fields))


def _picklable(cls: type) -> type:
    # Ray pickles the spec (into every trial, with the searcher's state): pickle finds a
    # class by its module and name.
    globals()[cls.__name__] = cls
    return cls


TrainSection = train_section(TrainConfig)


# --------------------------------------------------------------------------------------------
# distributions

Pair = Annotated[list[float], Field(min_length=2, max_length=2)]
IntPair = Annotated[list[int], Field(min_length=2, max_length=2)]
Values = Annotated[list[Any], Field(min_length=1)]


class Distribution(_Strict):
    """One ``search`` entry: exactly one of the kinds, plus ``log`` (int) and ``when``."""

    uniform: Pair | None = None
    loguniform: Pair | None = None
    int_: IntPair | None = Field(None, alias="int")
    choice: Values | None = None
    grid: Values | None = None
    log: bool = False
    when: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list_is_choice(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"choice": value}
        if not isinstance(value, dict):
            raise ValueError(f"{value!r} is not a distribution (fixed values belong in train); allowed: "
                             "{uniform: [low, high]}, {loguniform: ...}, {int: ...}, {choice: [...]}, {grid: [...]}")
        return value

    @model_validator(mode="after")
    def _well_formed(self) -> "Distribution":
        kinds = [kind for kind in DIST_KINDS if getattr(self, "int_" if kind == "int" else kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"names {len(kinds)} distributions ({', '.join(kinds) or 'none'}); allowed: "
                             "exactly one of " + ", ".join(DIST_KINDS))
        kind = kinds[0]
        if kind in ("choice", "grid"):
            for i, value in enumerate(self.values):
                if any(type(v) is type(value) and v == value for v in self.values[:i]):
                    raise _At((kind, i), f"duplicate value {value!r}; allowed: distinct values")
        elif not self.low < self.high:
            raise _At((kind,), f"low {self.low} must be below high {self.high}; allowed: [low, high] with low < high")
        elif self.low <= 0 and (kind == "loguniform" or self.log):
            raise _At((kind,), f"low {self.low} is not positive on a log scale; allowed: 0 < low < high")
        if self.log and kind != "int":
            raise _At(("log",), "log applies to int entries only; allowed: loguniform for floats")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in DIST_KINDS if getattr(self, "int_" if kind == "int" else kind) is not None)

    @property
    def values(self) -> list:
        """The choice or grid values, or [low, high] of a range."""
        return getattr(self, "int_" if self.kind == "int" else self.kind)

    low = property(lambda self: self.values[0])
    high = property(lambda self: self.values[1])


# --------------------------------------------------------------------------------------------
# searcher, scheduler, resources, smoke


class Searcher(_Strict):
    """optuna: TPE, define-by-run (conditional entries work); random: Ray Tune's random
    sampler; grid: every combination of grid entries (times num_samples)."""

    type: Literal["optuna", "random", "grid"]
    seed: Annotated[int, Field(ge=0)] | None = 0
    n_startup_trials: Annotated[int, Field(ge=1)] | None = None  # optuna only


class Scheduler(_Strict):
    """asha: successive halving on ``training_iteration`` (one per epoch), ``max_t`` is
    ``train.epochs``; fifo: every trial runs all its epochs (the other keys are ignored).

    ``rung_metric`` is what ASHA compares at each rung: ``select_score`` (the smoothed
    selection score the sweep ranks on) or one epoch's validation metric. The searcher and the
    ranking always use the selection score. ``val_auc`` is threshold-free: it already ranks
    trials while their EMA weights still predict one class for every image and their accuracies
    tie (ASHA stops a trial only strictly below the cut-off, so ties stop nothing). On real
    RetinaMNIST it cut more trials but lost more of the best than the default
    (benchmarks/RESULTS.md 2b): check a dataset with ``bench_sweep_efficiency.py --replay`` first."""

    type: Literal["asha", "fifo"]
    max_t: Annotated[int, Field(ge=1)] | None = None  # may be written; must equal train.epochs
    grace_period: Annotated[int, Field(ge=1)] = 5
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    rung_metric: Literal[(SCORE, *SELECT_METRICS)] = SCORE


class Resources(_Strict):
    """Resources of one trial; ``gpu`` may be a fraction (0.125: eight trials share a GPU)."""

    cpu: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1
    gpu: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0
    # Host memory Ray reserves per trial (0: none, Ray's default): set it when trials would
    # otherwise be packed past a node's RAM (a 224 px MedViT takes GiBs on the host).
    memory_gib: Annotated[float, Field(ge=0, le=2**20, allow_inf_nan=False)] = 0

    @field_validator("gpu")
    @classmethod
    def _whole_gpus_above_one(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError(f"{gpu} GPUs is neither a fraction of one nor whole; allowed: 0 <= gpu <= 1, or a whole number")
        return gpu


class SmokeSection(_Strict):
    """Overrides for ``--smoke``: a tiny version of the sweep that checks the plumbing."""

    epochs: Annotated[int, Field(ge=1)] = 2
    num_samples: Annotated[int, Field(ge=1)] | None = None  # None: 2 configurations (1 with grid) x repeats
    batch_size: Annotated[int, Field(ge=1)] = 32
    grace_period: Annotated[int, Field(ge=1)] = 1
    subset: Annotated[int, Field(ge=1)] | None = 256
    grid_values: Annotated[int, Field(ge=1)] = 2  # keep the first N values of each grid entry
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    resources: Resources = Field(default_factory=lambda: Resources(cpu=1, gpu=0))


# --------------------------------------------------------------------------------------------
# conditions (`when`)

_COMPARE_OPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_WHEN_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Name, ast.Load, ast.UnaryOp,
               ast.Not, ast.USub, ast.List, ast.Tuple, *_COMPARE_OPS)
_WHEN_SYNTAX = "comparisons of earlier searched hyperparameters with constants (== != < <= > >= in), joined by and/or/not"


MAX_WHEN_CHARS = 500


@functools.lru_cache(maxsize=256)
def _parse_when(expr: str) -> ast.Expression:
    if len(expr) > MAX_WHEN_CHARS:  # Python's parser and the evaluator below recurse per level
        raise ValueError(f"{len(expr)} characters long, more than the {MAX_WHEN_CHARS} a condition may have")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ValueError(f"cannot parse {expr!r}") from None
    for node in ast.walk(tree):
        allowed_constant = isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool))
        if not (isinstance(node, _WHEN_NODES) or allowed_constant):
            raise ValueError(f"{expr!r} uses {type(node).__name__}, which a condition may not")
    return tree


def when_names(expr: str) -> list[str]:
    """The hyperparameter names a condition refers to, in order of appearance."""
    return list(dict.fromkeys(node.id for node in ast.walk(_parse_when(expr)) if isinstance(node, ast.Name)))


def evaluate_when(expr: str, values: dict[str, Any]) -> bool:
    """Evaluate a ``when`` condition against the hyperparameter values chosen so far."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            test = all if isinstance(node.op, ast.And) else any
            return test(ev(v) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            return (not ev(node.operand)) if isinstance(node.op, ast.Not) else -ev(node.operand)
        if isinstance(node, ast.Compare):
            operands = [ev(node.left), *map(ev, node.comparators)]
            return all(_COMPARE_OPS[type(op)](a, b) for op, a, b in zip(node.ops, operands, operands[1:]))
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        return node.value  # a constant: _parse_when let nothing else through

    return bool(ev(_parse_when(expr)))


# --------------------------------------------------------------------------------------------
# the spec


class SweepSpec(_Strict):
    """One sweep: validated once, read by the launcher, the trainable and the CLI."""

    # The training config the spec's `train` and `search` take; spec_class() makes others.
    CONFIG: ClassVar[type[TrainConfig]] = TrainConfig

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
    dataset: str
    description: str | None = None
    train: TrainSection = Field(default_factory=TrainSection)
    search: Annotated[dict[str, Distribution], Field(min_length=1)]
    searcher: Searcher = Field(default_factory=lambda: Searcher(type="optuna"))
    scheduler: Scheduler = Field(default_factory=lambda: Scheduler(type="asha"))
    num_samples: Annotated[int, Field(ge=1, le=MAX_NUM_SAMPLES)] = 32
    # Trials per sampled configuration, each with its own seed (train.seed + repeat index);
    # the searcher sees their mean and the best configuration is chosen by it.
    repeats: Annotated[int, Field(ge=1, le=MAX_REPEATS)] = 1
    max_concurrent: Annotated[int, Field(ge=1)] = 4
    resources: Resources = Field(default_factory=Resources)
    metric: Literal[tuple(SELECT_METRICS)] = "val_acc"
    # A trial checkpoints every N epochs, its last, and every epoch that becomes its selected
    # one (so its newest checkpoint always holds the weights its reports select); a trial Ray
    # restarts redoes the epochs since. 1: every epoch. Larger for big models on small datasets,
    # where writing a checkpoint can take longer than an epoch (README, "What a sweep does").
    checkpoint_every: Annotated[int, Field(ge=1)] = 1
    storage: str = "~/medsweep-results"
    smoke: SmokeSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _mode_follows_the_metric(cls, data: Any) -> Any:
        # Specs saved before `mode` was derived name it; it can only be the metric's direction.
        if isinstance(data, dict) and "mode" in data:
            data = dict(data)
            mode, metric = data.pop("mode"), data.get("metric", "val_acc")
            if mode is not None and mode != SELECT_METRICS.get(metric, mode):
                raise _At(("mode",), f"{mode!r} does not fit {metric}; allowed: {SELECT_METRICS[metric]} "
                                     "(or leave mode out: it follows the metric)")
        return data

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", value)
        if not value.strip():
            raise ValueError("empty; allowed: a local or NFS path, or an s3:// / gs:// URI")
        if match and match.group(1).lower() not in STORAGE_SCHEMES:
            raise ValueError(f"unsupported scheme {match.group(1)}://; allowed: "
                             + ", ".join(f"{s}://" for s in STORAGE_SCHEMES) + ", or a path")
        if match and not match.group(2).strip("/"):
            raise ValueError(f"{value!r} names no bucket or path; allowed: {match.group(1)}://<bucket>/<prefix>")
        refuse_uri_options(value)
        if not match:
            try:
                expand_home(value).resolve()
            except (RuntimeError, OSError) as exc:  # a symbolic-link loop (RuntimeError before Python 3.13)
                raise ValueError(f"{value}: cannot be resolved ({exc}); allowed: a path without a link loop") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        base = self.trial_values({})
        self._check_config(base, ("train",))
        self._check_search(base)
        sched, epochs = self.scheduler, self.train.epochs
        if sched.type == "asha" and sched.max_t not in (None, epochs):
            raise _At(("scheduler", "max_t"), f"max_t {sched.max_t} differs from train.epochs {epochs}; "
                                              f"allowed: {epochs}, or left out")
        if sched.type == "asha" and sched.grace_period > epochs:
            raise _At(("scheduler", "grace_period"), f"grace_period {sched.grace_period} exceeds the {epochs} "
                                                     f"epochs; allowed: 1 <= grace_period <= {epochs}")
        if sched.rung_metric in ORDINAL_ONLY_METRICS and not self.is_ordinal:
            raise _At(("scheduler", "rung_metric"), f"{sched.rung_metric} exists for ordinal-regression tasks only; "
                                                    f"{self.dataset} is {self.task}; allowed: "
                                                    + ", ".join(m for m in (SCORE, *SELECT_METRICS)
                                                                if m not in ORDINAL_ONLY_METRICS))
        if self.searcher.type != "optuna" and self.searcher.n_startup_trials is not None:
            raise _At(("searcher", "n_startup_trials"), "applies to the optuna searcher only; allowed: "
                                                        "searcher {type: optuna, n_startup_trials: N}")
        if self.repeats > 1:
            self._check_repeats()
        return self

    def _check_repeats(self) -> None:
        """Repeated seeds are averaged, so every repeat of a configuration must run the same
        epochs and the searcher must be one Ray's Repeater can wrap."""
        if self.scheduler.type != "fifo":
            raise _At(("repeats",), f"{self.repeats} needs scheduler {{type: fifo}}, not {self.scheduler.type}: "
                                    "ASHA would stop some seeds of a configuration and not others; "
                                    "allowed: repeats 1, or scheduler {type: fifo}")
        if self.searcher.type != "optuna":
            raise _At(("repeats",), f"{self.repeats} needs the optuna searcher, not {self.searcher.type} "
                                    "(Ray's Repeater wraps a searcher, not the random or grid generator); "
                                    "allowed: repeats 1, or searcher {type: optuna}")
        if "seed" in self.search:
            raise _At(("search", "seed"), "cannot be searched when repeats > 1: each repeat's seed is "
                                          "train.seed + its repeat index; allowed: seed fixed in train")
        if self.num_samples % self.repeats:
            raise _At(("num_samples",), f"{self.num_samples} is not a multiple of repeats {self.repeats} "
                                        "(num_samples counts trials: configurations x repeats); allowed: "
                                        f"a multiple of {self.repeats}")

    def _check_config(self, values: dict, loc: tuple) -> None:
        """Build the config class from `values`: its own rules, one place; a failure names the
        field where the spec wrote it (`loc` for train fields)."""
        try:
            self.CONFIG.model_validate(values, strict=True)
        except ValidationError as exc:
            field, _, message = one_line_error(exc, self.CONFIG).partition(": ")
            at = (TOP_LEVEL_FIELDS[field],) if field in TOP_LEVEL_FIELDS else loc + (field,) * (loc[0] == "train")
            raise _At(at, message) from None

    def _check_search(self, base: dict) -> None:
        searchable = searchable_fields(self.CONFIG)
        for position, (key, dist) in enumerate(self.search.items()):
            kind, searcher = dist.kind, self.searcher.type
            if key not in searchable:
                raise _At(("search", key), f"cannot be searched; allowed: {', '.join(searchable)}")
            if kind not in searchable[key]:
                raise _At(("search", key), f"a {kind} distribution does not fit {key}; allowed: {', '.join(searchable[key])}")
            if kind == "grid" and searcher == "optuna":
                raise _At(("search", key, kind), "grid entries need the random or grid searcher, not optuna; "
                                                 "allowed: uniform, loguniform, int, choice")
            if searcher == "grid" and kind != "grid":
                raise _At(("search", key, kind), f"the grid searcher expands grid entries only, not {kind}; "
                                                 "allowed: {grid: [...]}, or searcher {type: random} to mix")
            for i, value in enumerate(dist.values):
                self._check_config({**base, key: value}, ("search", key, kind, i))
            if dist.when is not None:
                self._check_when(key, dist, list(self.search)[:position])

    def _check_when(self, key: str, dist: Distribution, earlier: list[str]) -> None:
        loc = ("search", key, "when")
        if self.searcher.type != "optuna":
            raise _At(loc, f"conditional entries need the optuna searcher, not {self.searcher.type}; "
                           "allowed: when with searcher {type: optuna}")
        try:
            names = when_names(dist.when)
        except ValueError as exc:
            raise _At(loc, f"{exc}; allowed: {_WHEN_SYNTAX}") from None
        for name in names:
            if name not in earlier:
                where = "searched after" if name in self.search else "not a searched hyperparameter before"
                raise _At(loc, f"{name!r} is {where} {key!r}; allowed: {', '.join(earlier) or 'none'}")
        # The condition must compute for every value its inputs can take.
        first = {**self.train.model_dump(), **{name: self.search[name].values[0] for name in names}}
        for name in names:
            for value in self.search[name].values:
                try:
                    evaluate_when(dist.when, {**first, name: value})
                except TypeError as exc:
                    raise _At(loc, f"cannot evaluate {dist.when!r} for {name}={value!r} ({exc}); "
                                   f"allowed: {_WHEN_SYNTAX}") from None

    # ---------------------------------------------------------------- derived values

    def trial_values(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The config-class values of one trial: ``dataset``, ``select_metric`` (the metric),
        the ``train`` values that differ from the defaults (the config class applies its own
        defaults, some of which depend on other fields), the sampled values on top."""
        return {"dataset": self.dataset, "select_metric": self.metric,
                **self.train.model_dump(exclude_defaults=True), **sampled}

    @property
    def mode(self) -> Literal["max", "min"]:
        """The metric's direction: ``max`` or ``min``."""
        return SELECT_METRICS[self.metric]

    @property
    def rung_mode(self) -> Literal["max", "min"]:
        """The direction of ``scheduler.rung_metric``."""
        metric = self.scheduler.rung_metric
        return self.mode if metric == SCORE else SELECT_METRICS[metric]

    @property
    def task(self) -> str:
        """medmnist's task string of the dataset (``"ordinal-regression"`` for retinamnist)."""
        from medvit.data import dataset_info

        return dataset_info(self.dataset).task

    @property
    def is_ordinal(self) -> bool:
        return self.task == ORDINAL

    @property
    def storage_path(self) -> str:
        """``storage`` as Ray's ``RunConfig(storage_path=...)`` wants it: URIs unchanged,
        local paths with ``~`` expanded and made absolute."""
        if "://" in self.storage:
            return self.storage
        return str(expand_home(self.storage).resolve())

    @property
    def grid_size(self) -> int:
        """Number of combinations of the grid entries (1 without grids)."""
        return math.prod(len(dist.values) for dist in self.search.values() if dist.kind == "grid")

    @property
    def total_trials(self) -> int:
        """Trials the sweep starts: num_samples times the grid size (Ray's rule)."""
        return self.num_samples * self.grid_size

    # ---------------------------------------------------------------- variants

    def to_dict(self) -> dict:
        """Plain data (the YAML form): distributions as ``{kind: values, when: ...}``."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for entry in data["search"].values():
            if entry["log"] is False:
                del entry["log"]
        return data

    def to_yaml(self) -> str:
        """YAML that ``parse_spec`` reads back into an equal spec."""
        return dump_yaml(self.to_dict())

    def with_overrides(self, num_samples: int | None = None, storage: str | None = None,
                       name: str | None = None) -> "SweepSpec":
        """A copy with command-line overrides applied (None keeps the spec's value), validated."""
        overrides = {"num_samples": num_samples, "storage": storage, "name": name}
        data = {**self.to_dict(), **{key: value for key, value in overrides.items() if value is not None}}
        return spec_from_dict(data, f"{self.name} (overrides)", self.CONFIG)

    def smoke_variant(self) -> "SweepSpec":
        """A tiny copy of this sweep that checks the plumbing in minutes.

        ``smoke.epochs`` epochs (2), ASHA grace 1, ``smoke.num_samples`` trials (2 configurations
        times ``repeats``; 1 with the grid searcher; rounded up to a multiple of ``repeats``), batch size at most ``smoke.batch_size`` (32), ``smoke.subset`` images
        per split (256), the first ``smoke.grid_values`` values of each grid entry (2),
        ``smoke.resources`` (1 CPU, no GPU); the searched choices (model presets included)
        stay as given. The name gains ``-smoke`` so that results never mix with the real
        sweep's.
        """
        smoke = self.smoke or SmokeSection()
        data = self.to_dict()
        data["name"] = f"{self.name}-smoke"[:100]
        data["train"].update(epochs=smoke.epochs, batch_size=min(self.train.batch_size, smoke.batch_size))
        if smoke.subset is not None:
            data["train"]["subset"] = smoke.subset
        if data["scheduler"]["type"] == "asha":
            data["scheduler"].pop("max_t", None)
            data["scheduler"]["grace_period"] = min(smoke.grace_period, smoke.epochs)
        for entry in data["search"].values():
            if "grid" in entry:
                entry["grid"] = entry["grid"][: smoke.grid_values]
        # Configurations get all their repeats: the trial count is rounded up to a multiple.
        trials = smoke.num_samples or (1 if self.searcher.type == "grid" else 2) * self.repeats
        data["num_samples"] = math.ceil(trials / self.repeats) * self.repeats
        if smoke.max_concurrent is not None:
            data["max_concurrent"] = smoke.max_concurrent
        data["resources"] = smoke.resources.model_dump()
        return spec_from_dict(data, f"{self.name} (smoke)", self.CONFIG)


@functools.cache
def spec_class(config_class: type[TrainConfig] = TrainConfig) -> type[SweepSpec]:
    """The SweepSpec whose ``train`` and ``search`` take ``config_class``'s fields."""
    if config_class is TrainConfig:
        return SweepSpec
    section = train_section(config_class)
    derived = create_model(f"SweepSpec{config_class.__name__}", __base__=SweepSpec, __module__=__name__,
                           train=(section, Field(default_factory=section)))
    derived.CONFIG = config_class
    return _picklable(derived)


# --------------------------------------------------------------------------------------------
# pydantic errors -> one line


def _bare(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    args = [arg for arg in get_args(tp) if arg is not type(None)]
    return args[0] if get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class found at ``loc`` below ``model`` (to list the keys it takes)."""
    tp: Any = model
    for part in loc:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = next((info for name, info in tp.model_fields.items() if part in (name, info.alias)), None)
            tp = _bare(info.annotation) if info else None
        elif get_origin(tp) is dict:
            tp = _bare(get_args(tp)[1])
        else:
            return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _keys(model: type[BaseModel] | None) -> str:
    return ", ".join(info.alias or name for name, info in model.model_fields.items()) if model else "none"


def _dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
    return text or "(top level)"


def _one_line(err: dict, source: str, spec_cls: type[SweepSpec]) -> SpecError:
    """``<source>: <field>: <what>``: pydantic's own message, with the keys a mapping takes
    where a key is unknown or missing, and the value given where it is a scalar."""
    exc = (err.get("ctx") or {}).get("error")
    loc = tuple(err["loc"]) + (exc.loc if isinstance(exc, _At) else ())
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        what = f"unknown key; allowed: {_keys(_model_at(spec_cls, loc[:-1]))}"
    elif err["type"] == "missing":
        what = "required but missing"
    else:
        what = err["msg"].removeprefix("Value error, ")
        if err["type"] != "value_error" and isinstance(value, (str, int, float, bool)):
            what += f" (got {value!r})"
    field = _dotted(loc)
    return SpecError(f"{source}: {field}: {what}", source=source, field=field)


# --------------------------------------------------------------------------------------------
# entry points


def spec_from_dict(data: Any, source: str = "<spec>", config_class: type[TrainConfig] = TrainConfig) -> SweepSpec:
    """Validate a mapping (as read from YAML) into a SweepSpec; errors become SpecError."""
    spec_cls = spec_class(config_class)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise SpecError(f"{source}: (top level): expected a mapping of spec fields, got {got}; "
                        f"allowed: a mapping with keys {_keys(spec_cls)}", source=source)
    try:
        return spec_cls.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc.errors(include_url=False)[0], source, spec_cls) from None


def parse_spec(text: str, source: str = "<string>", config_class: type[TrainConfig] = TrainConfig) -> SweepSpec:
    """Validate YAML text into a SweepSpec."""
    try:
        data = load_yaml(text, source)
    except YamlError as exc:
        where = re.match(rf"{re.escape(source)}: (line \d+)", str(exc))
        raise SpecError(str(exc), source=source, field=where.group(1) if where else "") from None
    return spec_from_dict(data, source, config_class)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file. A bare name (``retinamnist``) or a group's name
    (``paper/retinamnist``) finds a packaged spec."""
    source = str(path)
    try:
        resolved = expand_home(path)
    except ValueError as exc:
        raise SpecError(f"spec: {exc}", source=source) from None
    if not resolved.exists() and "\\" not in source and source.rpartition("/")[0] in ("", *SPEC_GROUPS):
        resolved = SPECS_DIR / (source if source.endswith((".yaml", ".yml")) else f"{source}.yaml")
    try:
        text = read_text_file(resolved)
    except FileNotFoundError:
        raise SpecError(f"{source}: (file): no such spec file; allowed: a path to a YAML spec, or one of "
                        f"{', '.join(list_specs() + [n for group in SPEC_GROUPS for n in list_specs(group)])}",
                        source=source) from None
    except YamlError as exc:
        raise SpecError(f"spec: {exc}", source=source) from None
    return parse_spec(text, source)


def list_specs(group: str = "") -> list[str]:
    """Names of the packaged specs: ``sweeps/specs/<name>.yaml``, or with a group (one of
    ``SPEC_GROUPS``) ``<group>/<name>`` for ``sweeps/specs/<group>/<name>.yaml``."""
    return sorted(f"{group}/{p.stem}" if group else p.stem for p in (SPECS_DIR / group).glob("*.yaml"))
