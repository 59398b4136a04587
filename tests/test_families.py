"""medvit.families: one rule for a model's family, read by the registry, the config and the tables."""

from __future__ import annotations

import pytest

from medvit.config import ConfigError, build_config
from medvit.families import FAMILIES, MEDVIT, model_family
from medvit.models import MODELS


@pytest.mark.parametrize("name", list(MODELS))
def test_the_registry_the_config_and_the_tables_agree_on_each_models_family(name):
    from analysis.tables import model_family as tables_family

    family = model_family(name)
    assert family in FAMILIES and MODELS[name].family == family and tables_family(name) == family
    config = build_config({"dataset": "retinamnist", "model": name})
    assert (config.drop_path > 0) == (family == MEDVIT)  # stochastic depth is MedViT's
    if family != MEDVIT:
        with pytest.raises(ConfigError, match="^drop_path: stochastic depth exists in MedViT presets only"):
            build_config({"dataset": "retinamnist", "model": name, "drop_path": 0.1})


@pytest.mark.parametrize("model, family", [("ViT_B", "vit_b"), (None, "unknown"), ("MedViT_small", MEDVIT)])
def test_a_name_outside_the_registry_is_its_own_family(model, family):
    assert model_family(model) == family
