"""Claims of docs/ARCHITECTURE.md that the code could quietly stop keeping: the product imports
neither the benchmarks nor the studies, the analysis imports no Ray, and the augmentation
section names every AugmentConfig field."""

from __future__ import annotations

import ast
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


HEAVY = ("torchvision", "medmnist", "sklearn", "scipy")


def modules_after(code: str, *args: str) -> set[str]:
    """The heavy packages a fresh interpreter has imported after ``code`` (whose ``args`` are
    ``sys.argv[1:]``)."""
    report = f"import sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    run = subprocess.run([sys.executable, "-c", f"{code}\n{report}", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(ast.literal_eval(run.stdout.strip().splitlines()[-1]))


def test_a_training_process_imports_none_of_the_slow_packages(real_root, tmp_path):
    """Each of torchvision, medmnist (its evaluator brings scikit-learn) and SciPy took 1-1.5 s to
    import, in every `medsweep train` and every sweep trial's worker: 3.5 s before its first
    batch. A MedViT run, its checkpoint and its metrics need none of them."""
    train = ("import sys\nimport trainables.medvit_trainable\nfrom medsweep.cli import main\n"
             "assert main(['train', '--dataset', 'retinamnist', '--model', 'medvit_28_tiny', '--epochs', '1',"
             " '--batch-size', '64', '--subset', '64', '--data-root', sys.argv[1], '--out', sys.argv[2]]) == 0")
    assert modules_after(train, str(real_root), str(tmp_path / "run")) == set()
    # the check can fail: a ResNet baseline imports torchvision when it is built
    resnet = "from medvit.models import create_model\ncreate_model('resnet18_28', in_chans=1, num_classes=2)"
    assert modules_after(resnet) == {"torchvision"}


def test_the_tables_import_scipy_only_for_a_spread():
    """`medsweep status` and `collect` import the tables; SciPy (0.8 s) serves one t quantile."""
    assert modules_after("import analysis.cli, analysis.collect, analysis.tables") == set()
    assert modules_after("from analysis.stats import mean_ci\nmean_ci([0.5, 0.6])") == {"scipy"}


def test_the_augment_section_names_every_augment_config_field():
    text = section("`medvit/augment.py`")
    documented = set(re.findall(r"`(\w+)`", text))
    assert {f.name for f in dataclasses.fields(AugmentConfig)} <= documented
