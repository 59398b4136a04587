"""analysis.reference: every number is the paper's (or REFERENCE.md's), exactly as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis import reference as ref

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PAPER = SHARED / "paper" / "medvit-ordinal-loss-paper.md"
REFMD = SHARED / "REFERENCE.md"


@pytest.fixture(scope="module")
def paper_text() -> str:
    if not PAPER.is_file():
        pytest.fail(f"paper not found at {PAPER}", pytrace=False)
    return PAPER.read_text(encoding="utf-8")


def _parse_table1(text: str) -> dict[str, dict[str, tuple[str, str]]]:
    """The paper's Table 1 as {method: {DisplayName: (auc, acc)}} from its tab-separated lines."""
    start = text.index("Table 1:")
    end = text.index("Table 2:")
    out: dict[str, dict[str, tuple[str, str]]] = {}
    datasets: list[str] = []
    for line in text[start:end].splitlines():
        cells = line.split("\t")
        if cells[0] == "Methods":
            datasets = [c for c in cells[1:] if c]
        elif len(cells) == 1 + 2 * len(datasets) and cells[0] and datasets:
            for i, ds in enumerate(datasets):
                out.setdefault(cells[0], {})[ds] = (cells[1 + 2 * i], cells[2 + 2 * i])
    return out


def test_table1_exactly_as_printed(paper_text):
    parsed = _parse_table1(paper_text)
    assert list(parsed) == list(ref.TABLE1_METHODS)
    for method, row in parsed.items():
        assert len(row) == 10
        for display, (auc, acc) in row.items():
            flag = display.lower()
            assert ref.TABLE1[method][flag]["auc"].printed == auc, (method, display)
            assert ref.TABLE1[method][flag]["acc"].printed == acc, (method, display)
            assert ref.TABLE1[method][flag]["auc"].value == float(auc)
    # nothing extra in the module
    assert {ds for m in ref.TABLE1.values() for ds in m} == set(ref.TABLE1_DATASETS)
    assert ref.TABLE1["ResNet-18 (224)"]["dermamnist"]["auc"].printed == "0.92"  # precision kept


def test_table2_exactly_as_printed(paper_text):
    lines = paper_text[paper_text.index("Table 2:"):].splitlines()
    alphas = next(ln for ln in lines if ln.startswith("$\\alpha$\t")).split("\t")[1:]
    accs = next(ln for ln in lines if ln.startswith("ACC\t")).split("\t")[1:]
    assert [ref.TABLE2_ALPHA_PRINTED[a] for a in ref.TABLE2] == alphas
    assert [v.printed for v in ref.TABLE2.values()] == accs


def test_text_only_numbers_appear_in_paper(paper_text):
    sentence = next(s for s in paper_text.split(". ") if "OrganMNIST datasets" in s)
    organs = ref.PAPER_TEXT_ONLY["MedViT"]["organsmnist"]
    assert organs["auc"].printed == "0.975" and organs["acc"].printed == "0.796"
    for v in organs.values():
        assert v.printed in sentence
    assert "OrganSMNIST" not in paper_text[paper_text.index("Table 1:"):paper_text.index("Table 2:")]


def test_every_number_in_module_is_printed_in_its_source(paper_text):
    refmd = REFMD.read_text(encoding="utf-8")
    values: list[ref.RefValue] = []
    for m in ref.TABLE1.values():
        for d in m.values():
            values += d.values()
    for m in ref.PAPER_TEXT_ONLY.values():
        for d in m.values():
            values += d.values()
    values += ref.TABLE2.values()
    for d in ref.PAPER_MEDVIT.values():
        values += d.values()
    for v in values:
        assert re.search(rf"(?<![\d.]){re.escape(v.printed)}(?![\d])", paper_text), v
        assert v.source.startswith(ref.PAPER)
    for r in ref.RETINA_OTHER:
        for v in (r.acc, r.auc, r.acc_sd):
            if v is not None:
                assert v.printed in refmd, (r.label, v.printed)
                assert "REFERENCE.md" in v.source
        assert r.source


def test_lookup_helpers():
    assert ref.table1_value("MedViT", "retinamnist", "acc").printed == "0.552"
    assert ref.table1_value("MedViT", "organsmnist", "auc").printed == "0.975"
    assert ref.table1_value("AutoKeras", "organsmnist", "auc") is None
    assert ref.table1_value("AutoKeras", "retinamnist", "acc") is None
    df = ref.table1_long()
    assert len(df) == 8 * 10 * 2 + 3
    assert df["printed"].map(float).equals(df["value"])
    assert ref.display_name("octmnist") == "OCTMNIST"


def test_anchors():
    retina = ref.anchors("retinamnist")
    by_label = {a.label: a for a in retina}
    plain = [a for a in retina if a.label.startswith("Plain MedViT")]
    assert [(a.acc.printed, a.qwk.printed) for a in plain] == [("0.523", "0.543"), ("0.534", "0.575")]
    vgg = by_label["MedMNIST+ VGG16 (ImageNet-pretrained, 3 seeds)"]
    assert (vgg.acc.printed, vgg.acc_sd.printed, vgg.auc.printed) == ("0.542", "0.008", "0.754")
    assert by_label["MedViT-S (upsampled to 224 px)"].acc.printed == "0.561"
    assert by_label["Seed paper, MedViT, α = 0.2 (one run)"].acc is ref.TABLE2[0.2]
    assert not any("v2 benchmark" in a.label for a in retina)  # "about 0.53" is no anchor
    (pneumonia,) = ref.anchors("pneumoniamnist")
    assert pneumonia.acc is ref.PAPER_MEDVIT["pneumoniamnist"]["acc"]
    assert ref.anchors("no-such-dataset") == ()
