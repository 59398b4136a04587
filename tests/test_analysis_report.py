"""write_report(): content checks, and the HTML page rendered in a real headless Chromium.

Most checks read a hand-built table shaped like the shipped example (``hand_results``); the
ones marked so read the real Ray sweeps of the session fixture. Chromium comes from Debian
(``apt-get install -y chromium``); CI (``.ci/run``) installs it. Where it is missing the
browser tests are skipped, with the reason.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from analysis import reference as ref
from analysis.report import _table2_claim, read_ensemble, write_report
from analysis.tables import TRAIN_CONFIG_KEYS
from analysis_sweeps import confirm_frame
from hand_results import (BEST, SWEEP_DIR, retina_confirm, retina_ensemble, retina_results, with_checkpoints,
                          write_results)
from medsweep.cli import main

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--enable-logging=stderr", "--v=0",
]
# Appended to a COPY of the page (the report itself has no scripts): records in the DOM how
# many images there are and how many decoded with a real size.
PROBE = (
    "<script>window.addEventListener('load',function(){var im=Array.from(document.images);"
    "var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0&&i.naturalHeight>0}).length;"
    "document.body.setAttribute('data-images-total',im.length);"
    "document.body.setAttribute('data-images-ok',ok);"
    "document.body.setAttribute('data-probe','done');});</script>"
)


# Appended to a copy of the page: where the tables' "Test ..." columns and the headline's
# first row (the best trial) are, in the viewport's coordinates, and whether any table
# needs sideways scrolling.
GEOMETRY = (
    "<script>window.addEventListener('load',function(){"
    "var rect=function(e){var r=e.getBoundingClientRect();return {right:r.right,bottom:r.bottom};};"
    "var tables=Array.from(document.querySelectorAll('table')).map(function(t){"
    "return {scroll:t.parentElement.scrollWidth,client:t.parentElement.clientWidth,"
    "test:Array.from(t.querySelectorAll('th')).filter(function(h){return h.textContent.indexOf('Test ')===0})"
    ".map(rect)};});"
    "document.body.setAttribute('data-geometry',JSON.stringify({width:document.documentElement.clientWidth,"
    "height:window.innerHeight,tables:tables,best:rect(document.querySelector('table tbody tr'))}));});</script>"
)


def chromium_binary() -> str:
    """Path of Chromium; skips the test where it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def report(analysis_results, tmp_path_factory):
    path, df = analysis_results
    out = tmp_path_factory.mktemp("report")
    conf_path = out.parent / "confirm.parquet"
    confirm_frame().to_parquet(conf_path)
    html_path, md_path = write_report(path, out / "reports", confirm_parquet=conf_path)
    return html_path, md_path, df


def test_report_files_and_content(report):
    html_path, md_path, df = report
    out = html_path.parent
    assert html_path.name == "report.html" and md_path.name == "report.md"
    for name in ("table1.md", "table1.csv", "table2.md", "table2.csv", "best_retinamnist.md",
                 "best_retinamnist.csv", "best_pneumoniamnist.md", "best_pneumoniamnist.csv"):
        assert (out / name).stat().st_size > 0, name
    md = md_path.read_text()
    for heading in ("What was swept", "Compute", "Results against the paper", "Figures",
                    "Best configurations", "Caveats"):
        assert f"## {heading}" in md
    # trial counts and the compute saved by early stopping, from the table itself
    assert f"Trials: {len(df)} in 2 sweep(s)" in md
    ok = df[df["stop_reason"] != "errored"]
    es = df[df["stop_reason"] == "early_stopped"]
    saved = int((es["epochs_max"] - es["epochs_run"]).sum())
    assert f"Early stopping saved {saved} trial-epochs of {int(ok['epochs_max'].sum())}" in md
    assert f"Trial-epochs run: {int(df['epochs_run'].sum())}." in md
    # caveat: RetinaMNIST test split has 400 images; SE computed at our ACC
    acc = confirm_frame().query("label == 'best'")["test_acc"].mean()
    se = 100 * (acc * (1 - acc) / 400) ** 0.5
    assert "RetinaMNIST test split has 400 images" in md and f"±{se:.1f} percentage points" in md
    assert "paired over 3 seeds" in md
    diffs = confirm_frame().pivot(index="seed", columns="label", values="test_acc")
    assert f"finding the observed {(diffs['best'] - diffs['best alpha=0']).mean():+.3f} would take" in md
    # figures linked in Markdown and present
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / rel).is_file(), rel


