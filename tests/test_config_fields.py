"""Every training field is declared once, in `medvit.config.TrainConfig`: the CLI flags, a
sweep spec's `train` and `search` sections and the results table's columns derive from it,
so adding a field is a one-place change."""

from __future__ import annotations

import argparse

import pyarrow as pa
import pytest
from pydantic import Field

from analysis.schema import CONFIG_COLUMNS, RESULTS_SCHEMA, WHERE_IT_RAN, results_schema, train_config_keys
from analysis.tables import TRAIN_CONFIG_KEYS
from medvit.config import TrainConfig, build_config, searchable_fields
from medsweep.cli import add_train_parser, flag_name, train_values
from sweeps.space import trial_config
from sweeps.spec import SEARCHABLE, SpecError, TrainSection, load_spec, spec_from_dict


class WiderConfig(TrainConfig):
    """TrainConfig with one more field, declared the way TrainConfig declares its own."""

    cutout: float = Field(0.0, description="side of the cut-out square, as a fraction of the image",
                          ge=0.0, le=0.5, json_schema_extra={"search": ("uniform", "choice")})


def _train_parser(config_class=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsweep")
    add_train_parser(parser.add_subparsers(), config_class)
    return parser


def test_the_cli_takes_a_new_field():
    parser = _train_parser(WiderConfig)
    args = parser.parse_args(["train", "--dataset", "retinamnist", "--cutout", "0.25", "--out", "runs/x"])
    assert build_config(train_values(args), WiderConfig).cutout == 0.25
    help_text = " ".join(parser._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--cutout CUTOUT side of the cut-out square, as a fraction of the image (default 0.0)" in help_text


def test_a_spec_takes_a_new_field_in_train_and_search():
    data = load_spec("retinamnist").to_dict()
    data["train"]["cutout"] = 0.1
    data["search"]["cutout"] = {"uniform": [0.0, 0.3]}
    spec = spec_from_dict(data, "wider.yaml", WiderConfig)
    assert spec.train.cutout == 0.1 and spec.search["cutout"].high == 0.3
    assert trial_config(spec, {"cutout": 0.2})["cutout"] == 0.2
    assert spec_from_dict(spec.to_dict(), "again.yaml", WiderConfig) == spec
    # the field's bounds hold for searched values too
    data["search"]["cutout"] = {"uniform": [0.0, 0.9]}
    with pytest.raises(SpecError, match=r"^wider\.yaml: search\.cutout\.uniform\[1\]: Input should be less than or equal to 0\.5"):
        spec_from_dict(data, "wider.yaml", WiderConfig)
    # a spec for the plain TrainConfig does not know it
    with pytest.raises(SpecError, match=r"^plain\.yaml: train\.cutout: unknown key"):
        spec_from_dict(data, "plain.yaml")


def test_the_results_table_has_a_column_for_a_new_field():
    schema = results_schema(WiderConfig)
    assert schema.field("cutout").type == pa.float64()
    after_config = RESULTS_SCHEMA.names.index("epochs_max")
    assert schema.names == RESULTS_SCHEMA.names[:after_config] + ["cutout"] + RESULTS_SCHEMA.names[after_config:]
    assert train_config_keys(WiderConfig) == TRAIN_CONFIG_KEYS + ("cutout",)


def test_train_section_is_train_config_less_the_top_level_fields():
    fields = TrainConfig.model_fields
    section = TrainSection.model_fields
    assert list(section) == [name for name in fields if name not in ("dataset", "select_metric")]
    for name, info in section.items():
        assert (info.annotation, info.default, info.metadata) == (fields[name].annotation, fields[name].default,
                                                                  fields[name].metadata)
    assert SEARCHABLE == searchable_fields(TrainConfig)


def test_every_field_has_a_flag_and_every_plain_field_a_column():
    help_text = _train_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(flag_name(name) in help_text for name in TrainConfig.model_fields)
    assert set(TrainConfig.model_fields) - set(CONFIG_COLUMNS) == {"dataset", "epochs", "select_metric", *WHERE_IT_RAN}
    assert RESULTS_SCHEMA.field("compile").type == pa.bool_()
    # what the model sees is part of what a trial trained: a 224 px trial must be told from a 28 px one
    assert RESULTS_SCHEMA.field("resize").type == pa.int64() and RESULTS_SCHEMA.field("resize_mode").type == pa.string()
    assert {"resize", "resize_mode", "precision", "tta"} <= set(TRAIN_CONFIG_KEYS)
