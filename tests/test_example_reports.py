"""The example reports under reports/ are what reports/README.md says they are: its tables quote
the committed report.md files, the paired differences its bullets add are what the kept confirm
runs give, and cpu-audit/ is what `medsweep report` writes today from the inputs kept beside it
(slow: the report rendered again). A change to the report's format fails here until the example
is written again with the README's 15-second command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from analysis.tables import load_confirm_frame, paired_difference
from medsweep.cli import main

REPORTS = Path(__file__).resolve().parent.parent / "reports"
CPU_AUDIT = REPORTS / "cpu-audit"
# A figure as the README and the report write it: 0.527, +0.021, 0.527 ± 0.018, [0.478, 0.576].
FIGURE = re.compile(r"\[[+-]?\d\.\d{3}, [+-]?\d\.\d{3}\]|[+-]?\d\.\d{3}(?: ± \d\.\d{3})?")


def readme_section(example: str) -> str:
    """reports/README.md from the heading that names ``example``/ to the next heading."""
    text = (REPORTS / "README.md").read_text()
    start = text.index(f"## `{example}/`")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("example", ["medmnist-cpu", "cpu-audit"])
def test_the_readmes_table_quotes_the_report(example):
    table = "\n".join(line for line in readme_section(example).splitlines() if line.startswith("| "))
    figures = FIGURE.findall(table)
    report = (REPORTS / example / "report.md").read_text()
    assert len(figures) >= 16, figures
    assert [figure for figure in figures if figure not in report] == []


def signed(interval) -> str:
    return f"{interval.mean_diff:+.3f}"


def bounds(interval) -> str:
    return f"[{interval.ci_low:+.3f}, {interval.ci_high:+.3f}]"


def test_the_cpu_audit_bullets_paired_differences_are_the_kept_runs():
    """Two pairs the README states that the report words the other way round or not at all:
    PneumoniaMNIST's rank 2 minus its winner (the report: winner minus rank 2) and the Ordinal
    Loss pair's QWK (the report: ACC only)."""
    confirm = load_confirm_frame(CPU_AUDIT / "data" / "confirm.parquet")
    runs = dict(list(confirm.groupby(["dataset", "label"])))
    section = " ".join(readme_section("cpu-audit").split())

    rank2 = paired_difference(runs["pneumoniamnist", "rank 2"], runs["pneumoniamnist", "best"])
    assert (f"Rank 2 minus the winner: {signed(rank2.over_seeds)}, 95% CI {bounds(rank2.over_seeds)} over 3 "
            f"seeds (coarse), {bounds(rank2.over_seeds_and_images)} over seeds and test images") in section
    qwk = paired_difference(runs["retinamnist", "best"], runs["retinamnist", "best alpha=0"], "qwk").over_seeds
    assert f"{signed(qwk)} QWK {bounds(qwk)}" in section


def report_text(path: Path) -> str:
    """report.md without its time stamp and its GradCAM figure, which needs the sweep's
    checkpoints (not kept) and which `medsweep report` leaves out without them."""
    lines = path.read_text().splitlines()
    kept = "\n".join(line for line in lines if not line.startswith("Generated ") and "GradCAM of the best" not in line)
    return re.sub(r"\n{3,}", "\n\n", kept)


@pytest.mark.slow
def test_the_cpu_audit_report_is_what_medsweep_report_writes_today(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(CPU_AUDIT / "data", data)
    out = tmp_path / "report"
    assert main(["report", str(data / "results.parquet"), "--confirm", str(data / "confirm.parquet"),
                 "--ensemble", str(data / "ens-retina"), "--ensemble", str(data / "ens-pneu"),
                 "--out", str(out)]) == 0
    assert "gradcam skipped" in capsys.readouterr().out
    kept = {path.relative_to(CPU_AUDIT) for path in CPU_AUDIT.rglob("*") if path.is_file()
            and path.parts[len(CPU_AUDIT.parts)] not in ("data", "specs")}
    written = {path.relative_to(out) for path in out.rglob("*") if path.is_file()}
    # report.html is left out of the tree (reports/README.md says why); gradcam.png is kept from the sweep.
    assert written - kept == {Path("report.html")} and kept - written == {Path("figures/gradcam.png")}
    for name in sorted(kept & written):
        if name.name == "report.md":
            assert report_text(out / name) == report_text(CPU_AUDIT / name)
        elif name.suffix != ".png":  # a figure's bytes follow matplotlib's version, not the numbers
            assert (out / name).read_bytes() == (CPU_AUDIT / name).read_bytes(), name
