"""Sweep specifications: one YAML file describes one hyperparameter sweep.

A spec names a dataset, the fixed training values every trial starts from (``train``),
the hyperparameters to search with their distributions (``search``), the searcher, the
trial scheduler, the budget, the resources of one trial, the metric and where results go.
``load_spec`` validates all of it before Ray starts; every problem becomes a ``SpecError``
whose message is one line::

    <file>: <dotted.field>: <what is wrong>; allowed: <what is allowed>

Distributions (one key per entry, plus an optional ``when`` condition)::

    lr:           {loguniform: [1.0e-4, 3.0e-3]}     # low > 0, low < high
    alpha:        {uniform: [0.0, 0.5]}
    batch_size:   {int: [32, 256], log: true}        # integers, both ends included
    augment:      {choice: [off, light, medium]}     # a bare list means the same: [off, light]
    seed:         {grid: [0, 1, 2]}                  # every value, with the random/grid searcher
    margin:       {loguniform: [0.01, 0.5], when: "alpha > 0"}

``when`` is a small expression over hyperparameters searched *earlier* in the file
(comparisons ``== != < <= > >= in``, combined with ``and``/``or``/``not``); when it is false
the trial uses the fixed value from ``train``.

The YAML reader follows YAML 1.2 for scalars: only ``true``/``false`` are booleans (so the
augmentation preset ``off`` stays a string) and ``1e-3`` is a number. Duplicate keys are
errors.
"""

from __future__ import annotations

import ast
import functools
import re
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = [
    "SpecError",
    "SweepSpec",
    "TrainSection",
    "Uniform",
    "LogUniform",
    "IntRange",
    "Choice",
    "Grid",
    "AshaScheduler",
    "FifoScheduler",
    "OptunaSearcher",
    "RandomSearcher",
    "GridSearcher",
    "Resources",
    "SmokeSection",
    "SEARCHABLE",
    "VALIDATION_METRICS",
    "SPECS_DIR",
    "load_spec",
    "parse_spec",
    "spec_from_dict",
    "list_specs",
    "evaluate_when",
    "when_names",
]

SPECS_DIR = Path(__file__).resolve().parent / "specs"

# validation metric -> the direction that is better
VALIDATION_METRICS: dict[str, Literal["max", "min"]] = {
    "val_acc": "max",
    "val_auc": "max",
    "val_qwk": "max",
    "val_mae": "min",
    "val_loss": "min",
}
ORDINAL_METRICS = ("val_qwk", "val_mae")
ORDINAL_TASK = "ordinal-regression"

# hyperparameter -> the distribution kinds that make sense for it
_FLOAT_KINDS = ("uniform", "loguniform", "choice", "grid")
_INT_KINDS = ("int", "choice", "grid")
_NAME_KINDS = ("choice", "grid")
# img_size is not searchable: a sweep puts one file of one size into the object store.
SEARCHABLE: dict[str, tuple[str, ...]] = {
    "model": _NAME_KINDS,
    "augment": _NAME_KINDS,
    "lr": _FLOAT_KINDS,
    "weight_decay": _FLOAT_KINDS,
    "alpha": _FLOAT_KINDS,
    "margin": _FLOAT_KINDS,
    "batch_size": _INT_KINDS,
    "seed": _INT_KINDS,
}
SearchKey = Literal[
    "model", "augment", "lr", "weight_decay", "alpha", "margin", "batch_size", "seed"
]
assert set(get_args(SearchKey)) == set(SEARCHABLE)

STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")


# --------------------------------------------------------------------------------------------
# known names, looked up lazily so that importing this module imports nothing heavy


@functools.cache
def _datasets() -> tuple[str, ...]:
    from medvit.data import DATASETS

    return tuple(DATASETS)


@functools.cache
def _models() -> tuple[str, ...]:
    from medvit.models import list_models

    return tuple(list_models())


@functools.cache
def _augments() -> tuple[str, ...]:
    from medvit.augment import AUGMENT_PRESETS

    return tuple(AUGMENT_PRESETS)


@functools.cache
def _sizes() -> tuple[int, ...]:
    from medvit.data import SIZES

    return tuple(SIZES)


@functools.cache
def _task(dataset: str) -> str:
    import medmnist

    return medmnist.INFO[dataset]["task"]


_NAME_SOURCES = {"dataset": _datasets, "model": _models, "augment": _augments, "size": _sizes}


# --------------------------------------------------------------------------------------------
# errors