def test_best_yaml_files(report):
    html_path, md_path, df = report
    out = html_path.parent
    for ds in ("retinamnist", "pneumoniamnist"):
        cfg = yaml.safe_load((out / f"best_{ds}.yaml").read_text())
        # every TrainConfig field with a value, in field order; resize has none (the stored size)
        assert list(cfg) == [key for key in TRAIN_CONFIG_KEYS if key != "resize"]
        ok = df[(df["dataset"] == ds) & (df["stop_reason"] != "errored")]
        # ties: the earlier best epoch, then the smaller trial id
        best = ok.sort_values(["best_value", "best_epoch", "trial_id"], ascending=[False, True, True]).iloc[0]
        assert cfg["dataset"] == ds and cfg["model"] == best["model"] and cfg["alpha"] == best["alpha"]
        assert cfg["epochs"] == best["epochs_max"] and cfg["seed"] == best["seed"]
        assert f"```yaml\n# {'RetinaMNIST' if ds == 'retinamnist' else 'PneumoniaMNIST'}" in md_path.read_text()


def test_html_is_self_contained(report):
    html_path, _, _ = report
    page = html_path.read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    n_figures = len(list((html_path.parent / "figures").glob("*.png")))
    assert n_figures >= 5 and len(srcs) == n_figures and all(s.startswith("data:image/png;base64,") for s in srcs)


@pytest.mark.slow  # starts a browser
def test_html_renders_in_headless_chromium(report, tmp_path):
    html_path, _, _ = report
    chromium = chromium_binary()
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    r = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    body = re.search(r"<body[^>]*>", r.stdout)
    assert body, "no <body> in the rendered DOM"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))
    assert attrs.get("data-probe") == "done", "page did not finish loading"
    n_figures = str(len(list((html_path.parent / "figures").glob("*.png"))))
    assert attrs["data-images-total"] == n_figures and attrs["data-images-ok"] == n_figures
    assert "Table 1: MedMNIST test AUC / ACC" in r.stdout
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    # and a screenshot of the untouched page is a real image
    shot = tmp_path / "shot.png"
    r2 = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,2000",
         f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert r2.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert not [ln for ln in r2.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]


def test_report_without_figures_and_bad_input(analysis_results, tmp_path):
    path, _ = analysis_results
    html_path, md_path = write_report(path, tmp_path / "quick", figures=False)
    assert "<img" not in html_path.read_text() and "## Figures" not in md_path.read_text()
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), empty)
    with pytest.raises(ValueError, match="no trials"):
        write_report(empty, tmp_path / "x")
    with pytest.raises(ValueError, match="not found"):
        write_report(tmp_path / "missing.parquet", tmp_path / "y")


# --------------------------------------------------------------------------- hand-built report


@pytest.fixture(scope="module")
def hand_report(tmp_path_factory):
    """The report of the shipped example's shape, with a confirm table and an ensemble."""
    tmp = tmp_path_factory.mktemp("hand")
    ensemble = retina_ensemble(tmp / "ensemble")
    html_path, md_path = write_report(retina_results(), tmp / "report", confirm_parquet=retina_confirm(),
                                      ensembles=[ensemble.parent])
    return html_path, md_path


