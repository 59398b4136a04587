"""Translate a SweepSpec's ``search`` section into what Ray Tune's searchers consume.

- ``optuna_define_by_run(spec)``: the define-by-run function for ``OptunaSearch(space=...)``
  (the optuna searcher; conditional entries are suggested only when their condition holds).
- ``tune_param_space(spec)``: ``ray.tune`` distributions for ``Tuner(param_space=...)`` with
  the random and grid searchers (Ray's BasicVariantGenerator).
- ``trial_config(spec, sampled)``: the full TrainConfig values of one trial.

Both translations yield a config holding exactly the searched keys: sampled values, and
for a conditional entry whose condition is false the fixed ``train`` value. The random
searcher's config also carries ``DRAWS_KEY`` (``"_draws"``), the raw draws that conditional
entries pick from; ``trial_config`` drops every key that starts with ``_``.

Optional builders for the launcher: ``optuna_sampler``, ``search_algorithm``,
``trial_scheduler``. Pass ``metric``/``mode`` to ``TuneConfig``; the scheduler is built
without them (Ray refuses a metric given both to TuneConfig and to the scheduler), the
OptunaSearch with them (Tune never hands them to a searcher that owns its space).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeps.spec import (
    Choice,
    Grid,
    IntRange,
    LogUniform,
    SEARCHABLE,
    SweepSpec,
    TrainSection,
    Uniform,
    evaluate_when,
    when_names,
)

if TYPE_CHECKING:  # pragma: no cover
    import optuna

__all__ = [
    "DRAWS_KEY",
    "DefineByRun",
    "optuna_define_by_run",
    "tune_param_space",
    "tune_domain",
    "trial_config",
    "optuna_sampler",
    "search_algorithm",
    "trial_scheduler",
]

DRAWS_KEY = "_draws"


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


def _suggest(trial: "optuna.trial.Trial", key: str, dist) -> Any:
    if isinstance(dist, Uniform):
        return trial.suggest_float(key, dist.low, dist.high)
    if isinstance(dist, LogUniform):
        return trial.suggest_float(key, dist.low, dist.high, log=True)
    if isinstance(dist, IntRange):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    if isinstance(dist, Choice):
        return trial.suggest_categorical(key, list(dist.values))
    raise ValueError(f"search.{key}: {dist.KIND} entries cannot be suggested by optuna; use the random or grid searcher")


def optuna_define_by_run(spec: SweepSpec) -> DefineByRun:
    """The define-by-run search space of ``spec`` for ``OptunaSearch(space=...)``."""
    for key, dist in spec.search.items():
        if isinstance(dist, Grid):
            raise ValueError(f"search.{key}: grid entries need the random or grid searcher, not optuna")
    return DefineByRun(spec)


# --------------------------------------------------------------------------------------------
# Ray Tune distributions (random / grid searcher)


def tune_domain(dist) -> Any:
    """The ``ray.tune`` distribution of one entry, ignoring its ``when``."""
    from ray import tune

    if isinstance(dist, Uniform):
        return tune.uniform(dist.low, dist.high)
    if isinstance(dist, LogUniform):
        return tune.loguniform(dist.low, dist.high)
    if isinstance(dist, IntRange):  # ours includes high, Ray's randint excludes it
        return tune.lograndint(dist.low, dist.high + 1) if dist.log else tune.randint(dist.low, dist.high + 1)
    if isinstance(dist, Choice):
        return tune.choice(list(dist.values))
    if isinstance(dist, Grid):
        return tune.grid_search(list(dist.values))
    raise TypeError(f"not a distribution: {dist!r}")


def _lookup(container: Any, name: str) -> Any:
    # Ray hands sample_from functions an access guard (a dict whose attribute access raises
    # RecursiveDependencyError while the value is still unresolved, so Ray retries later);
    # plain dicts are looked up by key.
    if type(container) is dict:
        return container[name]
    return getattr(container, name)


class Conditional:
    """``tune.sample_from`` body: the raw draw when the condition holds, else the default."""

    def __init__(self, key: str, when: str, default: Any):
        self.key = key
        self.when = when
        self.default = default
        self.names = when_names(when)

    def __call__(self, spec: Any) -> Any:
        config = _lookup(spec, "config") if "config" in spec else spec
        values = {name: _lookup(config, name) for name in self.names}
        if evaluate_when(self.when, values):
            return _lookup(_lookup(config, DRAWS_KEY), self.key)
        return self.default

    def __repr__(self) -> str:
        return f"Conditional({self.key!r} when {self.when!r})"


def tune_param_space(spec: SweepSpec) -> dict[str, Any]:
    """``Tuner(param_space=...)`` for the random and grid searchers.

    Unconditional entries map to ``tune.uniform``/``loguniform``/``randint``/``choice``/
    ``grid_search``; a conditional entry maps to ``tune.sample_from`` that reads the
    already-resolved config and picks its own draw (under ``DRAWS_KEY``) or the fixed value.
    """
    from ray import tune

    space: dict[str, Any] = {}
    draws: dict[str, Any] = {}
    for key, dist in spec.search.items():
        if dist.when is None:
            space[key] = tune_domain(dist)
        else:
            draws[key] = tune_domain(dist)
            space[key] = tune.sample_from(Conditional(key, dist.when, getattr(spec.train, key)))
    if draws:
        space[DRAWS_KEY] = draws
    return space


# --------------------------------------------------------------------------------------------
# one trial's TrainConfig values


def _plain(value: Any) -> Any:
    """numpy scalars (Ray's samplers) -> Python scalars, so pydantic and YAML accept them."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


def trial_config(spec: SweepSpec, sampled: dict[str, Any]) -> dict[str, Any]:
    """The values for ``TrainConfig`` of one trial: ``dataset``, the fixed ``train`` values,
    ``select_metric`` (the sweep's metric) and the sampled ones on top.

    Keys that start with ``_`` (``DRAWS_KEY``) are dropped; any other key that is not a
    TrainConfig field of the spec raises ValueError.
    """
    config: dict[str, Any] = {"dataset": spec.dataset}
    config.update(spec.train.model_dump(exclude_none=True))
    config["select_metric"] = spec.metric
    allowed = set(SEARCHABLE) | set(TrainSection.model_fields)
    for key, value in sampled.items():
        if key.startswith("_"):
            continue
        if key not in allowed:
            raise ValueError(f"trial config: {key!r} is not a TrainConfig field of the sweep; allowed: {', '.join(sorted(allowed))}")
        config[key] = _plain(value)
    return config


# --------------------------------------------------------------------------------------------
# optional builders for the launcher


def optuna_sampler(spec: SweepSpec):
    """TPE sampler seeded by ``searcher.seed`` (pass as ``OptunaSearch(sampler=...)``)."""
    import optuna

    kwargs: dict[str, Any] = {"seed": getattr(spec.searcher, "seed", None)}
    n_startup = getattr(spec.searcher, "n_startup_trials", None)
    if n_startup is not None:
        kwargs["n_startup_trials"] = n_startup
    return optuna.samplers.TPESampler(**kwargs)


def search_algorithm(spec: SweepSpec):
    """``TuneConfig(search_alg=...)``: OptunaSearch (define-by-run) or BasicVariantGenerator.

    With the optuna searcher give ``Tuner`` no ``param_space`` (the space lives in the
    searcher); with random/grid give it ``tune_param_space(spec)``. ``spec.max_concurrent``
    is applied here (ConcurrencyLimiter / BasicVariantGenerator's own limit): leave
    ``TuneConfig(max_concurrent_trials=...)`` unset.
    """
    if spec.searcher.type == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        # A define-by-run space makes Tune skip set_search_properties, so the searcher
        # needs metric and mode itself (giving them to TuneConfig as well is fine).
        searcher = OptunaSearch(
            space=optuna_define_by_run(spec), metric=spec.metric, mode=spec.mode, sampler=optuna_sampler(spec)
        )
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
    from ray.tune.search import BasicVariantGenerator

    # TuneConfig(max_concurrent_trials=...) is ignored for a BasicVariantGenerator: it
    # takes the limit itself.
    return BasicVariantGenerator(
        random_state=getattr(spec.searcher, "seed", None), max_concurrent=spec.max_concurrent
    )


def trial_scheduler(spec: SweepSpec):
    """``TuneConfig(scheduler=...)``: ASHA on training_iteration (one per epoch), or FIFO."""
    if spec.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=spec.scheduler.max_t,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()
