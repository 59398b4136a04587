"""The MedViT paper's protocol as packaged sweep specs (sweeps/specs/paper/): found by name,
valid, searching what the protocol leaves open, with a smoke form a CPU runs, and one smoke
sweep end to end on real RetinaMNIST."""

from __future__ import annotations

from fnmatch import fnmatch

import pytest

from medvit.config import load_config_file
from medvit.data import DATASETS, dataset_info
from pyproject_data import pyproject
from sweeps.space import trial_config, tune_param_space
from sweeps.spec import SPEC_GROUPS, SPECS_DIR, SpecError, list_specs, load_spec
from sweep_helpers import epochs_run, trial_dirs
from test_spec import _variants

PAPER = list_specs("paper")
# The paper's recipe: 50 epochs, batch 128, AdamW lr 1e-3 with cosine decay and nothing else
# of ours (no EMA, smoothing, warm-up, clipping, stochastic depth; the best single epoch),
# with the test-selection audit on.
RECIPE = {"resize": 224, "img_size": 28, "epochs": 50, "batch_size": 128, "lr": 1e-3, "ema": 0.0,
          "label_smoothing": 0.0, "warmup_epochs": 0, "grad_clip": 0.0, "drop_path": 0.0, "select_window": 1,
          "audit_test": True}
ALPHAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_one_paper_spec_per_dataset_plus_table2():
    assert "paper" in SPEC_GROUPS
    assert PAPER == sorted([f"paper/{flag}" for flag in DATASETS] + ["paper/retinamnist-table2"])
    assert not set(PAPER) & set(list_specs())  # the 28 px specs are listed apart


def test_paper_specs_are_package_data():
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["sweeps"]
    for name in PAPER:
        relative = f"specs/{name}.yaml"
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


@pytest.mark.parametrize("name", PAPER)
def test_paper_spec_validates_with_the_papers_recipe(name):
    path = SPECS_DIR / f"{name}.yaml"
    spec = load_spec(name)
    assert spec == load_spec(path)
    assert spec.name == name.replace("/", "-")  # results never mix with the 28 px sweep's
    assert path.read_text().startswith("# "), "each spec starts with a comment saying what it runs"
    assert {field: getattr(spec.train, field) for field in RECIPE} == RECIPE
    assert spec.train.model == "medvit_base" and spec.train.augment == "augmix"
    assert spec.resources.gpu == 1, "a 224 px MedViT at batch 128 does not share a GPU"


@pytest.mark.parametrize("name", PAPER)
def test_paper_specs_of_small_datasets_checkpoint_every_10th_epoch(name):
    # A 680.5 MiB checkpoint may outlast an epoch of under 10,000 images on a GPU; a longer
    # epoch's checkpoint is a small share of it, and every epoch keeps a restart's redo short.
    spec = load_spec(name)
    small = dataset_info(spec.dataset).n_samples["train"] < 10_000
    assert spec.checkpoint_every == (10 if small else 1)


@pytest.mark.parametrize("flag", DATASETS)
def test_paper_spec_searches_what_the_protocol_leaves_open(flag):
    spec = load_spec(f"paper/{flag}")
    assert spec.dataset == flag and spec.searcher.type == "optuna" and spec.scheduler.type == "asha"
    assert spec.search["model"].values == ["medvit_small", "medvit_base"]
    assert spec.search["augment"].values == ["augmix", "shift"]
    assert spec.search["lr"].kind == spec.search["weight_decay"].kind == "loguniform"
    ordinal = {"alpha", "margin"} & set(spec.search)
    assert len(spec.search) == 4 + len(ordinal)
    if flag == "retinamnist":
        assert spec.search["alpha"].values == ALPHAS and spec.search["margin"].when == "alpha > 0"
    else:
        assert not ordinal


def test_paper_table2_expands_to_every_alpha_and_seed_at_224():
    spec = load_spec("paper/retinamnist-table2")
    configs = _variants(tune_param_space(spec), seed=0, n=1)
    assert sorted((c["alpha"], c["seed"]) for c in configs) == [(a, s) for a in ALPHAS for s in (0, 1, 2)]
    for config in configs:
        full = trial_config(spec, config)
        assert (full["model"], full["resize"], full["margin"], full["epochs"]) == ("medvit_base", 224, 0.1, 50)


@pytest.mark.parametrize("name", PAPER)
def test_paper_smoke_form_is_tiny_and_keeps_the_224_px_models(name):
    spec = load_spec(name)
    smoke = spec.smoke_variant()
    assert smoke.name == f"{spec.name}-smoke"
    assert smoke.total_trials <= 2 and smoke.train.epochs == 1
    assert smoke.train.subset <= 8 and smoke.train.batch_size <= 8
    assert smoke.resources.gpu == 0
    assert smoke.train.resize == 224 and smoke.search.get("model") == spec.search.get("model")


def test_a_group_name_outside_the_groups_is_not_looked_up(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=r"^elsewhere/retinamnist: \(file\): no such spec file; .*paper/retinamnist"):
        load_spec("elsewhere/retinamnist")


@pytest.mark.slow  # starts Ray
def test_paper_retinamnist_smoke_sweep_runs_end_to_end(real_root, tmp_path, capsys, analysis_sweeps):
    import pandas as pd
    import ray

    from analysis.report import write_report
    from analysis_sweeps import RETINA
    from medsweep.cli import main

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["sweep", "paper/retinamnist", "--smoke", "--storage", str(tmp_path),
                     "--data-root", str(real_root)])
    finally:
        ray.shutdown()
    assert code == 0
    out = capsys.readouterr().out
    assert "done   2 trials, 0 errored" in out
    assert "(max), checkpoint every 10 epochs and each newly selected\n" in out
    trials = trial_dirs(tmp_path / "paper-retinamnist-smoke")
    assert len(trials) == 2
    assert all(epochs_run(trial) == [1] for trial in trials)
    best = load_config_file(tmp_path / "paper-retinamnist-smoke" / "best_config.yaml")
    # The closing line names the trial and the score best_config.yaml names.
    header = (tmp_path / "paper-retinamnist-smoke" / "best_config.yaml").read_text().splitlines()[0]
    (line,) = [line for line in out.splitlines() if line.startswith("best   trial ")]
    assert f"_{line.split()[2].rstrip(':')}_" in header
    assert f"selection score {header.rsplit('= ', 1)[1]} at its best epoch" in line
    assert (best["resize"], best["img_size"], best["subset"]) == (224, 28, 8)
    assert best["model"] in ("medvit_small", "medvit_base") and best["audit_test"] is True
    # Collected beside a 28 px RetinaMNIST sweep, the two protocols are two results: each
    # input's winner is tested once and has its own Table 1 row (the rules: test_report_inputs.py).
    results = tmp_path / "both.parquet"
    assert main(["collect", str(analysis_sweeps.dirs[RETINA]), str(tmp_path / "paper-retinamnist-smoke"),
                 "--out", str(results), "--evaluate-test", "--data-root", str(real_root)]) == 0
    assert "test   retinamnist medvit at 224 px from 28: trial" in capsys.readouterr().out
    write_report(results, tmp_path / "report", figures=False)
    table1 = pd.read_csv(tmp_path / "report" / "table1.csv", dtype=str, keep_default_na=False).set_index("Method")
    for row in ("medsweep MedViT (ours, 28 px)", "medsweep MedViT (ours, 224 px from 28)"):
        assert table1.loc[row, "RetinaMNIST ACC"] != "–", row
