"""write_report(): content checks, and the HTML page rendered in a real headless Chromium.

Chromium comes from Debian (``apt-get install -y chromium``); CI (``.ci/run``) installs it.
Where it is missing the rendering test is skipped, with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from analysis.report import write_report
from analysis.tables import TRAIN_CONFIG_KEYS
from analysis_sweeps import confirm_frame

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
    # figures linked in Markdown and present
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / rel).is_file(), rel


def test_best_yaml_files(report):
    html_path, md_path, df = report
    out = html_path.parent
    for ds in ("retinamnist", "pneumoniamnist"):
        cfg = yaml.safe_load((out / f"best_{ds}.yaml").read_text())
        assert list(cfg) == list(TRAIN_CONFIG_KEYS)
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
