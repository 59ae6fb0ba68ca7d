"""`setting()` fields are a command's options, declared once: the flag, its range and its default come from the
dataclass, on the command line (`lgtool.cli.options.takes`) and for a library caller alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from lgtool.base.errors import UsageError
from lgtool.base.settings import check_settings, setting
from lgtool.cli.options import takes


@dataclass
class Toy:
    name: str = setting(help="Required: no default.")
    depths: list[int] = setting(help="Depths.", lo=1, default_factory=lambda: [2, 6])
    extra: list[int] = setting(help="More.", lo=1, allow_empty=True, default_factory=list)
    lrs: list[float] = setting(help="Rates.", above=0, default_factory=lambda: [5e-4])
    mode: str = setting("a", "A mode.", choices=("a", "b"))
    share: float = setting(0.1, "A share.", above=0, below=1)
    limit: int | None = setting(None, "Optional.", lo=1)
    size: str | int = setting(64, "A size: a name or a number.")
    tags: list[str] = setting(help="Tags.", flags=("--tag",), repeat=True, allow_empty=True, default_factory=list)
    steps: int = setting(3, "Library only.", lo=1, cli=False)
    internal: int = field(default=3)  # no flag

    def __post_init__(self):
        check_settings(self)


def run(*args, defaults=None):
    app = typer.Typer(rich_markup_mode="markdown")  # as lgtool's own app: "[at least 1]" is not a rich tag
    seen = {}

    @app.command()
    @takes(Toy, defaults=defaults)
    def main(cfg: Toy = None):
        seen["cfg"] = cfg

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    return result, seen.get("cfg")


def test_defaults_come_from_the_fields_and_lists_parse_from_commas():
    result, cfg = run("--name", "x")
    assert result.exit_code == 0, result.output
    assert cfg == Toy(name="x", size="64")  # a setting of several types reads text: the dataclass parses it
    assert (cfg.depths, cfg.extra, cfg.lrs, cfg.limit) == ([2, 6], [], [5e-4], None)
    result, cfg = run("--name", "x", "--depths", "2, 4,8", "--lrs", "1e-3,2e-3", "--limit", "5", "--mode", "b")
    assert (cfg.depths, cfg.lrs, cfg.limit, cfg.mode) == ([2, 4, 8], [1e-3, 2e-3], 5, "b")


def test_a_required_setting_is_a_required_flag():
    result, cfg = run()
    assert result.exit_code == 2 and cfg is None
    with pytest.raises(TypeError):
        Toy()


def test_a_command_default_overrides_the_field_default():
    _, cfg = run("--name", "x", defaults={"share": 0.5, "depths": [3]})
    assert (cfg.share, cfg.depths) == (0.5, [3])


@pytest.mark.parametrize(
    "args, message",
    [
        (("--depths", "2,0"), "--depths must be at least 1, got 0"),
        (("--depths", ""), "--depths needs at least one value"),
        (("--depths", "2,x"), "--depths takes comma-separated integers"),
        (("--lrs", "nan"), "--lrs must be a finite number"),
        (("--mode", "c"), "--mode must be one of a, b, got 'c'"),
        (("--share", "1"), "--share must be above 0 and below 1, got 1"),
        (("--limit", "0"), "--limit must be at least 1, got 0"),
    ],
)
def test_a_value_outside_its_setting_is_one_usage_error(args, message):
    result, cfg = run("--name", "x", *args)
    assert cfg is None and isinstance(result.exception, UsageError)
    assert message in str(result.exception)


def test_a_library_caller_gets_the_same_checks():
    with pytest.raises(UsageError, match="--depths must be at least 1"):
        Toy(name="x", depths=[0])
    assert Toy(name="x", extra=[]).extra == []


def test_help_shows_each_range_and_no_library_only_field():
    result, _ = run("--help")
    assert "--depths" in result.output and "at least 1" in result.output
    assert "--internal" not in result.output and "--steps" not in result.output


@dataclass
class Source:
    src: str | None = setting(None, "Where from.", argument=True)
    depth: int = setting(1, "A depth.", lo=1)

    def __post_init__(self):
        check_settings(self)


def test_an_argument_setting_is_positional_and_the_flags_stand_where_the_dataclass_did():
    app = typer.Typer(rich_markup_mode="markdown")
    seen = {}

    @app.command()
    @takes(Source, name="settings")
    def main(settings: Source = None, as_json: bool = typer.Option(False, "--json", help="JSON.")):
        seen["settings"], seen["json"] = settings, as_json

    def invoke(*args):
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})

    assert invoke("here", "--depth", "3", "--json").exit_code == 0
    assert seen == {"settings": Source(src="here", depth=3), "json": True}
    assert invoke().exit_code == 0 and seen["settings"] == Source()  # an argument with a default is optional
    result = invoke("here", "--depth", "0")
    assert isinstance(result.exception, UsageError) and "--depth must be at least 1" in str(result.exception)
    help_text = invoke("--help").output
    assert "Arguments" in help_text and "Where from." in help_text
    assert help_text.index("--depth") < help_text.index("--json")  # the command's own option after the settings


def test_a_library_only_setting_is_checked_and_named_as_a_field():
    with pytest.raises(UsageError, match="Toy.steps must be at least 1, got 0"):
        Toy(name="x", steps=0)
    result, _ = run("--name", "x", "--steps", "2")
    assert result.exit_code == 2  # no such flag


def test_a_repeated_setting_takes_one_value_per_flag():
    _, cfg = run("--name", "x", "--tag", "a,b", "--tag", "c")
    assert cfg.tags == ["a,b", "c"]  # never split at commas: a path may hold one


def test_a_setting_of_several_types_takes_text():
    _, cfg = run("--name", "x", "--size", "tiny")
    assert cfg.size == "tiny"
    _, cfg = run("--name", "x", "--size", "32")
    assert cfg.size == "32"
