"""sweeps.space.repeat_seed / base_seed: a repeat's seed is added in one place (the trial's
config) and taken off in its inverse (the analysis names a configuration by its base seed)."""

from __future__ import annotations

import json

import pytest

from sweeps.space import TRIAL_INDEX, base_seed, repeat_seed, trial_config
from sweeps.spec import load_spec


@pytest.mark.parametrize("index", [None, 0, 1, 4])
def test_a_repeats_config_and_its_analysis_row_name_the_specs_base_seed(index):
    from analysis.tables import best_config

    spec = load_spec("retinamnist").smoke_variant()
    sampled = {"lr": 1e-3} if index is None else {"lr": 1e-3, TRIAL_INDEX: index}
    config = trial_config(spec, sampled)
    assert config["seed"] == repeat_seed(spec.train.seed, index) == spec.train.seed + (index or 0)
    assert base_seed(config["seed"], index) == spec.train.seed
    row = {"config_json": json.dumps(config), "repeat_index": index}
    assert best_config(row)["seed"] == spec.train.seed
