"""Claims of docs/ARCHITECTURE.md that the code could quietly stop keeping: the product imports
neither the benchmarks nor the studies, the analysis imports no Ray, and the augmentation
section names every AugmentConfig field."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from medvit.augment import AugmentConfig
from test_layers import LAYERS, upward_imports

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = (REPO / "docs" / "ARCHITECTURE.md").read_text()


def section(heading: str) -> str:
    return ARCHITECTURE.partition(f"\n### {heading}\n")[2].split("\n### ", 1)[0]


def section_of_layers() -> str:
    return ARCHITECTURE.partition("\n## Layers\n")[2].split("\n## ", 1)[0]


def test_the_product_imports_neither_benchmarks_nor_studies():
    assert "`benchmarks`" in section_of_layers() and "`studies`" in section_of_layers()
    assert upward_imports(REPO, (*LAYERS, "benchmarks", "studies")) == []


def test_importing_every_analysis_module_imports_no_ray():
    code = ("import importlib, pkgutil, sys, analysis\n"
            "names = [m.name for m in pkgutil.iter_modules(analysis.__path__, 'analysis.')]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    count, ray_modules = run.stdout.split(" ", 1)
    assert int(count) >= 10 and ray_modules.strip() == "[]"


def test_the_augment_section_names_every_augment_config_field():
    text = section("`medvit/augment.py`")
    documented = set(re.findall(r"`(\w+)`", text))
    assert {f.name for f in dataclasses.fields(AugmentConfig)} <= documented