def test_headline_first_with_confirmed_ensemble_gap_and_anchors(hand_report):
    _, md_path = hand_report
    md = md_path.read_text()
    assert md.index("## Headline") < md.index("## What was swept")
    head = md[md.index("## Headline"):md.index("## What was swept")]
    rows = [r for r in head.splitlines() if r.startswith("| RetinaMNIST")]
    assert rows[0] == (f"| RetinaMNIST | Best trial {BEST} (medvit_28_small, α 0), selected on val_acc: one test run "
                       "| 0.617 | 0.547 | 0.692 | 0.540 | 0.738 |")
    conf = retina_confirm().query("label == 'best'")
    acc = conf["test_acc"]
    assert f"| {acc.mean():.3f} ± {acc.std():.3f} |" in rows[1] and "over 3 seeds" in rows[1]
    assert rows[2].startswith("| RetinaMNIST | Ensemble of 3 of 12 trials") and "| 0.650 | 0.552 | 0.741 |" in rows[2]
    for anchor in ref.anchors("retinamnist"):
        assert any(f"Anchor: {anchor.label}" in r and f"| {anchor.acc.printed}" in r for r in rows[3:])
    assert "| 0.542 ± 0.008 | 0.754 |" in head  # MedMNIST+ VGG16
    gap = 0.6167 - acc.mean()
    assert f"winner's-curse gap {gap:+.3f} = the winner's val_acc selection score 0.617 minus its confirmed test ACC" in head
    assert f"validation ACC 0.650 minus test 0.552 = {0.65 - 0.5525:+.3f}" in head


def test_headline_has_a_winner_and_a_gap_per_model_family(tmp_path):
    # a ResNet baseline sweep beside the MedViT one, its winner ahead on validation
    df = retina_results()
    resnet = df[df["trial_id"] == BEST].assign(trial_id="b4se1ine", model="resnet18_28", sweep="retina-resnet18",
                                               best_value=0.63, test_acc=0.51)
    confirm = pd.concat([retina_confirm(), retina_confirm().query("label == 'best'").assign(
        label="best resnet", sweep="retina-resnet18", test_acc=[0.50, 0.51, 0.52])])
    _, md_path = write_report(pd.concat([df, resnet]), tmp_path, confirm_parquet=confirm)
    md = md_path.read_text()
    head = md[md.index("## Headline"):md.index("## What was swept")]
    rows = [r for r in head.splitlines() if r.startswith("| RetinaMNIST")]
    assert rows[0].startswith(f"| RetinaMNIST | Best MedViT trial {BEST} (medvit_28_small")  # the method first
    assert "over 3 seeds" in rows[1]
    assert rows[2].startswith("| RetinaMNIST | Best ResNet trial b4se1ine (resnet18_28") and "| 0.630 | 0.510 |" in rows[2]
    assert "over 3 seeds" in rows[3] and "| 0.510 ± 0.010 |" in rows[3]
    medvit_gap = 0.6167 - retina_confirm().query("label == 'best'")["test_acc"].mean()
    assert f"RetinaMNIST medvit_28_small: winner's-curse gap {medvit_gap:+.3f}" in head
    assert f"RetinaMNIST resnet18_28: winner's-curse gap {0.63 - 0.51:+.3f}" in head


def test_ensemble_section(hand_report):
    _, md_path = hand_report
    md = md_path.read_text()
    section = md[md.index("## Ensemble"):md.index("## Figures")]
    assert "| Split | ACC | AUC | QWK | MAE | QWK (decoded) | MAE (decoded) |" in section
    assert "| test | 0.552 | 0.741 | 0.588 | 0.690 | 0.631 | 0.652 |" in section
    assert f"| test, winner {BEST} alone | 0.535 | 0.732 | 0.571 | 0.712 | – | – |" in section
    assert f"| {BEST} | medvit_28_small, α 0 | 0.5 | 0.617 |" in section
    assert "| 720f1275 | medvit_28_tiny, α 0.1 | 0.3 | 0.608 |" in section


