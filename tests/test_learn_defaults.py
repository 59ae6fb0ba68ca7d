"""`learn` has defaults of its own, chosen on validation for distillation (docs/learn-defaults), and seeds
its templates from the ancestor wherever the ancestor allows it."""

import click
import pytest
import typer
from conftest import needs_fashion_mnist

import lgtool
from lgtool.base.arch import Arch, build_vit
from lgtool.training.learn import default_init
from lgtool.training.settings import COMMAND_DEFAULTS, LearnConfig, TrainConfig


def _defaults(command: str) -> dict:
    from lgtool.cli import app

    group = typer.main.get_command(app)
    params = group.get_command(click.Context(group), command).params
    return {p.name: p.default for p in params}


def test_learn_has_its_own_rate_and_warmup_and_finetune_keeps_its_own():
    own = COMMAND_DEFAULTS["learn"]
    assert own["lr"] != TrainConfig().lr or own["warmup_epochs"] != TrainConfig().warmup_epochs
    cfg = TrainConfig.for_command("learn", epochs=2)
    assert (cfg.lr, cfg.warmup_epochs, cfg.epochs) == (own["lr"], own["warmup_epochs"], 2)
    assert TrainConfig.for_command("learn", lr=0.1).lr == 0.1  # what the caller says wins
    learn, finetune = _defaults("learn"), _defaults("finetune")
    assert (learn["lr"], learn["warmup_epochs"]) == (own["lr"], own["warmup_epochs"])
    assert (finetune["lr"], finetune["warmup_epochs"]) == (TrainConfig().lr, TrainConfig().warmup_epochs)
    assert learn["init"] is None  # decided once the ancestor is loaded (default_init)


def vit(width: int):
    return build_vit(Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=width, depth=2, num_heads=2, num_classes=10))


def test_the_default_init_seeds_from_a_vit_ancestor_at_least_as_wide():
    from lgtool.base.compat import import_timm

    assert default_init(vit(64), 32)[0] == "ancestor"
    assert default_init(vit(64), 64)[0] == "ancestor"
    init, why = default_init(vit(32), 64)
    assert init == "official" and "narrower" in why
    cnn = import_timm().create_model("resnet18", layers=[1, 1, 1, 1], channels=[8, 8, 8, 8], in_chans=1, num_classes=10)
    init, why = default_init(cnn, 32)
    assert init == "official" and "not a ViT" in why


@needs_fashion_mnist
def test_learn_with_no_init_seeds_from_the_ancestor_and_says_so(ancestor, tmp_path):
    from lgtool.training.learn import learn

    cfg = TrainConfig.for_command("learn", epochs=1, batch_size=64)
    settings = LearnConfig(ancestor=str(ancestor), method="tleg", output=tmp_path / "g.safetensors", width=32,
                           aux_depth=2, train_samples=640)  # fmt: skip
    learn(settings, cfg)
    prov = lgtool.load_learngene(tmp_path / "g.safetensors").meta.provenance
    assert prov["init"] == "ancestor" and "seeded" in prov and "default" in prov["init_why"]
    assert prov["lr"] == pytest.approx(COMMAND_DEFAULTS["learn"]["lr"])


@pytest.fixture(scope="module")
def two_block_ancestor(tmp_path_factory):
    """An untrained 2-block ViT folder of width 32: seeding needs its shapes, not its accuracy."""
    from lgtool.hub import write_descnet

    arch = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    folder = tmp_path_factory.mktemp("two-block") / "anc"
    return write_descnet(build_vit(arch).state_dict(), arch, folder, {"mean": [0.5], "std": [0.5]}, lineage={})


@needs_fashion_mnist
@pytest.mark.parametrize("method", ["sws", "tleg", "wave"])
def test_default_init_learns_from_a_shallow_ancestor_and_says_what_it_seeded(run_cli, two_block_ancestor, tmp_path,
                                                                             method):  # fmt: skip
    """A 2-block ancestor gives WAVE's one-tile proj matrix 2 rows at Aux depth 2: 2 of its 4 templates seed; the
    rest start from the paper's init, the provenance and the CLI say so, and the run is not refused."""
    out = tmp_path / "g.safetensors"
    code, _, err = run_cli("learn", "--ancestor", two_block_ancestor, "--method", method, "--aux-depth", 2,
                           "--epochs", 1, "--batch-size", 32, "--train-samples", 40, "-o", out)  # fmt: skip
    assert code == 0, err
    gene = lgtool.load_learngene(out)
    seeded = gene.meta.provenance["seeded"]
    assert gene.meta.provenance["init"] == "ancestor" and seeded["ancestor_depth"] == 2
    if method == "wave":
        says = "2 of 4 templates seeded (the tile matrix has rank 2 at most)"
        assert seeded["partly"] == {"template.attn.proj.weight": says}
        assert "template.attn.proj.weight: 2 of 4 templates seeded" in " ".join(err.split())
        assert "paper's initialization" in err
    else:
        assert "partly" not in seeded and "in part" not in err
