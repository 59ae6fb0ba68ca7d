"""The folder tree is the dependency graph: every module of lgtool imports only from its own layer or a lower
one, and no imports run in a circle. Imports inside functions count, and so do the names of modules loaded on
first use (`lazy("lgtool....")`, see lgtool/base/lazy.py): a deferred import is still a dependency.

Layers, lowest first (a module belongs to the first whose prefix names it):
- base: torch-free: Arch, the safetensors header, errors, text, atomic writes, compatibility, `lazy`;
- rules: one module per method and the registry;
- baselines: one module per baseline (what the bench compares a learngene against) and the registry;
- artifacts: the learngene file and its metadata, the sizes a learngene makes, the Desc-Net folder, `inspect`;
- expansion: learngene + size -> timm weights, the Aux-Net, official checkpoints, the width's order;
- training: data, the recipe, the loop, learn, finetune, calibrate (and the expand command built on it);
- bench: rows, route costs, report;
- cli: the commands; api: the package root (the postcard API and `python -m lgtool`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "lgtool"
LAYERS = (
    ("base", ("lgtool.base",)),
    ("rules", ("lgtool.rules",)),
    ("baselines", ("lgtool.baselines",)),
    ("artifacts", ("lgtool.learngene", "lgtool.family", "lgtool.hub", "lgtool.summary")),
    ("expansion", ("lgtool.materialize", "lgtool.convert", "lgtool.order")),
    ("training", ("lgtool.training",)),
    ("bench", ("lgtool.bench",)),
    ("cli", ("lgtool.cli", "lgtool.__main__")),
    ("api", ("lgtool",)),
)
MAX_LINES, MAX_MODULES, MAX_LOCAL_IMPORTS = 400, 12, 20


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if module in prefixes or any(module.startswith(p + ".") for p in prefixes if p != "lgtool"):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def imports(name: str, path: Path, known) -> list[tuple[str, int, bool]]:
    """(imported lgtool module, line, inside a function) for every import and lazy name in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    local = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs or [base]  # `from pkg import module` depends on the module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "lazy",
            "LazyModule",
        ):
            arg = node.args[0] if node.args else None
            targets = [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else []
        for target in targets:
            if target == "lgtool" or target.startswith("lgtool."):
                found.append((target, node.lineno, id(node) in local))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = set()
        for target, _, _ in imports(name, path, known):
            while target not in known:  # `lgtool.x.y` where y is a name in module lgtool.x
                target = target.rpartition(".")[0]
            if target != name:
                edges[name].add(target)
    return edges


def test_every_module_is_in_a_layer():
    for name in modules():
        layer(name)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer(target) > layer(name)
    ]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges, state, stack, cycles = graph(), {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_package_stays_readable():
    """No module over 400 lines, no folder of more than 12 modules, and imports inside functions the exception."""
    known = modules()
    long = [
        f"{p.relative_to(ROOT.parent)}: {n}"
        for p in known.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    folders = {}
    for path in known.values():
        if path.name != "__init__.py":
            folders.setdefault(path.parent, []).append(path.name)
    crowded = {str(f.relative_to(ROOT.parent)): len(n) for f, n in folders.items() if len(n) > MAX_MODULES}
    assert not crowded, f"folders of more than {MAX_MODULES} modules: {crowded}"
    inside = []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    inside = sorted(set(inside))
    assert len(inside) <= MAX_LOCAL_IMPORTS, f"{len(inside)} imports inside functions: {inside}"
