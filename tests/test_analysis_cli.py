"""medsweep collect / evaluate / confirm / report / gradcam through ``medsweep.cli.main``, on the
real smoke sweeps of the analysis fixture."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from medsweep.cli import main
from analysis_sweeps import ERROR_MODEL, PNEUMONIA, RETINA

TEST_COLUMNS = ["test_acc", "test_auc", "test_qwk", "test_mae"]


def medsweep(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for these tiny models on a small, shared CPU
    yield
    torch.set_num_threads(threads)


def _ranked(df: pd.DataFrame) -> pd.DataFrame:
    """Non-errored trials, best validation value first; ties: earlier best epoch, smaller id."""
    ok = df[(df["stop_reason"] != "errored") & df["best_value"].notna()]
    return ok.sort_values(["best_value", "best_epoch", "trial_id"], ascending=[False, True, True])


def _fresh_test_metrics(checkpoint: str, root: Path) -> dict[str, float]:
    """Independent recomputation: the checkpoint's best weights on its (subset) test split, in
    the Trainer's fp32 channels-last (another layout rounds differently, and the near-tied scores
    of a one-epoch model then reorder: AUC moved by 0.002 when this read contiguous tensors)."""
    from medvit.data import dataset_info, load_dataset
    from medvit.metrics import evaluate, scores_from_logits
    from medvit.models import create_model

    state = torch.load(Path(checkpoint, "state.pt"), map_location="cpu", weights_only=False)
    cfg = state["config"]
    info = dataset_info(cfg["dataset"])
    model = create_model(cfg["model"], in_chans=info.channels, num_classes=info.num_classes, img_size=cfg["img_size"])
    model.load_state_dict(state["best_weights"])
    model.eval().to(memory_format=torch.channels_last)
    data = load_dataset(cfg["dataset"], root=root, size=cfg["img_size"])
    if cfg.get("subset"):
        data = data.subset(cfg["subset"], seed=cfg["seed"])
    with torch.no_grad():
        logits = model((data.images["test"].float() / 127.5 - 1.0).contiguous(memory_format=torch.channels_last))
    return evaluate(info.task, data.labels["test"].numpy(), scores_from_logits(info.task, logits))


@pytest.fixture(scope="module")
def pipeline(analysis_sweeps, tmp_path_factory):
    """collect, then evaluate into a second table, through the CLI; the outputs and the tables."""
    work = tmp_path_factory.mktemp("cli")
    collected_path, results = work / "collected.parquet", work / "results.parquet"
    sweeps = [analysis_sweeps.dirs[RETINA], analysis_sweeps.dirs[PNEUMONIA]]
    collected = medsweep("collect", *sweeps, "--out", collected_path)
    collected_bytes = collected_path.read_bytes()
    before = pq.read_table(collected_path).to_pandas()
    # on the CPU, so that the fresh float32 recomputation below matches to 1e-6 on a GPU machine too
    evaluated = medsweep("evaluate", collected_path, "--out", results, "--data-root", analysis_sweeps.data_root,
                         "--device", "cpu")
    after = pq.read_table(results).to_pandas()
    return dict(work=work, results=results, collected=collected, evaluated=evaluated, before=before, after=after,
                input_unchanged=collected_path.read_bytes() == collected_bytes)


def test_collect_then_evaluate(analysis_sweeps, pipeline):
    rc, out, err = pipeline["collected"]
    n = sum(analysis_sweeps.n_trials.values())
    assert rc == 0, err
    assert f"{n} rows added, {n} rows in total" in out
    assert "best   retinamnist: trial" in out and "(medvit_28_tiny at 28 px)" in out and "not evaluated yet" in out
    before, after = pipeline["before"], pipeline["after"]
    assert before[TEST_COLUMNS].isna().all().all()

    rc, out, err = pipeline["evaluated"]
    assert rc == 0, err
    assert pipeline["input_unchanged"] and f"wrote {pipeline['results']}" in out  # evaluate writes --out only
    # the best trial per (dataset, model family) by validation metric, errored ones never
    expected = set()
    for (ds, fam), g in before.assign(fam=before["model"].str.extract(r"^(medvit|resnet)")[0]).groupby(
            ["dataset", "fam"]):
        expected.add(_ranked(g).iloc[0]["trial_id"])
    evaluated = set(after[after["test_acc"].notna()]["trial_id"])
    assert evaluated == expected and len(expected) == 3  # retina medvit, pneumonia medvit + resnet
    assert ERROR_MODEL not in set(after[after["test_acc"].notna()]["model"])
    assert out.count("test   ") == 3 and "test   retinamnist medvit at 28 px: trial" in out
    # other rows and columns untouched
    rest = [c for c in before.columns if c not in TEST_COLUMNS]
    pd.testing.assert_frame_equal(before[rest], after[rest])
    assert after[~after["trial_id"].isin(expected)][TEST_COLUMNS].isna().all().all()
    assert not list(pipeline["results"].parent.glob(".*tmp*"))


def test_test_metrics_equal_a_fresh_evaluation(analysis_sweeps, pipeline):
    after = pipeline["after"]
    for row in after[after["test_acc"].notna()].itertuples():
        fresh = _fresh_test_metrics(row.checkpoint_path, analysis_sweeps.data_root)
        for m in ("acc", "auc", "qwk", "mae"):
            stored = getattr(row, f"test_{m}")
            if m in fresh:
                assert stored == pytest.approx(fresh[m], abs=1e-6), (row.trial_id, m)
            else:
                assert np.isnan(stored)
        if row.dataset == "retinamnist":
            assert not np.isnan(row.test_qwk) and not np.isnan(row.test_mae)


def test_evaluate_runs_the_test_split_once(analysis_sweeps, pipeline, tmp_path):
    copy = tmp_path / "r.parquet"
    shutil.copy(pipeline["results"], copy)
    rc, out, err = medsweep("evaluate", copy, "--out", tmp_path / "again.parquet", "--data-root",
                            analysis_sweeps.data_root)
    assert rc == 0, err
    assert out.count("skip   ") == 3 and "test   " not in out
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "again.parquet").to_pandas(), pipeline["after"])


@pytest.fixture(scope="module")
def confirmed(analysis_sweeps, pipeline):
    path = pipeline["work"] / "confirm.parquet"
    rc, out, err = medsweep("confirm", analysis_sweeps.dirs[RETINA], "--seeds", 2, "--epochs", 1,
                            "--out", path, "--data-root", analysis_sweeps.data_root, "--device", "cpu")
    return path, rc, out, err


def test_confirm_per_seed_rows_and_summary(analysis_sweeps, pipeline, confirmed):
    path, rc, out, err = confirmed
    assert rc == 0, err
    before = pipeline["before"]
    ranked = _ranked(before[before["sweep"] == RETINA])
    best = ranked.iloc[0]
    if best["alpha"] > 0:
        partner = ranked[ranked["alpha"] == 0].iloc[0]
        labels = {"best": best, "best alpha=0": partner}
    else:
        partner = ranked[ranked["alpha"] > 0].iloc[0]
        labels = {"best": best, f"best alpha>0 (alpha={partner['alpha']:g})": partner}
    conf = pq.read_table(path).to_pandas()
    assert len(conf) == 4 and set(conf["label"]) == set(labels)
    assert (conf["dataset"] == "retinamnist").all() and (conf["sweep"] == RETINA).all()
    for label, trial in labels.items():
        rows = conf[conf["label"] == label]
        assert sorted(rows["seed"]) == [1000, 1001]  # fresh seeds, the same for both (paired)
        assert (rows["trial_id"] == trial["trial_id"]).all()
        for r in rows.itertuples():
            cfg = json.loads(r.config_json)
            sweep_cfg = json.loads(trial["config_json"])
            assert cfg["seed"] == r.seed and cfg["epochs"] == 1 and r.selected_epoch == 1
            for key in ("alpha", "margin", "model", "augment", "lr", "weight_decay", "subset"):
                assert cfg[key] == sweep_cfg[key], key
            assert all(0 <= getattr(r, f"test_{m}") <= 1 for m in ("acc", "auc")) and r.test_mae >= 0
            assert not np.isnan(r.val_acc)
        # each run keeps its test probabilities (a row of 5 grades per image) and labels for the seed
        # ensemble; here every seed drew its own test subset, so there is none
        for r in rows.itertuples():
            scores, labels = np.stack(r.test_scores), np.stack(r.test_labels)
            assert scores.shape == (sweep_cfg["subset"], 5) and labels.shape == (sweep_cfg["subset"], 1)
            assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
            assert r.test_acc == pytest.approx(float((scores.argmax(axis=1) == labels[:, 0]).mean()))
        assert f"{label}: no seed ensemble, each run was tested on its own subset" in out
    assert out.count("run ") >= 4 and "run 4/4" in out
    assert "seeds (1000..1001" in out
    assert "95% paired bootstrap CI" in out and "seed noise" in out
    assert "Ordinal Loss (alpha=" in out and "minus cross-entropy" in out


def test_confirm_top_retrains_the_runners_up_beside_the_winner(analysis_sweeps, pipeline, tmp_path):
    path = tmp_path / "top.parquet"
    rc, out, err = medsweep("confirm", analysis_sweeps.dirs[RETINA], "--seeds", 2, "--epochs", 1, "--top", 3,
                            "--out", path, "--data-root", analysis_sweeps.data_root, "--device", "cpu")
    assert rc == 0, err
    before = pipeline["before"]
    ranked = _ranked(before[before["sweep"] == RETINA])
    conf = pq.read_table(path).to_pandas()
    partner = conf[conf["label"].str.startswith("best ")]["trial_id"].iloc[0]
    # the 2nd and 3rd configurations, but not the partner a second time
    runners_up = {f"rank {k}": ranked.iloc[k - 1]["trial_id"] for k in (2, 3) if ranked.iloc[k - 1]["trial_id"] != partner}
    assert runners_up and set(conf["label"]) == {"best", conf[conf["trial_id"] == partner]["label"].iloc[0], *runners_up}
    for label, trial_id in runners_up.items():
        rows = conf[conf["label"] == label]
        assert sorted(rows["seed"]) == [1000, 1001] and (rows["trial_id"] == trial_id).all()
        assert f"'{label}' minus the winner 'best', test ACC, paired over 2 seeds: " in out


def test_confirm_row_is_reproducible(analysis_sweeps, confirmed):
    """The stored config retrains to the stored test metrics (CPU runs are deterministic)."""
    from medvit.config import build_config
    from medvit.train import train

    path = confirmed[0]
    row = pq.read_table(path).to_pandas().iloc[0]
    result = train(build_config(json.loads(row["config_json"])))
    assert result["test"]["acc"] == pytest.approx(row["test_acc"], abs=1e-9)
    assert np.allclose(np.stack(row["test_scores"]), result["test_scores"], atol=1e-6)
    assert result["selected_epoch"] == row["selected_epoch"] and json.loads(row["config_json"])["device"] == "cpu"
    assert json.loads(row["environment_json"]) == result["environment"]  # where it ran, which repeating needs


def test_confirm_into_its_table_again_goes_on_where_it_stopped(analysis_sweeps, confirmed, tmp_path):
    """A confirm cut short (Ctrl-C, a crash, a full disk) is run again into its table: the runs
    there of the same config and seed are kept, the others trained; another config trains anew."""
    path = tmp_path / "again.parquet"
    shutil.copy(confirmed[0], path)
    before = pq.read_table(path).to_pandas().sort_values(["label", "seed"]).reset_index(drop=True)
    common = ["--out", path, "--data-root", analysis_sweeps.data_root, "--device", "cpu"]
    rc, out, err = medsweep("confirm", analysis_sweeps.dirs[RETINA], "--seeds", 3, "--epochs", 1, *common)
    assert rc == 0, err
    assert out.count(f", kept from {path})") == 4 and "run 6/6" in out and "seeds (1000..1002" in out
    after = pq.read_table(path).to_pandas()
    assert len(after) == 6 and sorted(after["seed"].unique()) == [1000, 1001, 1002]
    kept = after[after["seed"] < 1002].sort_values(["label", "seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)
    rc, out, err = medsweep("confirm", analysis_sweeps.dirs[RETINA], "--seeds", 1, "--epochs", 2, *common)
    assert rc == 0, err
    assert "kept from" not in out and "run 2/2" in out


def test_report_with_confirm_and_automatic_gradcam(analysis_sweeps, pipeline, confirmed):
    out_dir = pipeline["work"] / "reports"
    rc, out, err = medsweep("report", pipeline["results"], "--out", out_dir, "--confirm", confirmed[0],
                            "--data-root", analysis_sweeps.data_root)
    assert rc == 0, err
    assert "gradcam " in out and "wrote" in out
    png = out_dir / "figures" / "gradcam.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    md = (out_dir / "report.md").read_text()
    assert "](figures/gradcam.png)" in md and "GradCAM" in md and "Images: " in md
    assert "Confirmed configurations" in md and "paired over 2 seeds" in md
    environment = json.loads(pq.read_table(confirmed[0]).to_pandas()["environment_json"].iloc[0])
    assert f"Where the runs ran: {environment['device']}, torch {environment['torch']} (4 runs)" in md
    assert "seed ensemble" not in md.lower()  # the runs were tested on different subsets
    html = (out_dir / "report.html").read_text()
    assert html.count("<img src=\"data:image/png;base64,") == len(list((out_dir / "figures").glob("*.png")))


@pytest.fixture(scope="module")
def resnet_checkpoint(analysis_sweeps, tmp_path_factory):
    """A RetinaMNIST ResNet-18 checkpoint: medsweep's Trainer, 1 epoch on 64 images."""
    from medvit.config import TrainConfig
    from medvit.data import load_dataset
    from medvit.train import Trainer

    config = TrainConfig(dataset="retinamnist", model="resnet18_28", epochs=1, batch_size=32, subset=64,
                         device="cpu", augment="off")
    data = load_dataset("retinamnist", root=analysis_sweeps.data_root).subset(64, seed=0)
    trainer = Trainer(config, data)
    list(trainer.epochs())
    folder = tmp_path_factory.mktemp("resnet_ckpt")
    trainer.save(folder)
    return folder


