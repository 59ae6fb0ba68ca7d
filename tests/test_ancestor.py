"""Ancestors: a timm name plus a local weights file (safetensors or a weights_only torch checkpoint)."""

import pytest
import torch
from safetensors.torch import save_file

from lgtool._compat import import_timm
from lgtool.ancestor import load_ancestor
from lgtool.errors import InputError


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
    timm = import_timm()
    save_file(timm.create_model("deit_tiny_patch16_224", num_classes=5).state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(InputError, match="weights of another architecture"):
        load_ancestor("deit_tiny", str(tmp_path / "w.safetensors"), num_classes=10)
