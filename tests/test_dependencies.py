"""pyproject.toml declares every third-party package lgtool imports: a fresh `pip install lgtool` gets them all.

Every import counts, at the top of a module or inside a function, and so does every module named to be loaded on
first use (`lazy("torch")`, `LazyModule("timm", ...)`, see lgtool/base/lazy.py): deferring an import does not make
the package optional.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check needs to run on one Python only

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def imported_names(path: Path) -> set[str]:
    """The top-level names of the absolute imports and lazily loaded modules of one source file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "lazy",
            "LazyModule",
            "import_module",
        ):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return {name.partition(".")[0] for name in names}


def third_party_imports() -> dict[str, list[str]]:
    """Each third-party top-level name lgtool imports, with the files that import it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "lgtool").rglob("*.py")):
        for name in imported_names(path):
            if name not in sys.stdlib_module_names and name != "lgtool" and not name.startswith("_"):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: `huggingface_hub` and `Huggingface-Hub` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(pyproject: Path = PYPROJECT) -> set[str]:
    """The normalized names of [project] dependencies (a requirement's name, before any version or marker)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {normalize(_requirement_name(dep)) for dep in deps}


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else ""


def undeclared(imports: dict[str, list[str]], names: set[str]) -> list[str]:
    """What an import needs that `names` lacks: 'distribution (import name, first file)', one per import."""
    dists = packages_distributions()
    missing = []
    for name, files in sorted(imports.items()):
        candidates = {normalize(d) for d in dists.get(name, [name])}  # installed: its distribution(s)
        if not candidates & names:
            missing.append(f"{'/'.join(sorted(candidates))} (import {name}, {files[0]})")
    return missing


def test_every_third_party_import_is_declared():
    imports = third_party_imports()
    # the walk finds what it must: a plain import, a from-import and a lazy one (lgtool/base/lazy.py)
    assert {"torch", "safetensors", "huggingface_hub", "timm", "matplotlib"} <= imports.keys(), imports.keys()
    missing = undeclared(imports, declared())
    assert not missing, "undeclared in pyproject.toml: " + "; ".join(missing)


@pytest.mark.parametrize("dropped", ["huggingface-hub", "pillow", "matplotlib", "safetensors", "timm", "torch"])
def test_a_dependency_dropped_from_pyproject_is_caught(tmp_path, dropped):
    text = PYPROJECT.read_text()
    lines = text.splitlines()
    kept = "\n".join(line for line in lines if normalize(_requirement_name(line.strip().strip('"'))) != dropped)
    assert kept != text, f"{dropped} is not on a line of its own in pyproject.toml's dependencies"
    (tmp_path / "pyproject.toml").write_text(kept)
    missing = undeclared(third_party_imports(), declared(tmp_path / "pyproject.toml"))
    assert [m for m in missing if m.startswith(dropped)], missing


def test_import_names_map_to_their_distributions():
    # an import name that is not its distribution's name is looked up, not guessed: PyYAML is imported as yaml
    imports = {"yaml": ["x.py"]}
    if "yaml" not in packages_distributions():
        pytest.skip("PyYAML is not installed here")
    assert undeclared(imports, {"pyyaml"}) == []
    assert undeclared(imports, {"yaml"}) == ["pyyaml (import yaml, x.py)"]
