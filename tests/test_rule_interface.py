"""Every rule module has the same shape, and nothing outside `lgtool/rules/` names a method."""

import re
from pathlib import Path

import pytest
import torch
import toy_rule
from conftest import TINY

import lgtool
from lgtool.family import describe_layers, target_arch
from lgtool.materialize import build_aux
from lgtool.rules import RULES
from lgtool.rules.base import RuleModule

# The interface `RuleModule` states: its attributes, then its functions.
INTERFACE = (*RuleModule.__annotations__, *(name for name in vars(RuleModule) if not name.startswith("_")))


@pytest.fixture
def shared(monkeypatch):
    monkeypatch.setitem(RULES, "shared", toy_rule)
    return lgtool.init_learngene("shared", aux_depth=3, **TINY)


@pytest.mark.parametrize("module", [*RULES.values(), toy_rule], ids=lambda m: m.__name__)
def test_every_rule_module_has_the_same_functions(module):
    assert len(INTERFACE) == 18  # 6 attributes, 12 functions: the derivation above found them all
    missing = [name for name in INTERFACE if not hasattr(module, name)]
    assert not missing, missing


def test_no_method_names_outside_the_rules():
    """No comparison with a method name and no per-method table outside lgtool/rules/ (a default is fine)."""
    root = Path(lgtool.__file__).parent
    name = r"""["'](sws|tleg|wave)["']"""
    pattern = re.compile(rf"(==|!=|\bin)\s*[(\[{{]?\s*{name}|{name}\s*:|startswith\({name}")
    offenders = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in root.rglob("*.py")
        if "rules" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


def test_a_fourth_rule_expands_trains_and_inspects_without_touching_other_files(shared, tmp_path, run_cli):
    path = shared.save(tmp_path / "shared.safetensors")
    gene = lgtool.load_learngene(path)
    assert gene.method == "shared" and set(gene.tensors) == set(shared.tensors)

    model = lgtool.expand(gene, depth=5)
    assert len(model.blocks) == 5
    assert torch.equal(model.blocks[0].mlp.fc1.weight, model.blocks[4].mlp.fc1.weight)  # one block, copied
    assert describe_layers(gene, target_arch(gene, 5)) == [0] * 5

    aux = build_aux(gene)  # trains the one block: its gradient collects from every layer
    x = torch.randn(2, 1, 28, 28)
    aux(x).sum().backward()
    assert aux.gene.block.mlp.fc1.weight.grad.abs().sum() > 0
    torch.testing.assert_close(aux.eval()(x), lgtool.expand(gene)(x))

    code, stdout, stderr = run_cli("inspect", path, "--json")
    assert code == 0, stderr
    assert '"method": "shared"' in stdout
    code, _, stderr = run_cli("expand", path, "--depth", 4, "-o", tmp_path / "desc")
    assert code == 0, stderr
    assert (tmp_path / "desc" / "model.safetensors").is_file()
    code, _, stderr = run_cli("expand", path, "--width", 64, "-o", tmp_path / "wide")
    assert code == 3 and "makes its own width only" in stderr


def test_a_rule_brings_its_own_options_to_learn(monkeypatch):
    """A registered rule's declared option becomes a `LearnConfig` setting, range and rule options included, and
    a flag of the command built from it: no other file names it."""
    from dataclasses import fields

    from lgtool.base.errors import UsageError
    from lgtool.rules import RuleOption
    from lgtool.training import settings

    monkeypatch.setattr(toy_rule, "OPTIONS", {"block_scale": RuleOption(int, "Toy: scale of the block.", lo=2)})
    monkeypatch.setitem(RULES, "shared", toy_rule)
    config = settings.with_rule_options(settings.LearnConfig, after="aux_depth")
    field = {f.name: f for f in fields(config)}["block_scale"]
    assert field.default is None and field.metadata["help"] == "Toy: scale of the block." and "block_scale" in (
        config.RULE_OPTIONS)  # fmt: skip
    names = [f.name for f in fields(config)]
    at = names.index("aux_depth") + 1
    assert names[at : at + 5] == ["stages", "num_stages", "template_size", "num_templates", "block_scale"]
    with pytest.raises(UsageError, match="--block-scale must be at least 2"):
        config(ancestor="a", method="sws", block_scale=1)
    assert "block_scale" not in settings.LearnConfig.RULE_OPTIONS  # the module's own class is not changed