def test_gradcam_medvit_and_resnet(analysis_sweeps, pipeline, resnet_checkpoint, tmp_path):
    after = pipeline["after"]
    medvit = after[(after["dataset"] == "retinamnist") & after["test_acc"].notna()].iloc[0]["checkpoint_path"]
    png = tmp_path / "cam.png"
    rc, out, err = medsweep("gradcam", "--checkpoint", medvit, "--checkpoint", resnet_checkpoint, "--images", 3,
                            "--grades", 1, 2, "--out", png, "--data-root", analysis_sweeps.data_root)
    assert rc == 0, err
    assert f"wrote {png}" in out and out.startswith("Images: ")  # how the images were chosen, said
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # a binary dataset's ResNet alone, every class by default, from the val split, --images as report's default
    pneu = after[(after["dataset"] == "pneumoniamnist") & (after["model"] == "resnet18_28")].iloc[0]["checkpoint_path"]
    rc, out, err = medsweep("gradcam", "--checkpoint", pneu, "--split", "val", "--out",
                            tmp_path / "pneu.png", "--data-root", analysis_sweeps.data_root, "--device", "cpu")
    assert rc == 0, err
    assert (tmp_path / "pneu.png").stat().st_size > 5_000


def test_pick_images_alternates_grades():
    from analysis.gradcam import pick_images

    labels = np.array([0, 2, 1, 1, 2, 3, 1])
    assert pick_images(labels, [1, 2], 3) == [2, 1, 3]
    assert pick_images(labels, [1], 3) == [2, 3, 6]
    with pytest.raises(ValueError, match="grades: only 1 images of grade 3"):
        pick_images(labels, [3, 1], 4)


