"""Issue 27: what `lgtool expand`, `learn` (with checkpoints) and `finetune` do to the disk, in order. Every name a
command gives its result (a file or a folder) must have its data flushed (`fsync`) before the rename into place, and
the folder that holds the name flushed after it, before the next rename. Recorded in-process through wrappers of
`os.fsync` (the path from /proc/self/fd), `os.rename`, `os.replace` and renameat2's `exchange`/`rename_noreplace`."""

import os
import re
import sys
from pathlib import Path

import pytest
from conftest import needs_fashion_mnist, tiny_gene

from lgtool.base import atomic

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads fsync's path from /proc/self/fd")

TEMPORARY = re.compile(r"\..+\.\d+\.[0-9a-f]+\.(tmp|old|rec)")


class Recorder:
    """Records ("fsync", path) and ("rename", src, dst, [everything src holds]) in the order they happen."""

    def __init__(self, monkeypatch):
        self.events = []
        self._depth = 0  # a rename_noreplace that falls back on os.rename is one rename, not two
        fsync = os.fsync

        def recorded_fsync(fd):
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            return fsync(fd)

        monkeypatch.setattr(os, "fsync", recorded_fsync)
        monkeypatch.setattr(os, "rename", self._renamer(os.rename))
        monkeypatch.setattr(os, "replace", self._renamer(os.replace))
        monkeypatch.setattr(atomic, "_exchange", self._renamer(atomic._exchange))
        monkeypatch.setattr(atomic, "_rename_noreplace", self._renamer(atomic._rename_noreplace))

    def _renamer(self, rename):
        def recorded(src, dst, *args):
            names = os.path.realpath(src), os.path.join(os.path.realpath(os.path.dirname(dst)), os.path.basename(dst))
            held = [str(p) for p in Path(names[0]).rglob("*")] if os.path.isdir(src) else []
            self._depth += 1
            try:
                done = rename(src, dst, *args)
            finally:
                self._depth -= 1
            if self._depth == 0 and done is not False:  # exchange/rename_noreplace answer False when they did nothing
                self.events.append(("rename", *names, held))
            return done

        return recorded

    def finals(self):
        """(index, src, dst, held) of every rename that gave a result its final name (not a temporary's)."""
        return [
            (i, e[1], e[2], e[3])
            for i, e in enumerate(self.events)
            if e[0] == "rename" and not TEMPORARY.fullmatch(os.path.basename(e[2]))
        ]

    def check(self):
        """Asserts the order for every final name; returns the final names."""
        finals = self.finals()
        assert finals, "the command renamed nothing into place"
        renames = [i for i, e in enumerate(self.events) if e[0] == "rename"]
        for i, src, dst, held in finals:
            before = {e[1] for e in self.events[:i] if e[0] == "fsync"}
            for data in [src, *held]:
                assert data in before, f"{data} was not flushed before its rename to {dst}\n{self.dump()}"
            following = next((j for j in renames if j > i), len(self.events))
            after = {e[1] for e in self.events[i + 1 : following] if e[0] == "fsync"}
            assert os.path.dirname(dst) in after, (
                f"the folder of {dst} was not flushed after its rename (before the next one)\n{self.dump()}"
            )
        return {dst for _, _, dst, _ in finals}

    def dump(self):
        return "\n".join(" ".join(map(str, e[:3])) for e in self.events)


@pytest.fixture
def gene(tmp_path):
    path = tmp_path / "g.safetensors"
    tiny_gene("tleg").save(path)
    return path


@pytest.fixture
def desc(run_cli, gene, tmp_path):
    assert run_cli("expand", gene, "--depth", 2, "-o", tmp_path / "desc")[0] == 0
    return tmp_path / "desc"


def real(path) -> str:
    return os.path.realpath(path)


def test_expand_flushes_its_folder_before_the_rename_and_the_parent_after(run_cli, gene, tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    code, _, err = run_cli("expand", gene, "--depth", 2, "-o", tmp_path / "desc")
    assert code == 0, err
    assert recorder.check() == {real(tmp_path / "desc")}
    assert len(recorder.finals()[0][3]) >= 2  # the folder's files were checked one by one


def test_expand_force_flushes_the_new_folder_before_the_swap(run_cli, desc, gene, monkeypatch):
    recorder = Recorder(monkeypatch)
    code, _, err = run_cli("expand", gene, "--depth", 3, "-o", desc, "--force")
    assert code == 0, err
    assert recorder.check() == {real(desc)}


@needs_fashion_mnist
def test_learn_flushes_every_checkpoint_and_the_learngene(run_cli, desc, tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    out = tmp_path / "learned.safetensors"
    code, _, err = run_cli(
        "learn", "--ancestor", desc, "--method", "tleg", "--width", 32, "--aux-depth", 2, "--train-samples", 200,
        "--epochs", 1, "--batch-size", 50, "--save-every", 2, "-o", out,
    )  # fmt: skip
    assert code == 0, err
    assert recorder.check() == {real(out), real(tmp_path / "learned.ckpt")}
    checkpoints = [f for f in recorder.finals() if f[2] == real(tmp_path / "learned.ckpt")]
    assert len(checkpoints) >= 2, recorder.dump()  # steps 2 and 4 (and the epoch's end): each one checked


@needs_fashion_mnist
def test_finetune_flushes_each_of_its_outputs(run_cli, desc, tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    out = tmp_path / "ft"
    code, _, err = run_cli("finetune", desc, "--train-samples", 100, "--batch-size", 50, "--epochs", 1, "-o", out)
    assert code == 0, err
    written = recorder.check()
    assert {real(out / name) for name in ("best", "last", "metrics.json", "checkpoint.ckpt")} <= written, written
