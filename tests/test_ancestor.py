"""Ancestors: a timm name plus a local weights file (safetensors or a weights_only torch checkpoint)."""

import pytest
import torch
from safetensors.torch import save_file

from lgtool.base.compat import import_timm
from lgtool.base.errors import InputError
from lgtool.training.ancestor import load_ancestor


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_name_plus_weights_file(tmp_path, suffix):
    timm = import_timm()
    torch.manual_seed(0)
    src = timm.create_model("deit_tiny_patch16_224", num_classes=10, depth=2)
    state = src.state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:  # a DDP-style training checkpoint: nested under "model", keys prefixed with "module."
        torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    with pytest.raises(InputError, match="weights of another architecture"):
        load_ancestor("deit_tiny", str(path), num_classes=10)  # 12 blocks expected, the file has 2
    src12 = timm.create_model("deit_tiny_patch16_224", num_classes=10)
    save_file(src12.state_dict(), str(tmp_path / "w12.safetensors"))
    model = load_ancestor("deit_tiny", str(tmp_path / "w12.safetensors"), num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src12.state_dict().values(), strict=True))
    assert not model.training


def test_pickled_objects_are_not_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(InputError, match="unreadable weights file"):
        load_ancestor("deit_tiny", str(path), num_classes=10)


def test_class_count_must_match(tmp_path):
    """A model folder of a plain ViT whose only fault is its class count: the class-count check refuses it."""
    from lgtool.base.arch import Arch, build_vit
    from lgtool.hub import write_descnet

    arch = Arch(img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=1, num_heads=2, num_classes=5)
    folder = write_descnet(build_vit(arch).state_dict(), arch, tmp_path / "anc5", {"mean": [0.5], "std": [0.5]}, {})
    assert load_ancestor(str(folder), num_classes=5).num_classes == 5  # the folder itself is a fine ancestor
    with pytest.raises(InputError, match="predicts 5 classes but the data has 10"):
        load_ancestor(str(folder), num_classes=10)