class SpecError(ValueError):
    """A sweep spec is invalid; ``str(error)`` is one line naming the file and the field."""

    def __init__(self, message: str, *, source: str = "", field: str = ""):
        super().__init__(" ".join(message.split()))
        self.source = source
        self.field = field


class _Bad(ValueError):
    """Raised inside validators: a problem at ``loc`` (relative to the validated object)."""

    def __init__(self, loc: tuple, what: str, allowed: str):
        super().__init__(f"{what}; allowed: {allowed}")
        self.loc = tuple(loc)
        self.what = what
        self.allowed = allowed


class _Names:
    """Annotation marker: the value must be one of the names ``_NAME_SOURCES[kind]()``."""

    def __init__(self, kind: str, noun: str):
        self.kind = kind
        self.noun = noun

    def values(self) -> tuple:
        return _NAME_SOURCES[self.kind]()

    def check(self, value: Any) -> Any:
        if value not in self.values():
            raise _Bad((), f"unknown {self.noun} {value!r}", ", ".join(map(str, self.values())))
        return value


def _named(tp: Any, kind: str, noun: str) -> Any:
    marker = _Names(kind, noun)
    return Annotated[tp, marker, AfterValidator(marker.check)]


DatasetName = _named(str, "dataset", "dataset")
ModelName = _named(str, "model", "model preset")
AugmentName = _named(str, "augment", "augmentation preset")
ImgSize = _named(int, "size", "image size")
SweepName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# --------------------------------------------------------------------------------------------
# the fixed training values


class TrainSection(_Strict):
    """Fixed TrainConfig values shared by every trial (searched ones override them)."""

    model: ModelName = "medvit_28_small"
    epochs: Annotated[int, Field(ge=1)] = 50
    batch_size: Annotated[int, Field(ge=1)] = 128
    img_size: ImgSize = 28
    lr: Annotated[float, Field(gt=0)] = 1.0e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    augment: AugmentName = "light"
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.0
    margin: Annotated[float, Field(ge=0)] = 0.1
    seed: Annotated[int, Field(ge=0)] = 0
    subset: Annotated[int, Field(ge=1)] | None = None
    data_root: Annotated[str, Field(min_length=1)] | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None


@functools.cache
def _value_adapter(field: str) -> TypeAdapter:
    """Validates one candidate value of a searched hyperparameter like ``train.<field>``."""
    info = TrainSection.model_fields[field]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)], config=ConfigDict(strict=True))


# --------------------------------------------------------------------------------------------
# distributions

Range = Annotated[list[float], Field(min_length=2, max_length=2)]
IntPair = Annotated[list[int], Field(min_length=2, max_length=2)]
Values = Annotated[list[Any], Field(min_length=1)]


class _Dist(_Strict):
    KIND: ClassVar[str]
    TAG: ClassVar[str]
    when: Annotated[str, Field(min_length=1)] | None = None


class _RangeDist(_Dist):
    @property
    def low(self):
        return getattr(self, self._field())[0]

    @property
    def high(self):
        return getattr(self, self._field())[1]

    @classmethod
    def _field(cls) -> str:
        return "int_" if cls.KIND == "int" else cls.KIND

    @model_validator(mode="after")
    def _ordered(self):
        low, high = self.low, self.high
        if not low < high:
            raise _Bad((self.KIND,), f"low {low} must be below high {high}", "[low, high] with low < high")
        return self


class Uniform(_RangeDist):
    KIND: ClassVar[str] = "uniform"
    TAG: ClassVar[str] = "uniform"
    uniform: Range


class LogUniform(_RangeDist):
    KIND: ClassVar[str] = "loguniform"
    TAG: ClassVar[str] = "loguniform"
    loguniform: Range

    @model_validator(mode="after")
    def _positive(self):
        if self.low <= 0:
            raise _Bad(("loguniform",), f"low {self.low} is not positive", "0 < low < high")
        return self


class IntRange(_RangeDist):
    """Integers from low to high, both included; ``log: true`` samples on a log scale."""

    KIND: ClassVar[str] = "int"
    TAG: ClassVar[str] = "int"
    int_: IntPair = Field(alias="int")
    log: bool = False

    @model_validator(mode="after")
    def _positive_if_log(self):
        if self.log and self.low <= 0:
            raise _Bad(("int",), f"low {self.low} is not positive with log: true", "1 <= low < high")
        return self


class _ListDist(_Dist):
    @property
    def values(self) -> list:
        return getattr(self, self.KIND)

    @model_validator(mode="after")
    def _distinct(self):
        seen: list = []
        for i, value in enumerate(self.values):
            if any(type(s) is type(value) and s == value for s in seen):
                raise _Bad((self.KIND, i), f"duplicate value {value!r}", "distinct values")
            seen.append(value)
        return self


