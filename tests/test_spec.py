"""Sweep specs: the packaged files, the one-line errors, round trips, smoke variants and the
translation of search spaces for Optuna (define-by-run) and Ray Tune (random/grid)."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from medvit.augment import AUGMENT_PRESETS

from medvit.config import ConfigError, TrainConfig
from medvit.yamlio import load_yaml
from sweeps.ranking import SCORE
from sweeps.space import (
    TRIAL_INDEX,
    configuration,
    configuration_id,
    optuna_define_by_run,
    optuna_sampler,
    repeat_index,
    search_algorithm,
    trial_config,
    trial_scheduler,
    tune_domain,
    tune_param_space,
)
from sweeps.spec import (
    SPECS_DIR,
    SpecError,
    SweepSpec,
    evaluate_when,
    list_specs,
    load_spec,
    parse_spec,
    spec_from_dict,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DATASETS = (
    "pathmnist chestmnist dermamnist octmnist pneumoniamnist retinamnist breastmnist "
    "bloodmnist tissuemnist organamnist organcmnist organsmnist"
).split()
MEDVIT_28 = ["medvit_28_tiny", "medvit_28_small", "medvit_28_base"]
SPEC_NAMES = list_specs()


def _raw(name: str) -> dict:
    """A packaged spec as plain data, read by the project's YAML reader."""
    path = SPECS_DIR / f"{name}.yaml"
    return load_yaml(path.read_text(), str(path))


def _with_searcher(spec: SweepSpec, searcher: dict) -> SweepSpec:
    """The spec with another searcher; conditions dropped unless it is optuna's."""
    data = spec.to_dict()
    data["searcher"] = searcher
    if searcher["type"] != "optuna":
        for entry in data["search"].values():
            entry.pop("when", None)
    return spec_from_dict(data)


# --------------------------------------------------------------------------------------------
# the packaged specs


def test_one_spec_per_dataset_plus_table2_and_cpu_example():
    assert sorted(SPEC_NAMES) == sorted(DATASETS + ["retinamnist-table2", "retinamnist-cpu"])


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_packaged_spec_validates_and_explains_itself(name):
    path = SPECS_DIR / f"{name}.yaml"
    spec = load_spec(path)
    assert spec.name == name
    assert path.read_text().startswith("# "), "each spec starts with a comment saying what it searches"
    assert load_spec(name) == spec  # a bare name finds the packaged file
    assert spec.train.epochs == (20 if name == "retinamnist-cpu" else 50)
    assert spec.mode == "max"


# The sweep specs of the example reports (their best_<dataset>.yaml files are train configs).
REPORT_SPECS = [path for path in sorted((Path(__file__).resolve().parents[1] / "reports").rglob("*.yaml"))
                if "search" in yaml.safe_load(path.read_text())]


def test_the_example_reports_ship_their_specs():
    names = {path.stem for path in REPORT_SPECS}
    assert {"retinamnist-recipe", "pneumoniamnist-medvit", "pneumoniamnist-audit"} <= names


@pytest.mark.parametrize("path", REPORT_SPECS, ids=lambda path: path.stem)
def test_the_example_reports_specs_still_validate(path):
    # The reports' regeneration commands run these files: a field renamed since must show here.
    spec = load_spec(path)
    assert spec.name == path.stem and path.read_text().startswith("# ")
    assert spec.train.audit_test == ("audit" in path.stem)


@pytest.mark.parametrize("flag", DATASETS)
def test_dataset_specs_search_the_agreed_space(flag):
    spec = load_spec(flag)
    assert spec.dataset == flag
    assert spec.searcher.type == "optuna"
    assert spec.search["augment"].kind == "choice"
    # every preset, sharp ones included, but AugMix (the paper protocol's, issue 20)
    assert set(spec.search["augment"].values) == set(AUGMENT_PRESETS) - {"augmix"}
    assert spec.search["model"].kind == "choice" and spec.search["model"].values == MEDVIT_28
    assert spec.search["lr"].kind == "loguniform"
    assert spec.search["weight_decay"].kind == "loguniform"
    assert spec.scheduler.type == "asha"
    assert (spec.train.epochs, spec.scheduler.grace_period, spec.scheduler.reduction_factor) == (50, 5, 4)
    assert 32 <= spec.num_samples <= 64
    assert spec.metric == ("val_auc" if flag == "chestmnist" else "val_acc")
    if flag == "retinamnist":
        assert spec.task == "ordinal-regression"
        assert {"alpha", "margin"} <= set(spec.search)
        assert spec.search["margin"].when == "alpha > 0"
    else:
        assert spec.task != "ordinal-regression"
        assert "alpha" not in spec.search and "margin" not in spec.search


