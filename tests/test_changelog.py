"""CHANGELOG.md is for users: Keep a Changelog sections, and only module paths that exist."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"
DOTTED = re.compile(r"\blgtool(?:\.[A-Za-z_]\w*)+")
SLASHED = re.compile(r"(?<![\w/.-])lgtool/[\w./-]*[\w/]")
SECTIONS = ("Added", "Changed", "Fixed", "Removed")  # Keep a Changelog's, those lgtool uses


def _text() -> str:
    return CHANGELOG.read_text()


def _exists(dotted: str) -> bool:
    """`lgtool.a.b` is a module file or package, or an attribute of the longest importable module before it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            if n == len(parts):
                return True
            obj = importlib.import_module(".".join(parts[:n]))
            for name in parts[n:]:
                if not hasattr(obj, name):
                    return False
                obj = getattr(obj, name)
            return True
    return False


def test_every_module_path_named_exists():
    missing = sorted({m for m in DOTTED.findall(_text()) if not _exists(m)})
    assert not missing, f"CHANGELOG.md names module paths that do not exist: {missing}"


def test_every_file_path_under_lgtool_named_exists():
    missing = sorted({p for p in SLASHED.findall(_text()) if not (ROOT / p).exists()})
    assert not missing, f"CHANGELOG.md names files that do not exist: {missing}"


def test_unreleased_comes_first_with_keep_a_changelog_sections():
    headings = [line for line in _text().splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Unreleased", "## 0.1.0"], headings
    lines = _text().splitlines()
    unreleased = lines[lines.index("## Unreleased") + 1 : lines.index("## 0.1.0")]
    found = [line[4:] for line in unreleased if line.startswith("### ")]
    assert found == list(SECTIONS), found
    for section in SECTIONS:  # each has at least one entry, "- (nothing yet)" when empty
        start = unreleased.index(f"### {section}") + 1
        body = [line for line in unreleased[start:] if line.strip()]
        assert body and body[0].startswith("- "), section