class Choice(_ListDist):
    KIND: ClassVar[str] = "choice"
    TAG: ClassVar[str] = "choice"
    choice: Values


class Grid(_ListDist):
    KIND: ClassVar[str] = "grid"
    TAG: ClassVar[str] = "grid"
    grid: Values

    @model_validator(mode="after")
    def _unconditional(self):
        if self.when is not None:
            raise _Bad(("when",), "a grid entry cannot be conditional", "when on uniform, loguniform, int, choice")
        return self


DIST_KINDS = ("uniform", "loguniform", "int", "choice", "grid")
_DIST_CLASSES: dict[str, type[_Dist]] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "int": IntRange,
    "choice": Choice,
    "grid": Grid,
}
_DIST_SYNTAX = (
    "{uniform: [low, high]}, {loguniform: [low, high]}, {int: [low, high]}, "
    "{choice: [a, b, ...]} (or a bare list), {grid: [a, b, ...]}; each may add when: '<condition>'"
)


def _dist_kind(value: Any) -> str | None:
    if isinstance(value, _Dist):
        return value.KIND
    if isinstance(value, dict):
        kinds = [kind for kind in DIST_KINDS if kind in value]
        if len(kinds) == 1:
            return kinds[0]
    return None


def _bare_list_is_choice(value: Any) -> Any:
    return {"choice": value} if isinstance(value, list) else value


Distribution = Annotated[
    Union[
        Annotated[Uniform, Tag("uniform")],
        Annotated[LogUniform, Tag("loguniform")],
        Annotated[IntRange, Tag("int")],
        Annotated[Choice, Tag("choice")],
        Annotated[Grid, Tag("grid")],
    ],
    Discriminator(
        _dist_kind,
        custom_error_type="distribution",
        custom_error_message="not a distribution",
    ),
    BeforeValidator(_bare_list_is_choice),
]


# --------------------------------------------------------------------------------------------
# searcher, scheduler, resources, smoke


class OptunaSearcher(_Strict):
    """Optuna's TPE sampler (define-by-run, so conditional entries work)."""

    TAG: ClassVar[str] = "optuna"
    type: Literal["optuna"]
    seed: Annotated[int, Field(ge=0)] | None = 0
    n_startup_trials: Annotated[int, Field(ge=1)] | None = None


class RandomSearcher(_Strict):
    """Ray Tune's random/grid variant generator: samples every entry, expands grids."""

    TAG: ClassVar[str] = "random"
    type: Literal["random"]
    seed: Annotated[int, Field(ge=0)] | None = 0


class GridSearcher(_Strict):
    """Every combination of the grid entries (times num_samples)."""

    TAG: ClassVar[str] = "grid"
    type: Literal["grid"]
    seed: Annotated[int, Field(ge=0)] | None = 0  # Ray's random_state; unused by pure grids


Searcher = Annotated[Union[OptunaSearcher, RandomSearcher, GridSearcher], Field(discriminator="type")]


class AshaScheduler(_Strict):
    """Asynchronous successive halving on ``training_iteration`` (one iteration = one epoch)."""

    TAG: ClassVar[str] = "asha"
    type: Literal["asha"]
    max_t: Annotated[int, Field(ge=1)] | None = None  # None: train.epochs
    grace_period: Annotated[int, Field(ge=1)] = 5
    reduction_factor: Annotated[int, Field(ge=2)] = 3

    @model_validator(mode="after")
    def _grace_fits(self):
        if self.max_t is not None and self.grace_period > self.max_t:
            raise _Bad(
                ("grace_period",),
                f"grace_period {self.grace_period} exceeds max_t {self.max_t}",
                f"1 <= grace_period <= max_t ({self.max_t})",
            )
        return self


class FifoScheduler(_Strict):
    """No early stopping: every trial runs all its epochs."""

    TAG: ClassVar[str] = "fifo"
    type: Literal["fifo"]


Scheduler = Annotated[Union[AshaScheduler, FifoScheduler], Field(discriminator="type")]