def test_chestmnist_explains_why_auc():
    text = (SPECS_DIR / "chestmnist.yaml").read_text().lower()
    assert "multi-label" in text and "negative" in text


def test_table2_is_the_papers_study():
    spec = load_spec("retinamnist-table2")
    assert spec.searcher.type == "grid"
    assert spec.scheduler.type == "fifo"
    assert spec.search["alpha"].values == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert spec.search["seed"].values == [0, 1, 2]
    assert set(spec.search) == {"alpha", "seed"}
    assert spec.train.margin == 0.1
    assert spec.train.epochs == 50
    assert spec.total_trials == 18


# --------------------------------------------------------------------------------------------
# malformed specs: one mutation of a valid base each -> one line naming the field


def _set(path, value):
    def mutate(d):
        cur = d
        for part in path[:-1]:
            cur = cur[part]
        cur[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(d):
        cur = d
        for part in path[:-1]:
            cur = cur[part]
        del cur[path[-1]]

    return mutate


def _non_ordinal(extra=None):
    def mutate(d):
        d["dataset"] = "pathmnist"
        d["search"].pop("alpha")
        d["search"].pop("margin")
        if extra:
            extra(d)

    return mutate


def _metric_and_mode(metric, mode):
    def mutate(d):
        d["metric"], d["mode"] = metric, mode

    return mutate


def _repeating(repeats, extra=None):
    """Repeats with the FIFO scheduler they need, plus one more change."""
    def mutate(d):
        d["repeats"], d["scheduler"] = repeats, {"type": "fifo"}
        if extra:
            extra(d)

    return mutate


def _random_searcher(d):
    d["searcher"] = {"type": "random"}
    del d["search"]["margin"]["when"]


# (id, mutation of retinamnist.yaml, field the message must name, substring of the message
# that says what is wrong or what is allowed)
MALFORMED = [
    ("unknown-top-key", _set(("epochs",), 10), "epochs", "unknown key; allowed: name, dataset"),
    ("unknown-train-key", _set(("train", "learning_rate"), 0.1), "train.learning_rate", "allowed: model, alpha"),
    ("unknown-dist-key", _set(("search", "lr", "step"), 2), "search.lr.step", "unknown key"),
    ("unknown-scheduler-key", _set(("scheduler", "brackets"), 2), "scheduler.brackets", "allowed: type, max_t"),
    ("unknown-resources-key", _set(("resources", "tpu"), 1), "resources.tpu", "allowed: cpu, gpu"),
    ("wrong-type-epochs", _set(("train", "epochs"), "fifty"), "train.epochs", "valid integer"),
    ("fractional-epochs", _set(("train", "epochs"), 2.5), "train.epochs", "valid integer"),
    ("bool-num-samples", _set(("num_samples",), True), "num_samples", "valid integer"),
    ("train-not-mapping", _set(("train",), [1, 2]), "train", "valid dictionary"),
    ("missing-name", _delete(("name",)), "name", "missing"),
    ("bad-name", _set(("name",), "retina mnist!"), "name", "match pattern"),
    ("low-above-high", _set(("search", "lr"), {"loguniform": [3e-3, 1e-4]}), "search.lr.loguniform", "must be below high"),
    ("low-equals-high", _set(("search", "alpha"), {"uniform": [0.2, 0.2]}), "search.alpha.uniform", "must be below high"),
    ("loguniform-zero-low", _set(("search", "weight_decay"), {"loguniform": [0.0, 0.1]}), "search.weight_decay.loguniform", "not positive"),
    ("range-one-value", _set(("search", "lr"), {"loguniform": [1e-3]}), "search.lr.loguniform", "at least 2 items"),
    ("alpha-above-one", _set(("train", "alpha"), 1.5), "train.alpha", "less than or equal to 1"),
    ("alpha-search-above-one", _set(("search", "alpha"), {"uniform": [0.0, 1.5]}), "search.alpha.uniform[1]", "less than or equal to 1"),
    ("ema-search-reaches-one", _set(("search", "ema"), {"uniform": [0.9, 1.0]}), "search.ema.uniform[1]", "less than 1"),
    ("negative-lr", _set(("train", "lr"), -0.1), "train.lr", "greater than 0"),
    ("alpha-on-non-ordinal", _set(("dataset",), "pathmnist"), "search.alpha.choice[1]", "ordinal-regression tasks only"),
    ("fixed-alpha-on-non-ordinal", _non_ordinal(_set(("train", "alpha"), 0.2)), "train.alpha", "ordinal-regression tasks only"),
    ("drop-path-on-resnet", lambda d: d["train"].update(model="resnet18_28", drop_path=0.2), "train.drop_path", "MedViT presets only"),
    ("unknown-dataset", _set(("dataset",), "mnist"), "dataset", "unknown 'mnist'; allowed: pathmnist"),
    ("unknown-model", _set(("train", "model"), "vit_huge"), "train.model", "unknown 'vit_huge'; allowed: "),
    ("unknown-model-choice", _set(("search", "model"), {"choice": ["medvit_28_tiny", "vit_tiny"]}), "search.model.choice[1]", "unknown 'vit_tiny'"),
    ("unknown-augment", _set(("train", "augment"), "extreme"), "train.augment", "unknown 'extreme'; allowed: off"),
    ("unknown-augment-choice", _set(("search", "augment"), ["off", "wild"]), "search.augment.choice[1]", "unknown 'wild'"),
    ("augment-choice-wrong-type", _set(("search", "augment"), {"choice": ["off", 3]}), "search.augment.choice[1]", "valid string"),
    ("duplicate-choice", _set(("search", "model"), {"choice": ["medvit_28_tiny", "medvit_28_tiny"]}), "search.model.choice[1]", "duplicate"),
    ("unknown-image-size", _set(("train", "img_size"), 32), "train.img_size", "unknown 32; allowed: 28, 64"),
    ("image-size-searched", _set(("search", "img_size"), {"choice": [28, 64]}), "search.img_size", "cannot be searched"),
    ("test-metric", _set(("metric",), "test_acc"), "metric", "Input should be 'val_acc'"),
    ("qwk-on-non-ordinal", _non_ordinal(_set(("metric",), "val_qwk")), "metric", "ordinal-regression tasks only"),
    ("mae-on-non-ordinal", _non_ordinal(_set(("metric",), "val_mae")), "metric", "allowed for pathmnist: val_acc"),
    ("bad-mode", _set(("mode",), "maximize"), "mode", "allowed: max"),
    ("mode-against-metric", _metric_and_mode("val_mae", "max"), "mode", "does not fit val_mae; allowed: min"),
    ("grace-above-epochs", _set(("scheduler", "grace_period"), 60), "scheduler.grace_period", "exceeds the 50 epochs"),
    ("max-t-not-epochs", _set(("scheduler", "max_t"), 40), "scheduler.max_t", "differs from train.epochs 50"),
    ("reduction-factor-one", _set(("scheduler", "reduction_factor"), 1), "scheduler.reduction_factor", "greater than or equal to 2"),
    ("unknown-rung-metric", _set(("scheduler", "rung_metric"), "test_auc"), "scheduler.rung_metric",
     "Input should be 'select_score', 'val_acc'"),
    ("qwk-rung-on-non-ordinal", _non_ordinal(_set(("scheduler", "rung_metric"), "val_qwk")), "scheduler.rung_metric",
     "ordinal-regression tasks only; pathmnist is multi-class; allowed: select_score, val_acc, val_auc, val_loss"),
    ("unknown-scheduler", _set(("scheduler", "type"), "pbt"), "scheduler.type", "'asha' or 'fifo'"),
    ("unknown-searcher", _set(("searcher", "type"), "bayesopt"), "searcher.type", "'optuna', 'random' or 'grid'"),
    ("zero-samples", _set(("num_samples",), 0), "num_samples", "greater than or equal to 1"),
    ("zero-concurrency", _set(("max_concurrent",), 0), "max_concurrent", "greater than or equal to 1"),
    ("zero-cpu", _set(("resources", "cpu"), 0), "resources.cpu", "greater than 0"),
    ("negative-gpu", _set(("resources", "gpu"), -0.5), "resources.gpu", "greater than or equal to 0"),
    ("gpu-one-and-a-half", _set(("resources", "gpu"), 1.5), "resources.gpu", "neither a fraction"),
    ("empty-storage", _set(("storage",), ""), "storage", "empty"),
    ("blank-storage", _set(("storage",), "   "), "storage", "empty"),
    ("http-storage", _set(("storage",), "http://example.org/x"), "storage", "unsupported scheme"),
    ("bucketless-storage", _set(("storage",), "s3://"), "storage", "names no bucket"),
    ("storage-uri-options", _set(("storage",), "s3://b/x?endpoint_override=127.0.0.1:9000"), "storage",
     "options in a URI are not supported; allowed: s3://<bucket>/<prefix>, with an S3-compatible store's address"),
    ("grid-with-optuna", _set(("search", "seed"), {"grid": [0, 1, 2]}), "search.seed.grid", "not optuna"),
    ("choice-with-grid-searcher", _set(("searcher",), {"type": "grid"}), "search.alpha.choice", "grid entries only"),
    ("when-with-random", _set(("searcher",), {"type": "random"}), "search.margin.when", "need the optuna searcher"),
    ("when-unknown-name", _set(("search", "margin", "when"), "beta > 0"), "search.margin.when", "'beta' is not a searched"),
    ("when-later-name", _set(("search", "margin", "when"), "lr > 1e-3"), "search.margin.when", "'lr' is searched after 'margin'"),
    ("when-unsearched-name", _set(("search", "margin", "when"), "epochs > 3"), "search.margin.when", "'epochs' is not a searched"),
    ("when-syntax", _set(("search", "margin", "when"), "alpha >"), "search.margin.when", "cannot parse"),
    ("when-function-call", _set(("search", "margin", "when"), "__import__('os').system('x')"), "search.margin.when", "may not"),
    ("when-type-mismatch", _set(("search", "margin", "when"), "alpha > 'big'"), "search.margin.when", "cannot evaluate"),
    ("unsearchable-key", _set(("search", "epochs"), {"choice": [10, 20]}), "search.epochs", "cannot be searched; allowed: model"),
    ("scalar-distribution", _set(("search", "lr"), 0.001), "search.lr", "not a distribution (fixed values belong in train)"),
    ("two-distributions", _set(("search", "lr"), {"uniform": [0.1, 0.2], "loguniform": [0.1, 0.2]}), "search.lr", "names 2 distributions"),
    ("uniform-on-model", _set(("search", "model"), {"uniform": [0, 1]}), "search.model", "does not fit model; allowed: choice, grid"),
    ("uniform-on-batch-size", _set(("search", "batch_size"), {"uniform": [16, 256]}), "search.batch_size", "does not fit batch_size"),
    ("int-batch-size-zero", _set(("search", "batch_size"), {"int": [0, 64]}), "search.batch_size.int[0]", "greater than or equal to 1"),
    ("log-on-a-float", _set(("search", "lr"), {"uniform": [0.1, 0.2], "log": True}), "search.lr.log", "int entries only"),
    ("empty-search", _set(("search",), {}), "search", "at least 1 item"),
    ("smoke-zero-epochs", _set(("smoke", "epochs"), 0), "smoke.epochs", "greater than or equal to 1"),
    ("checkpoint-every-zero", _set(("checkpoint_every",), 0), "checkpoint_every", "greater than or equal to 1"),
    ("checkpoint-every-a-float", _set(("checkpoint_every",), 2.5), "checkpoint_every", "valid integer"),
    ("repeats-with-asha", _set(("repeats",), 2), "repeats", "needs scheduler {type: fifo}, not asha"),
    ("repeats-above-ten", _repeating(11), "repeats", "less than or equal to 10"),
    ("repeats-zero", _repeating(0), "repeats", "greater than or equal to 1"),
    ("repeats-not-an-int", _repeating(1.5), "repeats", "valid integer"),
    ("repeats-samples-not-multiple", _repeating(3), "num_samples", "64 is not a multiple of repeats 3"),
    ("repeats-random-searcher", _repeating(2, _random_searcher), "repeats", "needs the optuna searcher, not random"),
    ("repeats-searched-seed", _repeating(2, _set(("search", "seed"), {"choice": [0, 1]})), "search.seed",
     "cannot be searched when repeats > 1"),
]


@pytest.mark.parametrize("case_id, mutate, field, expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_spec_is_one_line_naming_the_field(case_id, mutate, field, expected):
    data = _raw("retinamnist")
    spec_from_dict(copy.deepcopy(data), "retinamnist.yaml")  # the base itself is valid
    mutate(data)
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, "retinamnist.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"retinamnist.yaml: {field}: "), message
    assert expected in message, message
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_malformed_file_reports_its_path(tmp_path):
    data = _raw("retinamnist")
    data["train"]["epochs"] = 0
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=rf"^{path}: train\.epochs: Input should be greater than or equal to 1 \(got 0\)$"):
        load_spec(path)


# --------------------------------------------------------------------------------------------
# YAML-level problems


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("name: a\ndataset: retinamnist\n  search: x\n", 3, "not valid YAML"),
        ("name: a\nsearch: {lr: {loguniform: [1, 2}\n", 2, "not valid YAML"),
        ("name: a\nname: b\n", 2, "duplicate key 'name'"),
        ("name: a\n\tdataset: b\n", 2, "not valid YAML"),
    ],
)
def test_yaml_errors_are_one_line_with_line_number(tmp_path, text, line, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line {line}")
    assert expected in message and info.value.field == f"line {line}"


@pytest.mark.parametrize("text, got", [("- a\n- b\n", "got list"), ("", "got an empty file"), ("42\n", "got int")])
def test_file_that_is_not_a_mapping(text, got):
    with pytest.raises(SpecError) as info:
        parse_spec(text, "spec.yaml")
    message = str(info.value)
    assert message.startswith("spec.yaml: (top level): expected a mapping") and got in message
    assert "\n" not in message and "allowed: a mapping with keys name, dataset" in message


def test_missing_file_names_the_packaged_specs(tmp_path):
    with pytest.raises(SpecError, match=r"no such spec file; allowed: .*retinamnist-table2"):
        load_spec(tmp_path / "nope.yaml")


def test_yaml_reader_keeps_off_a_string_and_reads_exponents():
    data = _raw("retinamnist")
    data["train"]["augment"] = "off"
    text = yaml.safe_dump(data).replace("'off'", "off")
    text = text.replace("lr: 0.001", "lr: 1e-3")
    spec = parse_spec(text)
    assert spec.train.augment == "off" and spec.train.lr == pytest.approx(1e-3)
    assert "off" in spec.search["augment"].values


def test_bare_list_means_choice():
    data = _raw("pathmnist")
    data["search"]["augment"] = ["off", "strong"]
    spec = spec_from_dict(data)
    assert spec.search["augment"].kind == "choice" and spec.search["augment"].values == ["off", "strong"]


# --------------------------------------------------------------------------------------------
# round trip, overrides, smoke variant, derived values


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_to_yaml_round_trip(name, tmp_path):
    spec = load_spec(name)
    text = spec.to_yaml()
    assert parse_spec(text) == spec
    path = tmp_path / "again.yaml"
    path.write_text(text)
    assert load_spec(path) == spec
    assert load_spec(path).to_yaml() == text


def test_round_trip_of_every_distribution_kind():
    data = _raw("retinamnist")
    data["searcher"] = {"type": "random", "seed": 3}
    data["search"]["margin"].pop("when")
    data["search"]["batch_size"] = {"int": [16, 256], "log": True}
    data["search"]["seed"] = {"grid": [0, 1]}
    data["search"]["alpha"] = {"uniform": [0.0, 0.5]}
    data["smoke"] = {"epochs": 3, "num_samples": 1}
    spec = spec_from_dict(data)
    assert parse_spec(spec.to_yaml()) == spec


def test_with_overrides():
    spec = load_spec("retinamnist")
    other = spec.with_overrides(num_samples=5, storage="s3://bucket/medsweep", name="retina-b")
    assert (other.num_samples, other.storage, other.name) == (5, "s3://bucket/medsweep", "retina-b")
    assert other.storage_path == "s3://bucket/medsweep"
    assert spec.num_samples == 64 and spec.name == "retinamnist"  # unchanged
    assert spec.with_overrides() == spec
    with pytest.raises(SpecError, match=r"num_samples: Input should be greater than or equal to 1"):
        spec.with_overrides(num_samples=0)
    with pytest.raises(SpecError, match=r"storage: empty"):
        spec.with_overrides(storage="")
    with pytest.raises(SpecError, match=r"name: String should match pattern"):
        spec.with_overrides(name="a b")


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_smoke_variant_is_valid_and_tiny(name):
    spec = load_spec(name)
    smoke = spec.smoke_variant()
    assert isinstance(smoke, SweepSpec)
    assert parse_spec(smoke.to_yaml()) == smoke
    assert smoke.name == f"{name}-smoke"
    assert smoke.train.epochs == 2
    assert smoke.train.batch_size <= 32
    assert smoke.train.subset == 256
    assert smoke.resources.gpu == 0
    if smoke.scheduler.type == "asha":
        assert smoke.scheduler.grace_period == 1
    assert smoke.total_trials <= 4
    if "model" in spec.search:
        assert smoke.search["model"].values == spec.search["model"].values
    assert set(smoke.search) == set(spec.search)
    assert (smoke.dataset, smoke.metric, smoke.mode, smoke.searcher) == (spec.dataset, spec.metric, spec.mode, spec.searcher)


def test_checkpoint_every_defaults_to_every_epoch_and_round_trips():
    assert load_spec("retinamnist").checkpoint_every == 1
    data = _raw("retinamnist")
    data["checkpoint_every"] = 10
    spec = spec_from_dict(data)
    assert parse_spec(spec.to_yaml()) == spec
    assert spec.smoke_variant().checkpoint_every == 10


def test_repeats_default_to_one_and_round_trip():
    assert load_spec("retinamnist").repeats == 1
    data = _raw("retinamnist")
    data.update(repeats=3, num_samples=12, scheduler={"type": "fifo"})
    spec = spec_from_dict(data)
    assert spec.repeats == 3 and parse_spec(spec.to_yaml()) == spec
    # --smoke keeps every repeat: smoke.num_samples 2 rounds up to one configuration x 3
    assert spec.smoke_variant().num_samples == 3
    del data["smoke"]
    assert spec_from_dict(data).smoke_variant().num_samples == 6  # 2 configurations x 3
    with pytest.raises(SpecError, match=r"num_samples: 5 is not a multiple of repeats 3"):
        spec.with_overrides(num_samples=5)


def test_smoke_section_overrides_defaults():
    data = _raw("pathmnist")
    data["smoke"] = {"epochs": 3, "num_samples": 4, "batch_size": 16, "subset": 64}
    smoke = spec_from_dict(data).smoke_variant()
    assert (smoke.train.epochs, smoke.num_samples, smoke.train.batch_size, smoke.train.subset) == (3, 4, 16, 64)


def test_task_storage_and_defaults():
    spec = load_spec("retinamnist")
    assert spec.task == "ordinal-regression" and spec.is_ordinal
    assert load_spec("chestmnist").task == "multi-label, binary-class"
    assert spec.storage_path == str(Path("~/medsweep-results").expanduser().resolve())
    minimal = parse_spec("name: m\ndataset: bloodmnist\nsearch:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    assert minimal.searcher.type == "optuna" and minimal.scheduler.type == "asha"
    assert minimal.mode == "max" and "mode" not in minimal.to_dict()
    assert spec_from_dict({**minimal.to_dict(), "metric": "val_loss"}).mode == "min"
    # specs saved before the mode was derived name it
    assert spec_from_dict({**minimal.to_dict(), "metric": "val_loss", "mode": "min"}).mode == "min"


def test_evaluate_when():
    assert evaluate_when("alpha > 0", {"alpha": 0.1})
    assert not evaluate_when("alpha > 0", {"alpha": 0.0})
    assert evaluate_when("model in ['medvit_28_base', 'medvit_28_small'] and lr < 1e-3", {"model": "medvit_28_base", "lr": 1e-4})
    assert evaluate_when("not (alpha == 0) or augment != 'off'", {"alpha": 0.0, "augment": "light"})


# --------------------------------------------------------------------------------------------
# search-space translation


def _in_spec(dist, value) -> bool:
    if dist.kind in ("uniform", "loguniform"):
        return isinstance(value, float) and dist.low <= value <= dist.high
    if dist.kind == "int":
        return isinstance(value, int) and dist.low <= value <= dist.high
    return value in dist.values


def _check_config(spec: SweepSpec, config: dict, active: set[str]) -> None:
    """Every searched key is in range; inactive conditional ones hold the fixed value."""
    for key, dist in spec.search.items():
        if key in active:
            assert _in_spec(dist, config[key]), (key, config[key])
        else:
            assert config[key] == getattr(spec.train, key)


def _active(spec: SweepSpec, values: dict) -> set[str]:
    merged = {**spec.train.model_dump(), **values}
    return {k for k, d in spec.search.items() if d.when is None or evaluate_when(d.when, merged)}


def _train_config_ok(values: dict) -> None:
    from medvit.config import build_config

    build_config(values)


def _optuna_run(spec: SweepSpec, n: int = 30, seed: int = 0):
    space = optuna_define_by_run(spec)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    proposals = []
    for i in range(n):
        trial = study.ask()
        constants = space(trial) or {}
        proposals.append((dict(trial.params), constants))
        study.tell(trial, math.sin(i) + 0.01 * len(trial.params))  # any objective: TPE leaves its startup phase
    return proposals


OPTUNA_SPECS = [n for n in SPEC_NAMES if load_spec(n).searcher.type == "optuna"]


@pytest.mark.parametrize("name", OPTUNA_SPECS)
def test_optuna_define_by_run_stays_in_the_spec(name):
    spec = load_spec(name)
    for params, constants in _optuna_run(spec):
        config = {**params, **constants}
        assert set(config) == set(spec.search)
        active = _active(spec, config)
        assert set(params) == active, "conditional parameters are suggested exactly when their condition holds"
        assert set(constants) == set(spec.search) - active
        _check_config(spec, config, active)
        _train_config_ok(trial_config(spec, config))


def test_optuna_conditional_margin_follows_alpha():
    spec = load_spec("retinamnist")
    proposals = _optuna_run(spec, n=40)
    with_margin = [p for p, _ in proposals if "margin" in p]
    without = [(p, c) for p, c in proposals if "margin" not in p]
    assert with_margin and without, "both branches are exercised"
    assert all(p["alpha"] > 0 for p in with_margin)
    assert all(p["alpha"] == 0 and c == {"margin": spec.train.margin} for p, c in without)


@pytest.mark.parametrize("name", ["retinamnist", "pathmnist"])
def test_optuna_same_seed_same_proposals(name):
    spec = load_spec(name)
    assert _optuna_run(spec, seed=7) == _optuna_run(spec, seed=7)
    assert _optuna_run(spec, seed=7) != _optuna_run(spec, seed=8)


def test_optuna_rejects_grid_entries():
    spec = _with_searcher(load_spec("retinamnist-table2"), {"type": "random"})
    with pytest.raises(ValueError, match="search.alpha"):
        optuna_define_by_run(spec)


def test_define_by_run_pickles():
    # OptunaSearch.save pickles the searcher (and with it the space) with plain pickle
    space = optuna_define_by_run(load_spec("retinamnist"))
    again = pickle.loads(pickle.dumps(space))
    assert again.spec == space.spec


def _variants(space: dict, seed: int, n: int) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        for _, resolved in generate_variants({"config": copy.deepcopy(space)}, random_state=rng):
            out.append(resolved["config"])
    return out


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_tune_domains_sample_within_the_spec(name):
    spec = load_spec(name)
    rng = np.random.RandomState(0)
    for key, dist in spec.search.items():
        domain = tune_domain(dist)
        if dist.kind == "grid":
            assert domain == {"grid_search": dist.values}
            continue
        for value in domain.sample(size=50, random_state=rng):
            value = value.item() if isinstance(value, np.generic) else value
            assert _in_spec(dist, value), (key, value)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_tune_param_space_with_the_random_searcher(name):
    spec = load_spec(name)
    if spec.searcher.type == "optuna":
        spec = _with_searcher(spec, {"type": "random", "seed": 0})
    configs = _variants(tune_param_space(spec), seed=0, n=30 if spec.grid_size == 1 else 1)
    assert len(configs) == (30 if spec.grid_size == 1 else spec.grid_size)
    for config in configs:
        assert set(config) == set(spec.search)
        _check_config(spec, trial_config(spec, config), set(spec.search))


def test_tune_same_seed_same_proposals():
    spec = _with_searcher(load_spec("retinamnist"), {"type": "random", "seed": 0})
    space = tune_param_space(spec)
    assert _variants(space, seed=4, n=10) == _variants(space, seed=4, n=10)
    assert _variants(space, seed=4, n=10) != _variants(space, seed=5, n=10)


def test_table2_grid_expands_to_every_alpha_and_seed():
    spec = load_spec("retinamnist-table2")
    configs = _variants(tune_param_space(spec), seed=0, n=1)
    assert sorted((c["alpha"], c["seed"]) for c in configs) == sorted(
        (a, s) for a in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5] for s in [0, 1, 2]
    )
    for config in configs:
        full = trial_config(spec, config)
        assert full["margin"] == 0.1 and full["epochs"] == 50 and full["dataset"] == "retinamnist"


def test_trial_config():
    spec = load_spec("retinamnist")
    config = trial_config(spec, {"alpha": np.float64(0.2), "seed": np.int64(3)})
    assert config["dataset"] == "retinamnist" and config["select_metric"] == "val_acc"
    assert type(config["alpha"]) is float and type(config["seed"]) is int
    assert config["model"] == spec.train.model and config["epochs"] == 50
    # every field: the ones the spec leaves out at TrainConfig's defaults
    assert config["warmup_epochs"] == TrainConfig.model_fields["warmup_epochs"].default
    _train_config_ok(config)
    # defaults that depend on other fields are TrainConfig's: no stochastic depth in a ResNet
    assert trial_config(spec, {"model": "resnet18_28"})["drop_path"] == 0.0
    with pytest.raises(ConfigError, match="epochz"):
        trial_config(spec, {"epochz": 3})


def test_a_repeat_index_becomes_the_seed_and_never_reaches_train_config():
    data = _raw("retinamnist")
    data.update(repeats=2, num_samples=4, scheduler={"type": "fifo"})
    data["train"]["seed"] = 7
    spec = spec_from_dict(data)
    sampled = {"alpha": 0.2, "lr": 1e-3}
    repeats = [{**sampled, TRIAL_INDEX: index} for index in (0, 1)]
    assert [trial_config(spec, r)["seed"] for r in repeats] == [7, 8]
    assert all(TRIAL_INDEX not in trial_config(spec, r) for r in repeats)
    assert [repeat_index(r) for r in repeats] == [0, 1] and repeat_index(sampled) is None
    # one configuration, named the same for both repeats, with the base seed
    assert configuration_id(repeats[0]) == configuration_id(repeats[1]) != configuration_id({**repeats[1], "lr": 2e-3})
    assert configuration_id(sampled) is None
    assert trial_config(spec, configuration(repeats[1])) == trial_config(spec, sampled)


def test_builders_follow_the_spec():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater

    from sweeps.asha import RungMetricASHA

    retina = load_spec("retinamnist")
    searcher = search_algorithm(retina)
    assert isinstance(searcher, ConcurrencyLimiter) and searcher.max_concurrent == 16
    assert (searcher.searcher.metric, searcher.searcher.mode) == (SCORE, "max")
    assert isinstance(trial_scheduler(retina), ASHAScheduler) and not isinstance(trial_scheduler(retina), RungMetricASHA)
    # another rung metric: ASHA keeps it (and its direction) when Tune hands over the sweep's
    for rung_metric, mode in (("val_auc", "max"), ("val_loss", "min")):
        raw = _raw("retinamnist")
        raw["scheduler"]["rung_metric"] = rung_metric
        scheduler = trial_scheduler(spec_from_dict(raw))
        assert isinstance(scheduler, RungMetricASHA) and scheduler.set_search_properties(SCORE, "max")
        assert (scheduler.metric, scheduler._mode) == (rung_metric, mode)
    assert isinstance(optuna_sampler(retina), optuna.samplers.TPESampler)
    table2 = load_spec("retinamnist-table2")
    assert isinstance(search_algorithm(table2), BasicVariantGenerator)
    assert isinstance(trial_scheduler(table2), FIFOScheduler)
    # repeats: Optuna inside Ray's Repeater, the concurrency limit outside it (it counts trials)
    repeated = spec_from_dict({**_raw("retinamnist"), "repeats": 2, "scheduler": {"type": "fifo"}})
    limiter = search_algorithm(repeated)
    assert isinstance(limiter, ConcurrencyLimiter) and isinstance(limiter.searcher, Repeater)
    assert limiter.searcher.repeat == 2 and (limiter.searcher.metric, limiter.searcher.mode) == (SCORE, "max")
