"""Translate a SweepSpec's ``search`` section into what Ray Tune's searchers consume.

- ``optuna_define_by_run(spec)``: the define-by-run function for ``OptunaSearch(space=...)``
  (the optuna searcher; conditional entries are suggested only when their condition holds).
- ``tune_param_space(spec)``: ``ray.tune`` distributions for ``Tuner(param_space=...)`` with
  the random and grid searchers (Ray's BasicVariantGenerator; no conditional entries).
- ``trial_config(spec, sampled)``: the full TrainConfig values of one trial, the one merge
  rule the launcher, the trainable and ``analysis.collect`` share. With ``repeats > 1`` Ray's
  Repeater adds ``TRIAL_INDEX`` to the sampled values: it becomes the seed (``train.seed`` +
  index) and never reaches TrainConfig. ``repeat_index`` reads it, ``configuration`` drops it
  (the values every repeat shares: with them ``trial_config`` gives the base seed) and
  ``configuration_id`` names the configuration.

Optional builders for the launcher: ``optuna_sampler``, ``search_algorithm``,
``trial_scheduler``. Pass ``metric``/``mode`` to ``TuneConfig``; the scheduler is built
without them (Ray refuses a metric given both to TuneConfig and to the scheduler) unless the
spec names another ``rung_metric`` (then it keeps its own and ignores Tune's), the
OptunaSearch with them (Tune never hands them to a searcher that owns its space). Importing
this module imports no Ray.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from medvit.config import build_config
from sweeps.ranking import SCORE
from sweeps.spec import Distribution, SweepSpec, evaluate_when

if TYPE_CHECKING:  # pragma: no cover
    import optuna

__all__ = [
    "DefineByRun",
    "optuna_define_by_run",
    "tune_param_space",
    "tune_domain",
    "trial_config",
    "TRIAL_INDEX",
    "repeat_index",
    "repeat_seed",
    "base_seed",
    "configuration",
    "configuration_id",
    "optuna_sampler",
    "search_algorithm",
    "trial_scheduler",
]


# --------------------------------------------------------------------------------------------
# Optuna (define-by-run)


class DefineByRun:
    """``OptunaSearch(space=DefineByRun(spec))``: suggests every searched hyperparameter.

    A class rather than a closure so that Ray can pickle the searcher when it checkpoints
    the experiment (``OptunaSearch.save`` uses plain pickle). Returns the fixed values of
    conditional entries whose condition is false (Ray merges them into the trial config),
    or None when every entry was suggested.
    """

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial: "optuna.trial.Trial") -> dict[str, Any] | None:
        values = self.spec.train.model_dump()
        constants: dict[str, Any] = {}
        for key, dist in self.spec.search.items():
            if dist.when is not None and not evaluate_when(dist.when, values):
                constants[key] = values[key]
                continue
            values[key] = _suggest(trial, key, dist)
        return constants or None

    def __repr__(self) -> str:
        return f"DefineByRun({self.spec.name!r})"


def _suggest(trial: "optuna.trial.Trial", key: str, dist: Distribution) -> Any:
    if dist.kind in ("uniform", "loguniform"):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.kind == "loguniform")
    if dist.kind == "int":
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    if dist.kind == "choice":
        return trial.suggest_categorical(key, list(dist.values))
    raise ValueError(f"search.{key}: {dist.kind} entries cannot be suggested by optuna; use the random or grid searcher")


def optuna_define_by_run(spec: SweepSpec) -> DefineByRun:
    """The define-by-run search space of ``spec`` for ``OptunaSearch(space=...)``."""
    for key, dist in spec.search.items():
        if dist.kind == "grid":
            raise ValueError(f"search.{key}: grid entries need the random or grid searcher, not optuna")
    return DefineByRun(spec)


# --------------------------------------------------------------------------------------------
# Ray Tune distributions (random / grid searcher)


def tune_domain(dist: Distribution) -> Any:
    """The ``ray.tune`` distribution of one entry."""
    from ray import tune

    if dist.kind == "uniform":
        return tune.uniform(dist.low, dist.high)
    if dist.kind == "loguniform":
        return tune.loguniform(dist.low, dist.high)
    if dist.kind == "int":  # ours includes high, Ray's randint excludes it
        return (tune.lograndint if dist.log else tune.randint)(dist.low, dist.high + 1)
    if dist.kind == "choice":
        return tune.choice(list(dist.values))
    return tune.grid_search(list(dist.values))


def tune_param_space(spec: SweepSpec) -> dict[str, Any]:
    """``Tuner(param_space=...)`` for the random and grid searchers (the spec refuses
    conditional entries with them)."""
    return {key: tune_domain(dist) for key, dist in spec.search.items()}


# --------------------------------------------------------------------------------------------
# one trial's TrainConfig values


def _plain(value: Any) -> Any:
    """numpy scalars (Ray's samplers) -> Python scalars, so pydantic and YAML accept them."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


# Ray's `ray.tune.search.repeater.TRIAL_INDEX` (spelled out here: this module imports no Ray):
# the key the Repeater adds to each repeat's config, 0 .. repeats - 1.
TRIAL_INDEX = "__trial_index__"


def repeat_index(sampled: dict[str, Any]) -> int | None:
    """The repeat a trial is of its configuration; None outside a sweep with repeats."""
    index = sampled.get(TRIAL_INDEX)
    return None if index is None else int(index)


def repeat_seed(base_seed: int, index: int | None) -> int:
    """The seed of a configuration's repeat ``index``: the spec's base seed plus the index
    (None, outside a sweep with repeats: the base seed)."""
    return base_seed + (index or 0)


def base_seed(seed: int, index: int | None) -> int:
    """The spec's base seed of a repeat that trained with ``seed``: :func:`repeat_seed` undone."""
    return seed - (index or 0)


def configuration(sampled: dict[str, Any]) -> dict[str, Any]:
    """The sampled values every repeat of a configuration shares (the repeat index left out)."""
    return {key: _plain(value) for key, value in sampled.items() if key != TRIAL_INDEX}


def configuration_id(sampled: dict[str, Any]) -> str | None:
    """A short name of the configuration a repeat belongs to, None outside a sweep with
    repeats. Every repeat gets the same name, whether the config comes from Ray (the
    launcher) or from the trial's params.json (``analysis.collect``)."""
    if repeat_index(sampled) is None:
        return None
    text = json.dumps(configuration(sampled), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def trial_config(spec: SweepSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """Every TrainConfig value of one trial (defaults filled in, ``None`` left out):
    ``dataset``, the fixed ``train`` values, ``select_metric`` (the sweep's metric) and the
    sampled ones on top; a repeat's seed is ``train.seed`` plus its repeat index (the spec
    refuses a searched seed with repeats). A key that is not a field:
    ``medvit.config.ConfigError``."""
    values = configuration(sampled)
    index = repeat_index(sampled)
    if index is not None:
        values["seed"] = repeat_seed(spec.train.seed, index)
    return build_config(spec.trial_values(values), spec.CONFIG).model_dump(exclude_none=True)


# --------------------------------------------------------------------------------------------
# optional builders for the launcher


def optuna_sampler(spec: SweepSpec):
    """TPE sampler seeded by ``searcher.seed`` (pass as ``OptunaSearch(sampler=...)``)."""
    import optuna

    kwargs: dict[str, Any] = {"seed": spec.searcher.seed}
    if spec.searcher.n_startup_trials is not None:
        kwargs["n_startup_trials"] = spec.searcher.n_startup_trials
    return optuna.samplers.TPESampler(**kwargs)


def search_algorithm(spec: SweepSpec):
    """``TuneConfig(search_alg=...)``: OptunaSearch (define-by-run) or BasicVariantGenerator.

    With the optuna searcher give ``Tuner`` no ``param_space`` (the space lives in the
    searcher); with random/grid give it ``tune_param_space(spec)``. ``spec.max_concurrent``
    is applied here (ConcurrencyLimiter / BasicVariantGenerator's own limit): leave
    ``TuneConfig(max_concurrent_trials=...)`` unset. With ``spec.repeats > 1`` Optuna sits
    inside Ray's Repeater: it proposes a configuration once, the Repeater starts it
    ``repeats`` times (``TRIAL_INDEX`` 0, 1, ...) and tells Optuna the mean of their last
    selection scores once all have ended.
    """
    if spec.searcher.type == "optuna":
        from ray.tune.search import ConcurrencyLimiter, Repeater
        from ray.tune.search.optuna import OptunaSearch

        # A define-by-run space makes Tune skip set_search_properties, so the searcher
        # needs metric and mode itself (giving them to TuneConfig as well is fine). It sees
        # the smoothed selection score, as ASHA does, not the raw noisy metric.
        searcher = OptunaSearch(
            space=optuna_define_by_run(spec), metric=SCORE, mode=spec.mode, sampler=optuna_sampler(spec)
        )
        if spec.repeats > 1:
            searcher = Repeater(searcher, repeat=spec.repeats, set_index=True)
        # Outside the Repeater, so that max_concurrent counts trials, not configurations.
        return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
    from ray.tune.search import BasicVariantGenerator

    # TuneConfig(max_concurrent_trials=...) is ignored for a BasicVariantGenerator: it
    # takes the limit itself.
    return BasicVariantGenerator(
        random_state=spec.searcher.seed, max_concurrent=spec.max_concurrent
    )


def trial_scheduler(spec: SweepSpec):
    """``TuneConfig(scheduler=...)``: ASHA on training_iteration (one per epoch), or FIFO.
    ASHA compares Tune's metric at each rung, or the spec's ``rung_metric`` when it names
    another (``sweeps.asha.RungMetricASHA``)."""
    if spec.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        halving = dict(time_attr="training_iteration", max_t=spec.train.epochs,
                       grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor)
        if spec.scheduler.rung_metric == SCORE:
            return ASHAScheduler(**halving)
        from sweeps.asha import RungMetricASHA

        return RungMetricASHA(metric=spec.scheduler.rung_metric, mode=spec.rung_mode, **halving)
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()