class Resources(_Strict):
    """Resources of one trial; ``gpu`` may be a fraction (0.25: four trials share a GPU)."""

    cpu: Annotated[float, Field(gt=0)] = 1
    gpu: Annotated[float, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _whole_gpus_above_one(self):
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise _Bad(("gpu",), f"{self.gpu} GPUs is neither a fraction of one nor whole", "0 <= gpu <= 1, or a whole number")
        return self


class SmokeSection(_Strict):
    """Overrides for ``--smoke``: a tiny version of the sweep that checks the plumbing."""

    epochs: Annotated[int, Field(ge=1)] = 2
    num_samples: Annotated[int, Field(ge=1)] | None = None  # None: 2 (1 with the grid searcher)
    batch_size: Annotated[int, Field(ge=1)] = 32
    grace_period: Annotated[int, Field(ge=1)] = 1
    subset: Annotated[int, Field(ge=1)] | None = 256
    grid_values: Annotated[int, Field(ge=1)] = 2  # keep the first N values of each grid entry
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    resources: Resources = Field(default_factory=lambda: Resources(cpu=1, gpu=0))


# --------------------------------------------------------------------------------------------
# conditions (`when`)

_COMPARE_OPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_WHEN_SYNTAX = "comparisons of earlier searched hyperparameters with constants (== != < <= > >= in), joined by and/or/not"


@functools.lru_cache(maxsize=256)
def _parse_when(expr: str) -> ast.Expression:
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse {expr!r}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Name, ast.Load)):
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            continue
        if isinstance(node, (ast.Not, ast.USub)) or type(node) in _COMPARE_OPS:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            continue
        if isinstance(node, (ast.List, ast.Tuple)):
            continue
        raise ValueError(f"{expr!r} uses {type(node).__name__}, which a condition may not")
    return tree


def when_names(expr: str) -> list[str]:
    """The hyperparameter names a condition refers to, in order of appearance."""
    names: list[str] = []
    for node in ast.walk(_parse_when(expr)):
        if isinstance(node, ast.Name) and node.id not in names and node.id not in ("true", "false"):
            names.append(node.id)
    return names


