"""One input-normalization type: the learngene's `input`, the Desc-Net's timm pretrained_cfg and the training
View hold the same `Normalization`, validated in one place."""

import json

import pytest

from lgtool.base.errors import InputError
from lgtool.base.normalization import Normalization
from lgtool.hub import hub_config
from lgtool.learngene import GeneMeta, init_learngene
from lgtool.training.view import View


def test_defaults_are_imagenet_and_plain_is_half_per_channel():
    norm = Normalization()
    assert norm.mean == [0.485, 0.456, 0.406] and norm.std == [0.229, 0.224, 0.225]
    assert (norm.interpolation, norm.crop_pct) == ("bicubic", 0.875)
    assert Normalization.plain(2).mean == Normalization.plain(2).std == [0.5, 0.5]


def test_a_learngene_input_and_a_pretrained_cfg_are_the_same_fields_under_the_same_keys():
    norm = Normalization(mean=[0.2], std=[0.3], crop_pct=1.0, interpolation="bilinear")
    meta_input = json.loads(norm.model_dump_json())
    # the learngene's `input` keeps its order; config.json keeps timm's
    assert list(meta_input) == ["mean", "std", "interpolation", "crop_pct"]
    assert list(norm.pretrained_cfg()) == ["interpolation", "crop_pct", "mean", "std"]
    assert Normalization.model_validate(meta_input) == norm
    assert Normalization.from_pretrained_cfg({**norm.pretrained_cfg(), "input_size": [1, 28, 28]}) == norm


def test_hub_config_takes_the_type_or_its_dict_and_writes_timm_keys():
    gene = init_learngene("sws", width=32, num_heads=2, aux_depth=3, img_size=28, patch_size=7, in_chans=1)
    config = hub_config(gene.arch, gene.meta.input, {})
    assert config == hub_config(gene.arch, gene.meta.input.model_dump(), {})
    assert list(config["pretrained_cfg"])[:5] == ["input_size", "interpolation", "crop_pct", "mean", "std"]
    assert config["pretrained_cfg"]["mean"] == [0.5]  # one channel: 0.5, not ImageNet's three


def test_a_missing_field_comes_from_the_defaults_given():
    data = Normalization(mean=[0.1], std=[0.2], crop_pct=1.0)
    got = Normalization.from_pretrained_cfg({"mean": [0.3]}, data)
    assert (got.mean, got.std, got.crop_pct) == ([0.3], [0.2], 1.0)
    view = View.from_input_cfg({}, 16, 3)  # a config without statistics: timm's ViT default
    assert (view.img_size, view.in_chans, view.norm) == (16, 3, Normalization.plain(3))


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"mean": "0.5"}, "pretrained_cfg.mean must be a list of finite numbers"),
        ({"mean": []}, "pretrained_cfg.mean must be a list"),
        ({"mean": [True]}, "pretrained_cfg.mean must be a list"),
        ({"std": [float("nan")]}, "pretrained_cfg.std must be a list of finite numbers"),
        ({"std": [0.5, 0.0]}, "pretrained_cfg.std must be positive"),
        ({"crop_pct": 1.5}, "pretrained_cfg.crop_pct must be a number in (0, 1]"),
        ({"crop_pct": True}, "pretrained_cfg.crop_pct must be a number in (0, 1]"),
        ({"interpolation": 3}, "pretrained_cfg.interpolation must be one of"),
        ({"interpolation": "cubic"}, "pretrained_cfg.interpolation must be one of"),
    ],
)
def test_a_bad_value_is_one_line_naming_where_and_what(cfg, message):
    with pytest.raises(InputError) as e:
        Normalization.from_pretrained_cfg(cfg, where="DIR/config.json")
    assert str(e.value).startswith("DIR/config.json: " + message) and "\n" not in str(e.value)


def test_the_learngene_metadata_validates_its_input_with_the_same_type():
    gene = init_learngene("tleg", width=32, num_heads=2, aux_depth=3, img_size=28, patch_size=7, in_chans=1)
    doc = json.loads(gene.meta.model_dump_json(by_alias=True))
    assert isinstance(GeneMeta.model_validate(doc).input, Normalization)
    for bad in ({"std": [0.0]}, {"crop_pct": 2.0}, {"mean": ["0.5"]}, {"interpolation": "cubic"}, {"extra": 1}):
        with pytest.raises(ValueError):
            GeneMeta.model_validate({**doc, "input": {**doc["input"], **bad}})
