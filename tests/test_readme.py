"""README's commands are the ones CI and users run."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("apt-get update")]


def test_ci_runs_exactly_the_readme_test_command():
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2 and readme[0].endswith("lgtool bench") and readme[1].endswith("python -m pytest")
    assert ci == [readme[1]]


# The README opens with the answer: what lgtool does, the verdict, and both commands on the first screen.
FIRST_SCREEN = 40
MAX_LINES = 200
VERDICT_HEADER = re.compile(r"^\| run \| seeds \| SWS \| TLEG \| WAVE \|")
RATIO = re.compile(r"\d+(?:\.\d+)?\s*×")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _readme_lines() -> list[str]:
    return (ROOT / "README.md").read_text().splitlines()


def _documents() -> list[Path]:
    """README, CHANGELOG and the prose pages under docs/ (not the bench runs' generated reports)."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_at_most_200_lines():
    assert len(_readme_lines()) <= MAX_LINES


def test_both_commands_are_on_the_first_screen():
    first = _readme_lines()[:FIRST_SCREEN]
    assert len(_commands("\n".join(first))) == 2


def test_verdict_table_is_on_the_first_screen():
    first = _readme_lines()[:FIRST_SCREEN]
    header = [i for i, line in enumerate(first) if VERDICT_HEADER.match(line)]
    assert header, "no `| run | seeds | SWS | TLEG | WAVE |` table in the README's first lines"
    rows = [line for line in first[header[0] + 2 :] if line.startswith("|")]
    assert len(rows) >= 3 and all(RATIO.search(row) for row in rows[:3])


def _targets(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # links inside code blocks are code
    return [m.group(1) for m in LINK.finditer(text)]


def test_every_relative_link_and_image_resolves():
    broken = []
    for doc in _documents():
        for target in _targets(doc):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http(s), mailto and in-page anchors
            path = target.split("#", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_docs_pages_link_their_images_from_their_own_folder():
    bench = ROOT / "docs" / "bench.md"
    assert "bench-default/accuracy_vs_depth.png" in _targets(bench)


def test_no_ratio_is_called_more_expensive():
    """Ratios read in one direction: "N× cheaper" or "N× dearer", never a ratio beside "more expensive"."""
    bad = [
        f"{doc.relative_to(ROOT)}:{n}"
        for doc in _documents()
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        if "more expensive" in line.lower() and RATIO.search(line)
    ]
    assert not bad, bad
    for doc in _documents():  # nor across a line break
        flat = " ".join(doc.read_text().split())
        assert not re.search(r"×\s*more\s+(expensive|costly)", flat, re.I), doc.relative_to(ROOT)


def test_the_default_runs_verdict_row_says_what_its_results_say():
    """README's verdict words and ratios for the default run are the ones its committed results.json gives."""
    results = json.loads((ROOT / "docs" / "bench-default" / "results.json").read_text())
    row = next(line for line in _readme_lines()[:FIRST_SCREEN] if line.startswith("|") and "default" in line)
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    for method, cell in zip(("sws", "tleg", "wave"), cells, strict=True):
        cost = results["cost"][method]
        low, high = cost["ratio_flops_interval"]
        assert cell == f"{cost['verdict']}: {cost['ratio_flops']}× ({low}–{high})", (method, cell)