def test_layout_readable_and_portable(hand_report):
    html_path, md_path = hand_report
    out = html_path.parent
    page, md = html_path.read_text(), md_path.read_text()
    # no path of the machine that made the report, anywhere; checkpoints relative to the sweep
    for f in out.glob("*.*"):
        assert SWEEP_DIR not in f.read_text(errors="ignore"), f
    ckpt = retina_results().set_index("trial_id").loc[BEST, "checkpoint_path"]
    assert ckpt.removeprefix(SWEEP_DIR + "/") in md
    # sets and ranges as plain text, not {20}
    assert "| retinamnist-cpu | RetinaMNIST | val_acc (max) | 12 | 2 | 10 | 0 | 0 | 20 |" in md
    assert "| alpha | 0, 0.1, 0.2, 0.3, 0.4, 0.5 |" in md and "| margin | 0.0211 – 0.283 (11 values) |" in md
    assert "{" not in md[md.index("## What was swept"):md.index("## Compute")]
    # numbers right-aligned, text left-aligned
    assert '<td class="num">0.547</td>' in page and '<td class="num">0.507 ± 0.013</td>' in page
    assert "<td>medvit_28_small</td>" in page and "<td>early_stopped</td>" in page
    # figures shown at their size in inches (96 CSS px an inch), never stretched past 6 in
    widths = [int(w) for w in re.findall(r'<img src="data:[^"]+" alt="[^"]*" width="(\d+)">', page)]
    assert len(widths) == 3 and all(400 <= w <= 576 for w in widths), widths
    # the top-trials table is split: results first, then the training details and checkpoint
    best = md[md.index("### RetinaMNIST"):md.index("## Caveats")]
    assert "| Rank | Trial | Model | α | Margin | Augment | Input | val_acc selection score |" in best
    assert "| Rank | Trial | Sweep | LR | Weight decay | Batch | Seed | Checkpoint |" in best
    # one dataset: no near-empty ours-minus-paper figure
    assert not (out / "figures" / "ours_minus_paper.png").exists()
    assert {p.name for p in (out / "figures").glob("*.png")} == {
        "curves_retinamnist-cpu.png", "alpha_margin_retinamnist-cpu.png", "model_augment_retinamnist-cpu.png"}


def test_read_ensemble_errors(tmp_path):
    good = retina_ensemble(tmp_path / "good")
    assert read_ensemble(good).members == read_ensemble(good.parent).members
    with pytest.raises(ValueError, match="ensemble file not found"):
        read_ensemble(tmp_path / "none")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not a JSON file"):
        read_ensemble(bad)
    bad.write_text(json.dumps({"dataset": "retinamnist", "members": []}))
    with pytest.raises(ValueError, match="no sweep, val, test"):
        read_ensemble(bad)
    data = json.loads(good.read_text())
    bad.write_text(json.dumps({**data, "members": [{"trial_id": "x"}]}))
    with pytest.raises(ValueError, match="members: need a non-empty list"):
        read_ensemble(bad)
    bad.write_text(json.dumps({**data, "winner": {"trial_id": "x", "val": {"acc": 0.5}}}))
    with pytest.raises(ValueError, match="winner: need"):
        read_ensemble(bad)
    del data["winner"]  # files written before the winner was reported
    bad.write_text(json.dumps(data))
    assert read_ensemble(bad).winner is None


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["members"][0].update(weight=None), "members: need"),
    (lambda d: d["members"][0].update(weight=-0.5), "members: need"),
    (lambda d: d["members"][0].update(trial_id=["a", "b"]), "members: need"),
    (lambda d: d.update(metric=3), "metric: 3 is not a metric name"),
    (lambda d: d.update(candidates="many"), "candidates: 'many' is not a whole number"),
], ids=["null weight", "negative weight", "list trial id", "integer metric", "text candidates"])
def test_hand_edited_ensemble_is_one_line(tmp_path, edit, expected):
    data = json.loads(retina_ensemble(tmp_path / "good").read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=expected) as err:
        read_ensemble(bad)
    assert "\n" not in str(err.value)


