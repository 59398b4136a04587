"""Published numbers that medsweep results are compared with (all on the MedMNIST *test* split).

Everything here is reference data, typed in from the sources named in each entry and kept in
two forms: the string exactly as printed (``"0.92"`` stays ``"0.92"``: the tables show it
that way) and its float value.

Contents
--------
``TABLE1``
    The seed paper's Table 1 (Liu, "Medical Image Classification Based on Transformer Model
    and Ordinal Loss"): 8 methods x 10 datasets, AUC and ACC. Access it with
    :func:`table1_value` or as a tidy DataFrame with :func:`table1_long`.
``PAPER_TEXT_ONLY``
    Numbers the paper gives only in its prose. OrganSMNIST is discussed in section 3 (MedViT
    AUC 0.975, ACC 0.796) but the printed Table 1 has no OrganSMNIST column, so no other
    method has an OrganSMNIST number from this paper.
``TABLE2``
    The paper's Table 2: MedViT on RetinaMNIST with the Ordinal Loss, alpha -> ACC.
    Table 1 has no RetinaMNIST column; the paper's MedViT RetinaMNIST cross-entropy number is
    Table 2's ``alpha = 0.0`` entry.
``RETINA_OTHER``
    Other RetinaMNIST (28 px) results collected in the project's ``REFERENCE.md``: the
    MedMNIST v2 benchmark, MedMNIST+ and MedViT-S upsampled to 224 px.
``RETINA_PLAIN_MEDVIT``
    The project's own measurement of what training without a sweep gives (medsweep issue 8).
:func:`anchors`
    The numbers a sweep's confirmed and ensemble results are shown beside, per dataset.

Known oddities of the paper, kept as printed (see ``PAPER_NOTES``): MedViT's ChestMNIST AUC
is printed as 0.550 (near chance, while its ACC equals the ResNets'); the prose quotes
OrganCMNIST AUC 0.992 for MedViT while Table 1 prints 0.993 (we keep the table's value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "RefValue",
    "PAPER",
    "TABLE1",
    "TABLE1_METHODS",
    "TABLE1_DATASETS",
    "PAPER_TEXT_ONLY",
    "TABLE2",
    "table2_gain",
    "RETINA_OTHER",
    "RetinaReference",
    "RETINA_PLAIN_MEDVIT",
    "Anchor",
    "anchors",
    "PAPER_NOTES",
    "DATASET_DISPLAY",
    "ALL_DATASETS",
    "PAPER_MEDVIT",
    "table1_value",
    "table1_long",
    "paper_medvit",
    "display_name",
]

PAPER = (
    'Liu, Y., "Medical Image Classification Based on Transformer Model and Ordinal Loss"'
)
SRC_TABLE1 = f"{PAPER}, Table 1"
SRC_TABLE2 = f"{PAPER}, Table 2"
SRC_TEXT = f"{PAPER}, section 3 (text; not in Table 1)"


@dataclass(frozen=True)
class RefValue:
    """One published number: ``printed`` exactly as the source prints it, ``value`` as float."""

    printed: str
    source: str
    note: str = ""

    @property
    def value(self) -> float:
        return float(self.printed)


# MedMNIST flags (lower case, as medmnist names them) and their display names, paper order.
DATASET_DISPLAY: dict[str, str] = {
    "pathmnist": "PathMNIST",
    "chestmnist": "ChestMNIST",
    "dermamnist": "DermaMNIST",
    "octmnist": "OCTMNIST",
    "pneumoniamnist": "PneumoniaMNIST",
    "retinamnist": "RetinaMNIST",
    "breastmnist": "BreastMNIST",
    "bloodmnist": "BloodMNIST",
    "tissuemnist": "TissueMNIST",
    "organamnist": "OrganAMNIST",
    "organcmnist": "OrganCMNIST",
    "organsmnist": "OrganSMNIST",
}
ALL_DATASETS: tuple[str, ...] = tuple(DATASET_DISPLAY)

# The ten datasets that Table 1 prints, in its column order.
TABLE1_DATASETS: tuple[str, ...] = (
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
)

TABLE1_METHODS: tuple[str, ...] = (
    "ResNet-18 (28)",
    "ResNet-18 (224)",
    "ResNet-50 (28)",
    "ResNet-50 (224)",
    "auto-sklearn",
    "AutoKeras",
    "Google AutoML Vision",
    "MedViT",
)

# Each row: AUC, ACC pairs in TABLE1_DATASETS order, as printed.
_TABLE1_ROWS: dict[str, str] = {
    "ResNet-18 (28)": "0.983 0.907 0.768 0.947 0.917 0.735 0.943 0.743 0.944 0.854 "
    "0.901 0.863 0.998 0.958 0.93 0.676 0.997 0.935 0.992 0.900",
    "ResNet-18 (224)": "0.989 0.909 0.773 0.947 0.92 0.754 0.958 0.763 0.956 0.864 "
    "0.891 0.833 0.998 0.963 0.933 0.681 0.998 0.951 0.994 0.920",
    "ResNet-50 (28)": "0.99 0.911 0.769 0.947 0.913 0.735 0.952 0.762 0.948 0.854 "
    "0.857 0.812 0.997 0.956 0.931 0.68 0.997 0.935 0.992 0.905",
    "ResNet-50 (224)": "0.989 0.892 0.773 0.948 0.912 0.731 0.958 0.776 0.962 0.884 "
    "0.866 0.842 0.997 0.95 0.932 0.68 0.998 0.947 0.993 0.911",
    "auto-sklearn": "0.934 0.716 0.649 0.779 0.902 0.719 0.887 0.601 0.942 0.855 "
    "0.836 0.803 0.984 0.878 0.828 0.532 0.963 0.762 0.976 0.829",
    "AutoKeras": "0.959 0.834 0.742 0.937 0.915 0.749 0.955 0.763 0.947 0.878 "
    "0.871 0.831 0.998 0.961 0.941 0.703 0.994 0.905 0.99 0.879",
    "Google AutoML Vision": "0.944 0.728 0.778 0.948 0.914 0.768 0.963 0.771 0.991 0.946 "
    "0.919 0.861 0.998 0.966 0.924 0.673 0.99 0.886 0.988 0.877",
    "MedViT": "0.992 0.909 0.550 0.947 0.924 0.768 0.960 0.783 0.978 0.939 "
    "0.856 0.891 0.997 0.968 0.922 0.672 0.997 0.932 0.993 0.920",
}

_CELL_NOTES: dict[tuple[str, str, str], str] = {
    ("MedViT", "chestmnist", "auc"): "as printed; near chance level, likely a typo in the paper",
    ("MedViT", "organcmnist", "auc"): "Table 1 prints 0.993; the paper's text says 0.992",
}


def _build_table1() -> dict[str, dict[str, dict[str, RefValue]]]:
    table: dict[str, dict[str, dict[str, RefValue]]] = {}
    for method, row in _TABLE1_ROWS.items():
        cells = row.split()
        assert len(cells) == 2 * len(TABLE1_DATASETS), method
        table[method] = {}
        for i, ds in enumerate(TABLE1_DATASETS):
            auc, acc = cells[2 * i], cells[2 * i + 1]
            table[method][ds] = {
                "auc": RefValue(auc, SRC_TABLE1, _CELL_NOTES.get((method, ds, "auc"), "")),
                "acc": RefValue(acc, SRC_TABLE1, _CELL_NOTES.get((method, ds, "acc"), "")),
            }
    return table


#: ``TABLE1[method][dataset_flag][metric]`` with metric ``"auc"`` or ``"acc"``.
TABLE1: dict[str, dict[str, dict[str, RefValue]]] = _build_table1()

#: Numbers stated only in the paper's text: ``PAPER_TEXT_ONLY[method][dataset][metric]``.
PAPER_TEXT_ONLY: dict[str, dict[str, dict[str, RefValue]]] = {
    "MedViT": {
        "organsmnist": {
            "auc": RefValue(
                "0.975", SRC_TEXT, "OrganSMNIST is not a Table 1 column; only MedViT's number is given"
            ),
            "acc": RefValue(
                "0.796", SRC_TEXT, "OrganSMNIST is not a Table 1 column; only MedViT's number is given"
            ),
        }
    }
}

#: Paper Table 2: alpha -> MedViT test ACC on RetinaMNIST with the Ordinal Loss (margin 0.1).
TABLE2: dict[float, RefValue] = {
    0.0: RefValue("0.552", SRC_TABLE2, "alpha = 0 is plain cross-entropy"),
    0.1: RefValue("0.570", SRC_TABLE2),
    0.2: RefValue("0.594", SRC_TABLE2, "the paper's best alpha"),
    0.3: RefValue("0.581", SRC_TABLE2),
    0.4: RefValue("0.557", SRC_TABLE2),
    0.5: RefValue("0.546", SRC_TABLE2),
}
#: How the alpha keys are printed in the paper's Table 2 header.
TABLE2_ALPHA_PRINTED: dict[float, str] = {a: f"{a:.1f}" for a in TABLE2}


def table2_gain(alpha: float) -> float | None:
    """The test ACC the paper's Table 2 gives the Ordinal Loss at ``alpha`` over alpha 0 (one
    run each), or None for an alpha it did not train."""
    match = next((a for a in TABLE2 if a > 0 and math.isclose(a, alpha)), None)
    return None if match is None else TABLE2[match].value - TABLE2[0.0].value


@dataclass(frozen=True)
class RetinaReference:
    """A RetinaMNIST (28 px input) result from outside the seed paper."""

    label: str
    acc: RefValue
    auc: RefValue | None
    acc_sd: RefValue | None
    source: str
    note: str = ""


_SRC_REFMD = "project REFERENCE.md"
RETINA_OTHER: tuple[RetinaReference, ...] = (
    RetinaReference(
        label="MedMNIST v2 benchmark (best)",
        acc=RefValue("0.53", f"Yang et al. 2023, MedMNIST v2 benchmark, via {_SRC_REFMD}",
                     "approximate: REFERENCE.md says 'about 0.53'"),
        auc=None,
        acc_sd=None,
        source="Yang et al., MedMNIST v2, Scientific Data 10, 41 (2023)",
        note="best ACC over the benchmark's methods, approximately",
    ),
    RetinaReference(
        label="MedMNIST+ VGG16 (ImageNet-pretrained, 3 seeds)",
        acc=RefValue("0.542", f"Doerrich et al. 2025, MedMNIST+, via {_SRC_REFMD}"),
        auc=RefValue("0.754", f"Doerrich et al. 2025, MedMNIST+, via {_SRC_REFMD}"),
        acc_sd=RefValue("0.008", f"Doerrich et al. 2025, MedMNIST+, via {_SRC_REFMD}"),
        source="Doerrich et al. 2025, MedMNIST+",
        note="mean ± std over 3 seeds",
    ),
    RetinaReference(
        label="MedViT-S (upsampled to 224 px)",
        acc=RefValue("0.561", f"MedViT-S on RetinaMNIST, via {_SRC_REFMD}"),
        auc=RefValue("0.773", f"MedViT-S on RetinaMNIST, via {_SRC_REFMD}"),
        acc_sd=None,
        source="Manzari et al. 2023 (MedViT), RetinaMNIST result",
        note="28 px images upsampled to 224 px",
    ),
)

#: A plain official MedViT-small trained once per seed, no sweep (30 epochs, the recipe before
#: issue 8), alpha 0 and 0.2, 3 seeds each: what a sweep has to beat to be worth running.
_SRC_ISSUE8 = "medsweep issue 8, measured on this project's code (official medvit_small, 30 epochs, 3 seeds)"
RETINA_PLAIN_MEDVIT: dict[float, dict[str, RefValue]] = {
    0.0: {"acc": RefValue("0.523", _SRC_ISSUE8), "qwk": RefValue("0.543", _SRC_ISSUE8)},
    0.2: {"acc": RefValue("0.534", _SRC_ISSUE8), "qwk": RefValue("0.575", _SRC_ISSUE8)},
}


@dataclass(frozen=True)
class Anchor:
    """A test-split result a sweep's numbers are shown beside (``acc_sd``: std over seeds)."""

    label: str
    acc: RefValue
    source: str
    acc_sd: RefValue | None = None
    auc: RefValue | None = None
    qwk: RefValue | None = None


