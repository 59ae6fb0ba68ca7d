"""README's commands are the ones CI and users run."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("apt-get update")]


def test_ci_runs_exactly_the_readme_test_command():
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2 and readme[0].endswith("lgtool bench") and readme[1].endswith("python -m pytest")
    assert ci == [readme[1]]