def test_cli_report_with_ensemble(tmp_path):
    results = write_results(retina_results(), tmp_path / "results.parquet")
    confirm = tmp_path / "confirm.parquet"
    retina_confirm().to_parquet(confirm)
    ensemble = retina_ensemble(tmp_path / "ens")
    out = tmp_path / "rep"
    assert main(["report", str(results), "--out", str(out), "--confirm", str(confirm),
                 "--ensemble", str(ensemble), "--ensemble", str(ensemble.parent)]) == 0
    md = (out / "report.md").read_text()
    assert md.count("| RetinaMNIST | Ensemble of 3 of 12 trials") == 2
    assert "no state.pt" not in md and "GradCAM" not in md  # the hand-built trials have no checkpoints
    assert main(["report", str(results), "--out", str(tmp_path / "rep2"), "--ensemble", str(tmp_path)]) == 2


@pytest.mark.slow  # starts a browser
def test_test_columns_inside_viewport_at_1280px(hand_report, tmp_path):
    """At 1,280 x 800 the best trial's test numbers are on screen without scrolling, and no
    table needs sideways scrolling to show its test columns."""
    html_path, _ = hand_report
    chromium = chromium_binary()
    probe = tmp_path / "geometry.html"
    probe.write_text(html_path.read_text().replace("</body>", GEOMETRY + "</body>"))
    r = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
         "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.search(r'data-geometry="([^"]*)"', r.stdout)
    assert found, "the geometry script did not run"
    geo = json.loads(html.unescape(found.group(1)))
    assert geo["width"] <= 1280
    headline = geo["tables"][0]
    assert len(headline["test"]) == 4  # Test ACC, AUC, QWK, MAE
    for box in headline["test"] + [geo["best"]]:
        assert box["right"] <= geo["width"] and box["bottom"] <= geo["height"], (box, geo["width"], geo["height"])
    for table in geo["tables"]:
        assert table["scroll"] <= table["client"], table
        assert all(box["right"] <= geo["width"] for box in table["test"]), table


def test_gradcam_pairs_one_architecture(tmp_path):
    from analysis.cli import auto_gradcam_checkpoints

    df = with_checkpoints(retina_results(), tmp_path)
    # the best alpha > 0 trial is medvit_28_tiny (720f1275); the pair stays with the best
    # architecture that has both losses: medvit_28_small at alpha 0 and alpha 0.2
    ce, ordinal, caption = auto_gradcam_checkpoints(df)
    assert (ce, ordinal) == (str(tmp_path / BEST), str(tmp_path / "e47d7b0f"))
    assert caption.startswith("GradCAM of medvit_28_small trained with cross-entropy (α = 0, trial 866f1d9e, ")
    # no architecture with both: the best of each, said to differ
    small_ordinal = (df["model"] == "medvit_28_small") & (df["alpha"] > 0)
    tiny_ce = (df["model"] == "medvit_28_tiny") & (df["alpha"] == 0)
    ce, ordinal, caption = auto_gradcam_checkpoints(df[~small_ordinal & ~tiny_ce])
    assert (ce, ordinal) == (str(tmp_path / BEST), str(tmp_path / "720f1275"))
    assert "the architectures differ" in caption


def test_table2_claim_only_for_an_alpha_against_alpha_0_on_retinamnist():
    def runs(alpha):
        return pd.DataFrame({"config_json": [json.dumps({"alpha": alpha})]})

    gain = ref.TABLE2[0.2].value - ref.TABLE2[0.0].value
    name = "the paper's Table 2 gain at alpha 0.2"
    assert _table2_claim("retinamnist", runs(0.2), runs(0.0)) == {name: pytest.approx(gain)}
    assert _table2_claim("retinamnist", runs(0.0), runs(0.2)) == {name: pytest.approx(-gain)}
    assert _table2_claim("retinamnist", runs(0.25), runs(0.0)) == {}  # an alpha the paper did not train
    assert _table2_claim("retinamnist", runs(0.2), runs(0.1)) == {}
    assert _table2_claim("pneumoniamnist", runs(0.2), runs(0.0)) == {}
    assert _table2_claim("retinamnist", pd.DataFrame({"x": [1]}), runs(0.0)) == {}