def anchors(dataset: str) -> tuple[Anchor, ...]:
    """The anchors of one dataset flag: for RetinaMNIST the plain MedViT without a sweep, the
    best published 28 px results and the seed paper's best alpha; elsewhere the paper's MedViT."""
    ds = dataset.lower()
    if ds == "retinamnist":
        plain = tuple(
            Anchor(f"Plain MedViT-small, no sweep, α = {a:g} (3 seeds)", v["acc"], "medsweep issue 8",
                   qwk=v["qwk"])
            for a, v in RETINA_PLAIN_MEDVIT.items()
        )
        # The MedMNIST v2 benchmark's "about 0.53" is approximate: not a number to measure against.
        other = tuple(Anchor(r.label, r.acc, r.source, acc_sd=r.acc_sd, auc=r.auc)
                      for r in RETINA_OTHER if not r.acc.note.startswith("approximate"))
        return plain + other + (Anchor("Seed paper, MedViT, α = 0.2 (one run)", TABLE2[0.2], SRC_TABLE2),)
    paper = PAPER_MEDVIT.get(ds, {})
    if "acc" not in paper:
        return ()
    return (Anchor("Seed paper, MedViT (one run)", paper["acc"], paper["acc"].source, auc=paper.get("auc")),)


PAPER_NOTES: tuple[str, ...] = (
    "Table 1 covers 10 of the 12 MedMNIST 2D datasets: RetinaMNIST and OrganSMNIST are not columns.",
    "RetinaMNIST: the paper's MedViT cross-entropy result is Table 2's alpha = 0.0 entry (ACC 0.552); "
    "no AUC is given.",
    "OrganSMNIST: only MedViT's numbers are given, in the text (AUC 0.975, ACC 0.796).",
    "MedViT ChestMNIST AUC is printed as 0.550 (near chance); kept as printed.",
    "MedViT OrganCMNIST AUC: Table 1 prints 0.993, the text says 0.992; the table's value is used.",
    "The paper reports a single run per number (no seeds or intervals).",
)


