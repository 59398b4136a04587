"""The layering contract: each package imports only the packages below it, in the order
docs/ARCHITECTURE.md's "Layers" section lists them. Every import counts, the lazy ones inside
functions too, read from the source with `ast` (nothing is imported). And every third-party
package the product imports is one pyproject.toml declares."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from pyproject_data import pyproject

if sys.version_info >= (3, 11):
    from importlib.metadata import packages_distributions
else:  # 3.10's reads top_level.txt only, which most wheels no longer ship (the test extras)
    from importlib_metadata import packages_distributions

REPO = Path(__file__).resolve().parents[1]
# Bottom first: a package may import those before it, never those after it.
LAYERS = ("medvit", "trainables", "sweeps", "analysis", "medsweep")


def imported_packages(source: str) -> set[str]:
    """The top-level names a module's source imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def upward_imports(root: Path, layers: tuple[str, ...]) -> list[str]:
    """Every import of a package above the importing one, as `file: imports package`."""
    found = []
    for level, package in enumerate(layers):
        for path in sorted((root / package).rglob("*.py")):
            above = imported_packages(path.read_text()) & set(layers[level + 1:])
            found += [f"{path.relative_to(root)}: imports {name}" for name in sorted(above)]
    return found


def documented_layers(text: str) -> tuple[str, ...]:
    """The numbered list under ARCHITECTURE.md's '## Layers' heading, bottom first."""
    section = text.partition("\n## Layers\n")[2].split("\n## ", 1)[0]
    return tuple(re.findall(r"^\d+\. `(\w+)`", section, re.M))


def test_every_layer_is_a_package_of_the_checkout():
    assert [p for p in LAYERS if not (REPO / p / "__init__.py").is_file()] == []


def test_no_package_imports_one_above_it():
    assert upward_imports(REPO, LAYERS) == []


def test_the_check_finds_an_upward_import_even_inside_a_function(tmp_path):
    for package in ("low", "high"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "low" / "reader.py").write_text("def read():\n    from high.thing import x\n    return x\n")
    (tmp_path / "high" / "thing.py").write_text("import low.reader\n")
    assert upward_imports(tmp_path, ("low", "high")) == ["low/reader.py: imports high"]


def test_architecture_doc_lists_the_layers_the_contract_enforces():
    assert documented_layers((REPO / "docs" / "ARCHITECTURE.md").read_text()) == LAYERS


def undeclared_imports(root: Path, layers: tuple[str, ...], dependencies: list[str]) -> list[str]:
    """Every third-party package the product imports whose distribution ``dependencies`` does
    not name, as `package (distribution)`: one that only arrives with another would vanish
    when that one stops requiring it."""

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {normal(re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0]) for d in dependencies}
    distributions = packages_distributions()
    imported = set().union(*(imported_packages(path.read_text())
                             for package in layers for path in (root / package).rglob("*.py")))
    third_party = sorted(imported - set(layers) - set(sys.stdlib_module_names) - {"__future__"})
    return [f"{name} ({', '.join(distributions.get(name, ['not installed']))})" for name in third_party
            if not {normal(d) for d in distributions.get(name, [])} & declared]


def test_every_package_the_product_imports_is_a_declared_dependency():
    dependencies = pyproject()["project"]["dependencies"]
    assert undeclared_imports(REPO, LAYERS, dependencies) == []
    assert undeclared_imports(REPO, LAYERS, [d for d in dependencies if not d.startswith("scipy")]) == ["scipy (scipy)"]