def evaluate_when(expr: str, values: dict[str, Any]) -> bool:
    """Evaluate a ``when`` condition against the hyperparameter values chosen so far."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(ev(v) for v in node.values)
            return any(ev(v) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            return (not ev(node.operand)) if isinstance(node.op, ast.Not) else -ev(node.operand)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                if not _COMPARE_OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Name):
            if node.id in ("true", "false"):
                return node.id == "true"
            return values[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    return bool(ev(_parse_when(expr)))


def _probe_values(dist: _Dist) -> list:
    if isinstance(dist, _ListDist):
        return list(dist.values)
    return [dist.low, dist.high]


# --------------------------------------------------------------------------------------------
# the spec


class SweepSpec(_Strict):
    """One sweep: validated once, read by the launcher, the trainable and the CLI."""

    name: SweepName
    dataset: DatasetName
    description: str | None = None
    train: TrainSection = Field(default_factory=TrainSection)
    search: Annotated[dict[SearchKey, Distribution], Field(min_length=1)]
    searcher: Searcher = Field(default_factory=lambda: OptunaSearcher(type="optuna"))
    scheduler: Scheduler = Field(default_factory=lambda: AshaScheduler(type="asha"))
    num_samples: Annotated[int, Field(ge=1)] = 32
    max_concurrent: Annotated[int, Field(ge=1)] = 4
    resources: Resources = Field(default_factory=Resources)
    metric: Literal["val_acc", "val_auc", "val_qwk", "val_mae", "val_loss"] = "val_acc"
    mode: Literal["max", "min"] | None = None  # None: the metric's own direction
    storage: Annotated[str, Field(min_length=1)] = "~/medsweep-results"
    smoke: SmokeSection | None = None

    # ---------------------------------------------------------------- cross-field checks

    @model_validator(mode="after")
    def _consistent(self):
        self._check_search()
        self._check_task()
        self._check_metric()
        self._check_scheduler()
        self._check_storage()
        return self

    def _check_search(self) -> None:
        searcher = self.searcher.type
        earlier: list[str] = []
        for key, dist in self.search.items():
            here = ("search", key)
            # the union tag first (the location walker drops it), then the field name
            at = ("search", key, dist.TAG, dist.KIND if dist.KIND != "int" else "int")
            allowed_kinds = SEARCHABLE[key]
            if dist.KIND not in allowed_kinds:
                raise _Bad(here, f"a {dist.KIND} distribution does not fit {key}", ", ".join(allowed_kinds))
            if dist.KIND == "grid" and searcher == "optuna":
                raise _Bad(
                    at,
                    "grid entries need the random or grid searcher, not optuna",
                    "uniform, loguniform, int, choice with optuna; or searcher: {type: random} / {type: grid}",
                )
            if searcher == "grid" and dist.KIND != "grid":
                raise _Bad(
                    at,
                    f"the grid searcher expands grid entries only, not {dist.KIND}",
                    "{grid: [...]} entries with searcher grid; or searcher: {type: random} to mix",
                )
            adapter = _value_adapter(key)
            if isinstance(dist, _ListDist):
                checked = []
                for i, value in enumerate(dist.values):
                    checked.append(self._candidate(adapter, value, at + (i,), key))
                setattr(dist, dist.KIND, checked)
            else:
                for i, value in enumerate((dist.low, dist.high)):
                    self._candidate(adapter, value, at + (i,), key)
            if dist.when is not None:
                self._check_when(key, dist, earlier)
            earlier.append(key)

    @staticmethod
    def _candidate(adapter: TypeAdapter, value: Any, loc: tuple, key: str) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            what, allowed = _what_allowed(err, TrainSection.model_fields[key].annotation, TrainSection.model_fields[key].metadata)
            raise _Bad(loc, what, allowed) from None

    def _check_when(self, key: str, dist: _Dist, earlier: list[str]) -> None:
        loc = ("search", key, "when")
        try:
            names = when_names(dist.when)
        except ValueError as exc:
            raise _Bad(loc, str(exc), _WHEN_SYNTAX) from None
        allowed_names = ", ".join(earlier) or "(none: no hyperparameter is searched before this one)"
        for name in names:
            if name not in self.search:
                raise _Bad(loc, f"{name!r} is not a searched hyperparameter", f"earlier searched ones: {allowed_names}")
            if name not in earlier:
                raise _Bad(loc, f"{name!r} is searched after {key!r}", f"earlier searched ones: {allowed_names}")
        # the condition must be computable for every value its inputs can take
        probes = {name: _probe_values(self.search[name]) for name in names}
        fixed = self.train.model_dump()
        for name in names:
            for value in probes[name]:
                values = {**fixed, **{n: probes[n][0] for n in names}, name: value}
                try:
                    evaluate_when(dist.when, values)
                except TypeError as exc:
                    raise _Bad(loc, f"cannot evaluate {dist.when!r} for {name}={value!r} ({exc})", _WHEN_SYNTAX) from None

    def _check_task(self) -> None:
        if self.is_ordinal:
            return
        for key in ("alpha", "margin"):
            if key in self.search:
                raise _Bad(
                    ("search", key),
                    f"the Ordinal Loss {key} is searched, but {self.dataset} is {self.task}",
                    "alpha/margin searches on ordinal-regression datasets only (retinamnist)",
                )
        if self.train.alpha > 0:
            raise _Bad(
                ("train", "alpha"),
                f"alpha {self.train.alpha} > 0 needs an ordinal-regression dataset; {self.dataset} is {self.task}",
                "0 for this dataset",
            )

    def _check_metric(self) -> None:
        if self.metric in ORDINAL_METRICS and not self.is_ordinal:
            others = [m for m in VALIDATION_METRICS if m not in ORDINAL_METRICS]
            raise _Bad(("metric",), f"{self.metric} exists for ordinal-regression datasets only; {self.dataset} is {self.task}", ", ".join(others))
        natural = VALIDATION_METRICS[self.metric]
        if self.mode is None:
            self.mode = natural
        elif self.mode != natural:
            better = "higher" if natural == "max" else "lower"
            raise _Bad(("mode",), f"mode {self.mode} does not fit {self.metric} ({better} is better)", natural)

    def _check_scheduler(self) -> None:
        sched = self.scheduler
        if not isinstance(sched, AshaScheduler):
            return
        epochs = self.train.epochs
        if sched.max_t is None:
            sched.max_t = epochs
        elif sched.max_t != epochs:
            raise _Bad(
                ("scheduler", "max_t"),
                f"max_t {sched.max_t} differs from train.epochs {epochs}",
                f"max_t equal to train.epochs ({epochs}), or left out",
            )
        if sched.grace_period > sched.max_t:
            raise _Bad(
                ("scheduler", "grace_period"),
                f"grace_period {sched.grace_period} exceeds max_t {sched.max_t}",
                f"1 <= grace_period <= max_t ({sched.max_t})",
            )

    def _check_storage(self) -> None:
        value = self.storage.strip()
        if not value:
            raise _Bad(("storage",), "empty", "a local or NFS path, or an s3:// / gs:// URI")
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", value)
        if match:
            scheme, rest = match.group(1).lower(), match.group(2)
            if scheme not in STORAGE_SCHEMES:
                raise _Bad(("storage",), f"unsupported scheme {scheme}://", ", ".join(f"{s}://" for s in STORAGE_SCHEMES) + ", or a path")
            if not rest.strip("/"):
                raise _Bad(("storage",), f"{value!r} names no bucket or path", f"{scheme}://<bucket>/<prefix>")
        self.storage = value

    # ---------------------------------------------------------------- derived values

    @property
    def task(self) -> str:
        """medmnist's task string of the dataset (``"ordinal-regression"`` for retinamnist)."""
        return _task(self.dataset)

    @property
    def is_ordinal(self) -> bool:
        return self.task == ORDINAL_TASK

    @property
    def searched(self) -> list[str]:
        return list(self.search)

    @property
    def storage_path(self) -> str:
        """``storage`` as Ray's ``RunConfig(storage_path=...)`` wants it: URIs unchanged,
        local paths with ``~`` expanded and made absolute."""
        if "://" in self.storage:
            return self.storage
        return str(Path(self.storage).expanduser().resolve())

    @property
    def grid_size(self) -> int:
        """Number of combinations of the grid entries (1 without grids)."""
        size = 1
        for dist in self.search.values():
            if isinstance(dist, Grid):
                size *= len(dist.values)
        return size

    @property
    def total_trials(self) -> int:
        """Trials the sweep starts: num_samples times the grid size (Ray's rule)."""
        return self.num_samples * self.grid_size

    # ---------------------------------------------------------------- variants

    def to_dict(self) -> dict:
        """Plain data (the YAML form): distributions as ``{kind: values, when: ...}``."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key, entry in data["search"].items():
            kind = self.search[key].KIND
            ordered = {kind: entry.pop(kind)}
            if entry.get("log") is False:
                entry.pop("log")
            data["search"][key] = {**ordered, **entry}
        return data

    def to_yaml(self) -> str:
        """YAML that ``parse_spec`` reads back into an equal spec."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, width=100)

    def _revalidate(self, data: dict, source: str) -> "SweepSpec":
        return spec_from_dict(data, source=source)

    def with_overrides(
        self, num_samples: int | None = None, storage: str | None = None, name: str | None = None
    ) -> "SweepSpec":
        """A copy with command-line overrides applied (None keeps the spec's value), validated."""
        data = self.to_dict()
        if num_samples is not None:
            data["num_samples"] = num_samples
        if storage is not None:
            data["storage"] = storage
        if name is not None:
            data["name"] = name
        return self._revalidate(data, f"{self.name} (overrides)")

    def smoke_variant(self) -> "SweepSpec":
        """A tiny copy of this sweep that checks the plumbing in minutes.

        ``smoke.epochs`` epochs (2), ASHA max_t = epochs and grace 1, ``smoke.num_samples``
        trials (2; 1 with the grid searcher), batch size at most ``smoke.batch_size`` (32),
        ``smoke.subset`` images per split (256), the first ``smoke.grid_values`` values of
        each grid entry (2), ``smoke.resources`` (1 CPU, no GPU); the searched choices
        (model presets included) stay as given. The name gains ``-smoke`` so that results
        never mix with the real sweep's.
        """
        smoke = self.smoke or SmokeSection()
        data = self.to_dict()
        data["name"] = f"{self.name}-smoke"[:100]
        train = data["train"]
        train["epochs"] = smoke.epochs
        train["batch_size"] = min(self.train.batch_size, smoke.batch_size)
        if smoke.subset is not None:
            train["subset"] = smoke.subset
        if data["scheduler"]["type"] == "asha":
            data["scheduler"]["max_t"] = smoke.epochs
            data["scheduler"]["grace_period"] = min(smoke.grace_period, smoke.epochs)
        for entry in data["search"].values():
            if "grid" in entry:
                entry["grid"] = entry["grid"][: smoke.grid_values]
        if smoke.num_samples is not None:
            data["num_samples"] = smoke.num_samples
        else:
            data["num_samples"] = 1 if self.searcher.type == "grid" else 2
        if smoke.max_concurrent is not None:
            data["max_concurrent"] = smoke.max_concurrent
        data["resources"] = smoke.resources.model_dump()
        return self._revalidate(data, f"{self.name} (smoke)")