# -- bad input: one line on stderr, exit code 2 --------------------------------------------


def _bad_inputs(ctx: dict) -> dict[str, tuple[list, str]]:
    t = ctx["tmp"]
    retina, results, ckpt = ctx["retina"], ctx["results"], ctx["ckpt"]
    png = t / "x.png"
    return {
        "evaluate missing file": (["evaluate", t / "missing.parquet", "--out", t / "e.parquet"],
                                  "evaluate: results: .* no such file"),
        "evaluate not parquet": (["evaluate", ctx["text"], "--out", t / "e.parquet"],
                                 "evaluate: results: .* not a Parquet file"),
        "evaluate column missing": (["evaluate", ctx["nocol"], "--out", t / "e.parquet"],
                                    "evaluate: results: .*column 'dataset'"),
        "evaluate folder": (["evaluate", t, "--out", t / "e.parquet"], "evaluate: results: .* is a folder"),
        "evaluate into its input": (["evaluate", results, "--out", results], "evaluate: --out: .*overwrite its input"),
        "collect not a sweep": (["collect", t / "nope", "--out", t / "r.parquet"],
                                "collect: sweep_dir: .*does not exist"),
        "collect out not parquet": (["collect", retina, "--out", ctx["text"]], "collect: --out: .*not a Parquet file"),
        "report confirm missing": (["report", results, "--out", t / "rep", "--confirm", t / "c.parquet"],
                                   "report: --confirm: .*not found"),
        "report half gradcam": (["report", results, "--out", t / "rep", "--gradcam-ce", ckpt],
                                "report: --gradcam-ce and --gradcam-ordinal go together"),
        "gradcam N < 1": (["gradcam", "--checkpoint", ckpt, "--images", 0, "--out", png],
                          "gradcam: --images: need at least 1 image, got 0"),
        "gradcam unknown grade": (["gradcam", "--checkpoint", ckpt, "--images", 2, "--grades", 7, "--out", png],
                                  "gradcam: --grades: unknown grade 7 for retinamnist; allowed: 0..4"),
        "gradcam missing checkpoint": (["gradcam", "--checkpoint", t / "nockpt", "--images", 2, "--out", png],
                                       "gradcam: --checkpoint: .*no such folder"),
        "gradcam not a checkpoint": (["gradcam", "--checkpoint", t, "--images", 2, "--out", png],
                                     "gradcam: --checkpoint: .*no state.pt"),
        "gradcam mixed datasets": (["gradcam", "--checkpoint", ckpt, "--checkpoint", ctx["pneu_ckpt"], "--images", 2,
                                    "--out", png], "gradcam: --checkpoint: .*different data"),
        "gradcam bad split": (["gradcam", "--checkpoint", ckpt, "--images", 2, "--split", "dev", "--out", png],
                              "--split: invalid choice"),
        "confirm zero seeds": (["confirm", retina, "--seeds", 0, "--out", t / "c.parquet"],
                               "confirm: --seeds: 0; allowed: 1 to 100$"),
        "confirm top 0": (["confirm", retina, "--top", 0, "--out", t / "c.parquet"],
                          "confirm: --top: 0; allowed: 1 to 20$"),
        "confirm not a sweep": (["confirm", t, "--out", t / "c.parquet"], "confirm: sweep_dir: .*not a sweep folder"),
        "confirm out not parquet": (["confirm", retina, "--out", ctx["text"]], "confirm: --out: .*not a Parquet file"),
    }


