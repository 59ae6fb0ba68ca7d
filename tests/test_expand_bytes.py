"""`expand` of a learngene written by an earlier lgtool gives the same model.safetensors, byte for byte.

tests/data/{sws,tleg,wave}.safetensors were written by lgtool 0.1.0 before its modules were laid out in layers
(`init_learngene(method, width=32, num_heads=2, aux_depth=2, img_size=28, patch_size=7, in_chans=1,
num_classes=10, mlp_ratio=2.0, seed=7)`, SWS `stages=[1, 1]`, WAVE `template_size=16`); the digests are of
the model.safetensors that lgtool's `expand` wrote from them then."""

import hashlib
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CASES = {
    "sws-d5": ("sws", "--depth 5", "3b16cdd013bc4382057e4bbe9554b3d088f4e741c4f85f7b11c74fac1482e205"),
    "sws-d3-i56": (
        "sws",
        "--depth 3 --img-size 56",
        "11d33d8cd893d66a0d82030896a5d3f4ca1701082851118604da5cc2ecb04fa8",
    ),
    "sws-d4-w16": (
        "sws",
        "--depth 4 --width 16 --num-heads 2",
        "717963b3e4f3facc7256288ad22da87ba5b02938a208f41950b9716b2cb2eb5d",
    ),
    "tleg-d5": ("tleg", "--depth 5", "786e076ed9a95372b44d241a1e9fd046dc13d1f9116b605f322dc06499c6042f"),
    "tleg-d3-i56": (
        "tleg",
        "--depth 3 --img-size 56",
        "0caa1b135af40c55c1fe2ce93a1193c13baf023c0c5a22f574473f30103847da",
    ),
    "wave-d5": ("wave", "--depth 5", "ff5ead41f81de9d0a0218ad1ac70297fe76d529242c110d79de84c6bdcb7fc47"),
    "wave-d3-i56": (
        "wave",
        "--depth 3 --img-size 56",
        "d2aae3d959bc735f528294dd281d673caf8fd38e6fce169e9dce04883bc78de4",
    ),
    "wave-d4-w64": ("wave", "--depth 4 --width 64", "0735433bc229f0f5e6bd8f4fdd7dfd4ba740bdcb8b5021404192941f23e72db0"),
}


@pytest.mark.parametrize("case", CASES)
def test_expand_writes_the_same_bytes_as_before(case, run_cli, tmp_path):
    method, args, digest = CASES[case]
    code, _, err = run_cli("expand", DATA / f"{method}.safetensors", *args.split(), "-o", tmp_path / case, "--json")
    assert code == 0, err
    assert hashlib.sha256((tmp_path / case / "model.safetensors").read_bytes()).hexdigest() == digest