# --------------------------------------------------------------------------------------------
# pydantic errors -> one line (the only place where that happens)


def _unwrap(tp: Any) -> tuple[Any, list]:
    """Strip Annotated and Optional; return the bare type and the collected metadata."""
    metadata: list = []
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            args = get_args(tp)
            tp, metadata = args[0], metadata + list(args[1:])
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, metadata


def _union_members(tp: Any) -> list:
    return [_unwrap(a)[0] for a in get_args(tp) if a is not type(None)]


def _field_by_key(model: type[BaseModel], key: Any):
    for name, info in model.model_fields.items():
        if key == name or key == info.alias:
            return info
    return None


def _walk(loc: tuple) -> tuple[list, Any, list, Any]:
    """Follow a pydantic location through the SweepSpec schema.

    Returns the location without union tags, the type at the location, its metadata and the
    model that holds the last element (for unknown keys).
    """
    tp: Any = SweepSpec
    metadata: list = []
    parts: list = []
    parent: Any = None
    for part in loc:
        tp, meta = _unwrap(tp) if tp is not None else (None, [])
        metadata = meta
        if get_origin(tp) in (Union, types.UnionType):
            members = _union_members(tp)
            tagged = [m for m in members if getattr(m, "TAG", None) == part]
            if tagged:
                tp = tagged[0]
                continue
            holders = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel) and _field_by_key(m, part)]
            tp = holders[0] if holders else None
            tp, metadata = _unwrap(tp) if tp is not None else (None, [])
        parts.append(part)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            parent = tp
            info = _field_by_key(tp, part)
            tp, metadata = (info.annotation, list(info.metadata)) if info else (None, [])
        elif get_origin(tp) is dict:
            parent = None
            tp, metadata = get_args(tp)[1], []
        elif get_origin(tp) is list:
            parent = None
            tp, metadata = get_args(tp)[0], []
        else:
            parent, tp, metadata = None, None, []
    if tp is not None:
        tp, more = _unwrap(tp)
        metadata = metadata + more
    return parts, tp, metadata, parent