@pytest.fixture(scope="module")
def bad_ctx(analysis_sweeps, pipeline, tmp_path_factory):
    t = tmp_path_factory.mktemp("bad")
    text = t / "notes.parquet"
    text.write_text("not parquet\n")
    nocol = t / "nocol.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), nocol)
    after = pipeline["after"]
    ok = after[after["stop_reason"] != "errored"]
    return dict(tmp=t, text=text, nocol=nocol, retina=analysis_sweeps.dirs[RETINA], results=pipeline["results"],
                ckpt=ok[ok["dataset"] == "retinamnist"].iloc[0]["checkpoint_path"],
                pneu_ckpt=ok[ok["model"] == "medvit_28_tiny"].query("dataset == 'pneumoniamnist'").iloc[0][
                    "checkpoint_path"])


@pytest.mark.parametrize("case", list(_bad_inputs({k: Path("/x") for k in
                                                    ("tmp", "retina", "results", "ckpt", "text", "nocol",
                                                     "pneu_ckpt")})))
def test_bad_input_is_one_line_exit_2(bad_ctx, case):
    import re

    argv, pattern = _bad_inputs(bad_ctx)[case]
    rc, out, err = medsweep(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (case, out, err)
    assert len(lines) == 1 and lines[0].startswith("medsweep: error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(bad_ctx["tmp"].glob("*.png")) and not (bad_ctx["tmp"] / "c.parquet").exists()
    assert not (bad_ctx["tmp"] / "e.parquet").exists()