def _paper_medvit() -> dict[str, dict[str, RefValue]]:
    out: dict[str, dict[str, RefValue]] = {ds: dict(TABLE1["MedViT"][ds]) for ds in TABLE1_DATASETS}
    out["organsmnist"] = dict(PAPER_TEXT_ONLY["MedViT"]["organsmnist"])
    out["retinamnist"] = {
        "acc": RefValue(TABLE2[0.0].printed, SRC_TABLE2, "alpha = 0.0 (cross-entropy) entry of Table 2")
    }
    return out


#: The paper's MedViT numbers for every dataset it gives one for (Table 1, text, Table 2 alpha=0).
PAPER_MEDVIT: dict[str, dict[str, RefValue]] = _paper_medvit()


def display_name(dataset: str) -> str:
    """``"retinamnist"`` -> ``"RetinaMNIST"``; unknown names are returned unchanged."""
    return DATASET_DISPLAY.get(dataset.lower(), dataset)


def table1_value(method: str, dataset: str, metric: str) -> RefValue | None:
    """A reference number for ``method`` on ``dataset`` (flag) and ``metric`` (``auc``/``acc``).

    Looks in Table 1, then in the paper's text-only numbers (and, for MedViT on
    RetinaMNIST ACC, Table 2's alpha = 0 entry). ``None`` when the paper gives none.
    """
    ds, m = dataset.lower(), metric.lower()
    if method == "MedViT":
        return PAPER_MEDVIT.get(ds, {}).get(m)
    return TABLE1.get(method, {}).get(ds, {}).get(m)


def paper_medvit(dataset: str) -> dict[str, RefValue]:
    """The paper's MedViT numbers for one dataset flag (may be empty)."""
    return dict(PAPER_MEDVIT.get(dataset.lower(), {}))


def table1_long(include_extra: bool = True) -> pd.DataFrame:
    """Table 1 as a tidy frame: method, dataset, metric, printed, value, source, note.

    ``include_extra`` adds the paper's MedViT numbers that are not Table 1 cells
    (OrganSMNIST from the text, RetinaMNIST ACC from Table 2).
    """
    rows = []
    for method in TABLE1_METHODS:
        for ds in ALL_DATASETS:
            for metric in ("auc", "acc"):
                ref = TABLE1[method].get(ds, {}).get(metric)
                if ref is None and include_extra and method == "MedViT":
                    ref = PAPER_MEDVIT.get(ds, {}).get(metric)
                if ref is None:
                    continue
                rows.append(
                    dict(method=method, dataset=ds, metric=metric, printed=ref.printed,
                         value=ref.value, source=ref.source, note=ref.note)
                )
    return pd.DataFrame(rows)