def _keys_of(model: type[BaseModel]) -> str:
    return ", ".join(info.alias or name for name, info in model.model_fields.items())


def _describe(tp: Any, metadata: list = ()) -> str:
    tp, more = _unwrap(tp) if tp is not None else (None, [])
    metadata = list(metadata) + more
    for m in metadata:
        if isinstance(m, _Names):
            return ", ".join(map(str, m.values()))
    bounds = []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            bounds.append(f">= {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            bounds.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            bounds.append(f"<= {m.le}")
        elif isinstance(m, annotated_types.Lt):
            bounds.append(f"< {m.lt}")
    bound_text = (" " + " and ".join(bounds)) if bounds else ""
    origin = get_origin(tp)
    if origin is Literal:
        return ", ".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        members = _union_members(tp)
        tags = [getattr(m, "TAG", None) for m in members]
        if all(tags) and set(tags) <= set(DIST_KINDS):
            return _DIST_SYNTAX
        if all(tags):
            return "a mapping with type: " + " | ".join(tags)
        return " or ".join(_describe(m) for m in members)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer" + bound_text
    if tp is float:
        return "a number" + bound_text
    if tp is str:
        return "a string"
    if origin is list:
        lengths = [m for m in metadata if isinstance(m, (annotated_types.MinLen, annotated_types.MaxLen))]
        item = _describe(get_args(tp)[0]) if get_args(tp) and get_args(tp)[0] is not Any else "values"
        if len(lengths) == 2 and all(getattr(m, "min_length", getattr(m, "max_length", None)) == 2 for m in lengths):
            return f"a list [low, high] of {item.removeprefix('a ').removeprefix('an ')}s"
        return "a non-empty list" if lengths else "a list"
    if origin is dict:
        keys = get_args(tp)[0] if get_args(tp) else None
        if get_origin(keys) is Literal:
            return "a mapping hyperparameter -> distribution with at least one of " + ", ".join(get_args(keys))
        return "a mapping"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"a mapping with keys {_keys_of(tp)}"
    return "see the spec format in sweeps/spec.py"


_TYPE_ERRORS = {
    "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "string_type",
    "bool_type", "bool_parsing", "list_type", "tuple_type", "dict_type", "model_type",
    "model_attributes_type", "is_instance_of", "none_required",
}


def _what_allowed(err: dict, tp: Any, metadata: list) -> tuple[str, str]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    exc = ctx.get("error")
    if isinstance(exc, _Bad):
        return exc.what, exc.allowed
    if kind == "missing":
        return "required but missing", _describe(tp, metadata)
    if kind in _TYPE_ERRORS:
        if isinstance(value, dict):
            shown = "a mapping"
        elif isinstance(value, list):
            shown = "a list"
        else:
            shown = f"{type(value).__name__} {value!r}"
        return f"wrong type: got {shown}", _describe(tp, metadata)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{value!r} is out of range", _describe(tp, metadata)
    if kind == "literal_error":
        return f"{value!r} is not allowed", str(ctx.get("expected", _describe(tp, metadata))).replace("'", "")
    if kind in ("too_short", "too_long"):
        if isinstance(value, dict) and not value:
            return "is empty", _describe(tp, metadata)
        return f"has {ctx.get('actual_length')} items", _describe(tp, metadata)
    if kind == "string_too_short":
        return "empty", "a non-empty string"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid name", "letters, digits, - and _ (starting with a letter or digit)"
    if kind == "distribution":
        if isinstance(value, dict):
            kinds = [k for k in DIST_KINDS if k in value]
            if kinds:
                return f"names several distributions ({', '.join(kinds)})", "exactly one of " + _DIST_SYNTAX
            return f"names no distribution (keys: {', '.join(map(str, value))})", _DIST_SYNTAX
        return f"{value!r} is not a distribution (fixed values belong in train)", _DIST_SYNTAX
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"unknown type {ctx.get('tag', '')!r}".replace(" ''", ""), str(ctx.get("expected_tags", "")).replace("'", "")
    message = err.get("msg", kind).removeprefix("Value error, ")
    return message, _describe(tp, metadata)


def _dotted(parts: list) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _one_line(err: dict, source: str) -> SpecError:
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    exc = ctx.get("error")
    if isinstance(exc, _Bad):
        loc = loc + exc.loc
    key_error = bool(loc) and loc[-1] == "[key]"
    if key_error:
        loc = loc[:-1]
    parts, tp, metadata, parent = _walk(loc)
    if key_error and err["type"] == "literal_error":
        what, allowed = f"{parts[-1]!r} cannot be searched", ", ".join(SEARCHABLE)
    elif err["type"] == "extra_forbidden":
        _, _, _, holder = _walk(loc)
        if holder is None:
            holder = _walk(loc[:-1])[1]
        keys = _keys_of(holder) if isinstance(holder, type) and issubclass(holder, BaseModel) else "see the spec format"
        what, allowed = "unknown key", keys
    else:
        what, allowed = _what_allowed(err, tp, metadata)
    field = _dotted(parts)
    return SpecError(f"{source}: {field}: {what}; allowed: {allowed}", source=source, field=field)


# --------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats, and errors for duplicate keys."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Dumper(yaml.SafeDumper):
    """Quotes strings that YAML 1.1 readers would take for booleans (``off``); writes lists
    and small mappings of scalars inline, larger mappings as blocks."""


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    inline = len(data) <= 4 and all(
        _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v)) for v in data.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=inline)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(_is_scalar(x) for x in data))


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "(yaml)"
        column = f" (column {mark.column + 1})" if mark else ""
        problem = exc.problem or exc.context or "unreadable"
        raise SpecError(
            f"{source}: {where}: YAML syntax error: {problem}{column}; allowed: valid YAML (a mapping of spec fields)",
            source=source,
            field=where,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: (yaml): YAML error: {exc}; allowed: valid YAML", source=source) from None


# --------------------------------------------------------------------------------------------
# entry points


def spec_from_dict(data: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a mapping (as read from YAML) into a SweepSpec; errors become SpecError."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"{type(data).__name__}"
        raise SpecError(
            f"{source}: (top level): expected a mapping of spec fields, got {got}; allowed: a mapping with keys {_keys_of(SweepSpec)}",
            source=source,
        )
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc.errors(include_url=False)[0], source) from None


def parse_spec(text: str, source: str = "<string>") -> SweepSpec:
    """Validate YAML text into a SweepSpec."""
    return spec_from_dict(_read_yaml(text, source), source)


def _resolve_path(path: str | Path) -> Path:
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    text = str(path)
    if "/" not in text and "\\" not in text:
        packaged = SPECS_DIR / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
        if packaged.exists():
            return packaged
    return candidate


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file. A bare name (``retinamnist``) finds a packaged spec."""
    resolved = _resolve_path(path)
    source = str(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(list_specs())
        raise SpecError(f"{source}: (file): no such spec file; allowed: a path to a YAML spec, or one of {names}", source=source) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: (file): cannot read ({type(exc).__name__}); allowed: a readable UTF-8 YAML file", source=source) from None
    return parse_spec(text, source)


def list_specs() -> list[str]:
    """Names of the packaged specs (``sweeps/specs/<name>.yaml``)."""
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))

