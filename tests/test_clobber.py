"""Nothing a user has is ever destroyed. An output is never an input in any form (a symbolic or hard link, a
folder inside or around one) nor another output; special files, link loops and outputs of the wrong kind are
refused even with --force; links inside an output folder are replaced, never written through; the final rename
never replaces what appeared meanwhile; SIGTERM saves like Ctrl-C; a full disk is one line naming what was kept.

Each failing run: the documented exit code, exactly one `error:` line, no traceback, nothing on stdout, and every
file, link and folder that was there before exactly as it was (sha256 of every file)."""

import errno
import hashlib
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import tiny_gene
from safetensors import SafetensorError
from test_atomic import MOVED_ASIDE, dead_pid, interrupted_swap, make_dir
from test_bad_input import TINY_VIT
from test_data_errors import write_fashion_mnist

from lgtool.base.arch import build_vit
from lgtool.base.atomic import atomic_dir, atomic_file, write_text
from lgtool.base.errors import InputError
from lgtool.base.outputs import check_output
from lgtool.hub import write_descnet

# A learngene of the tiny ViT's width, its Aux-Net 2 blocks deep, learnt in one epoch of 4 steps.
LEARN = ["--method", "tleg", "--aux-depth", 2, "--width", 32, "--num-heads", 2, "--epochs", 1, "--batch-size", 16]
FINETUNE = ["--epochs", 1, "--batch-size", 16]


def tree(root: Path) -> dict:
    """Every entry under `root` (links not followed): a file's sha256, a link's target, or what else it is."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                what = "link to " + os.readlink(path)
            elif stat.S_ISREG(mode):
                what = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISDIR(mode):
                what = "dir"
            else:
                what = f"special {stat.S_IFMT(mode):o}"
            out[os.path.relpath(path, root)] = what
    return out


def error_line(code: int, got: int, stdout: str, stderr: str) -> str:
    """The one `error:` line of a run that must have failed with `code`."""
    assert got == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and stdout == ""
    return errors[0]


def refused(run_cli, root: Path, *args, code: int = 3, says: str | None = None) -> str:
    """Run `lgtool ARGS`, which must fail with `code` leaving everything under `root` as it was."""
    before = tree(root)
    line = error_line(code, *run_cli(*args))
    assert tree(root) == before, "a refused run wrote, removed or changed files"
    if says is not None:
        assert says in line, line
    return line


def unchanged(before: dict, root: Path) -> None:
    """Every entry of `before` is still under `root`, as it was (new entries may have been added)."""
    now = tree(root)
    assert {k: now.get(k) for k in before} == before


def leftovers(root: Path) -> list[str]:
    return [k for k in tree(root) if k.endswith(".tmp") or ".old" in k]


@pytest.fixture
def ws(tmp_path):
    """tmp_path/ws: Fashion-MNIST-shaped data (fm/, 64 training images) and a tiny ViT folder (vit/)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    write_fashion_mnist(ws / "fm", n_train=64, n_test=16)
    torch.manual_seed(0)
    write_descnet(build_vit(TINY_VIT).state_dict(), TINY_VIT, ws / "vit", {"mean": [0.5], "std": [0.5]}, {})
    return ws


def learn_args(ws: Path, *more) -> list:
    return ["learn", "--ancestor", ws / "vit", "--data-dir", ws / "fm", *LEARN, *more]


def finetune_args(ws: Path, *more) -> list:
    return ["finetune", ws / "vit", "--data-dir", ws / "fm", *FINETUNE, *more]


@pytest.fixture
def sigterm_restored():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def char_device(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    return path


# --- outputs are never inputs, in any form ---

CHECKPOINT_CLASHES = {
    "ancestor-weights": (lambda t, ws: ws / "vit" / "model.safetensors", "would overwrite this command's input"),
    "data-file": (lambda t, ws: ws / "fm" / "train-images-idx3-ubyte.gz", "would overwrite this command's input"),
    "inside-data-folder": (lambda t, ws: ws / "fm" / "run.ckpt", "would overwrite this command's input"),
    "symlink-to-ancestor": (
        lambda t, ws: _symlink(t / "link.ckpt", ws / "vit" / "model.safetensors"),
        "would overwrite this command's input",
    ),
    "hard-link-to-data": (
        lambda t, ws: _hardlink(t / "hard.ckpt", ws / "fm" / "t10k-labels-idx1-ubyte.gz"),
        "would overwrite this command's input",
    ),
    "the-output": (lambda t, ws: t / "g.safetensors", "both outputs of this command"),
    "hard-link-to-the-output": (lambda t, ws: _hardlink(t / "h.ckpt", t / "g.safetensors"), "both outputs"),
}


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _hardlink(link: Path, target: Path) -> Path:
    os.link(target, link)
    return link


@pytest.mark.parametrize("checkpoint, says", CHECKPOINT_CLASHES.values(), ids=CHECKPOINT_CLASHES.keys())
def test_learn_checkpoint_is_never_an_input_or_the_output(run_cli, tmp_path, ws, checkpoint, says):
    (tmp_path / "g.safetensors").write_bytes(b"an older learngene")
    args = learn_args(ws, "-o", tmp_path / "g.safetensors", "--checkpoint", checkpoint(tmp_path, ws), "--force")
    refused(run_cli, tmp_path, *args, says=says)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing-with-force"])
def test_learn_output_named_like_its_default_checkpoint_is_refused(run_cli, tmp_path, ws, existing):
    if existing:
        (tmp_path / "gene.ckpt").write_bytes(b"a learngene I named .ckpt")
    args = learn_args(ws, "-o", tmp_path / "gene.ckpt", *(["--force"] if existing else []))
    refused(run_cli, tmp_path, *args, says="is also its default checkpoint")


OUTPUT_LINKS = {
    "learn-symlink-to-ancestor-weights": lambda t, ws: learn_args(
        ws, "-o", _symlink(t / "g.safetensors", ws / "vit" / "model.safetensors"), "--force"
    ),
    "learn-hard-link-to-data": lambda t, ws: learn_args(
        ws, "-o", _hardlink(t / "g.safetensors", ws / "fm" / "train-labels-idx1-ubyte.gz"), "--force"
    ),
    "finetune-symlink-to-source": lambda t, ws: finetune_args(ws, "-o", _symlink(t / "out", ws / "vit"), "--force"),
    "finetune-symlink-around-data": lambda t, ws: finetune_args(ws, "-o", _symlink(t / "out", ws), "--force"),
    "finetune-best-links-to-source": lambda t, ws: finetune_args(ws, "-o", _out_with(t, "best", ws / "vit"), "--force"),
    "finetune-metrics-hard-link-to-data": lambda t, ws: finetune_args(
        ws, "-o", _out_with(t, "metrics.json", ws / "fm" / "t10k-images-idx3-ubyte.gz", hard=True), "--force"
    ),
    "finetune-checkpoint-links-to-source-weights": lambda t, ws: finetune_args(
        ws, "-o", _out_with(t, "checkpoint.ckpt", ws / "vit" / "model.safetensors"), "--force"
    ),
}


def _out_with(tmp_path: Path, name: str, target: Path, hard: bool = False) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (_hardlink if hard else _symlink)(out / name, target)
    return out


@pytest.mark.parametrize("make_args", OUTPUT_LINKS.values(), ids=OUTPUT_LINKS.keys())
def test_an_output_that_links_to_an_input_is_refused_even_with_force(run_cli, tmp_path, ws, make_args):
    refused(run_cli, tmp_path, *make_args(tmp_path, ws), says="would overwrite this command's input")


def test_expand_output_that_links_to_the_folder_of_its_learngene_is_refused(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "genes" / "g.safetensors")
    link = _symlink(tmp_path / "desc", tmp_path / "genes")
    refused(run_cli, tmp_path, "expand", gene, "-o", link, "--force", says="would overwrite this command's input")


# --- special files, link loops, and outputs of the wrong kind ---


SPECIAL = {
    "learn-o-fifo": lambda t, ws: learn_args(ws, "-o", fifo(t / "g.safetensors"), "--force"),
    "learn-o-char-device": lambda t, ws: learn_args(ws, "-o", char_device(t / "g.safetensors"), "--force"),
    "learn-checkpoint-fifo": lambda t, ws: learn_args(
        ws, "-o", t / "g.safetensors", "--checkpoint", fifo(t / "c.ckpt"), "--force"
    ),
    "learn-o-symlink-to-a-device": lambda t, ws: learn_args(
        ws, "-o", _symlink(t / "g.safetensors", char_device(t / "null")), "--force"
    ),
    "finetune-metrics-fifo": lambda t, ws: finetune_args(ws, "-o", _fifo_inside(t, "metrics.json"), "--force"),
    "finetune-checkpoint-fifo": lambda t, ws: finetune_args(ws, "-o", _fifo_inside(t, "checkpoint.ckpt"), "--force"),
}


def _fifo_inside(tmp_path: Path, name: str) -> Path:
    (tmp_path / "out").mkdir()
    fifo(tmp_path / "out" / name)
    return tmp_path / "out"


@pytest.mark.parametrize("make_args", SPECIAL.values(), ids=SPECIAL.keys())
def test_special_files_are_never_replaced_even_with_force(run_cli, tmp_path, ws, make_args):
    line = refused(run_cli, tmp_path, *make_args(tmp_path, ws))
    assert "character device" in line or "FIFO" in line, line


def test_expand_never_replaces_a_fifo(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    refused(run_cli, tmp_path, "expand", gene, "-o", fifo(tmp_path / "desc"), "--force", says="FIFO (named pipe)")


WRONG_KIND = {
    "finetune-o-existing-file": (lambda t, ws: _file(t / "out"), "is a file, not a folder"),
    "finetune-checkpoint-is-a-folder": (lambda t, ws: _dir_inside(t, "checkpoint.ckpt"), "is a folder, not a file"),
    "finetune-best-is-a-file": (lambda t, ws: _file_inside(t, "best"), "is a file, not a folder"),
    "finetune-o-symlink-loop": (lambda t, ws: _loop(t / "out"), "symbolic link loop"),
}


def _file(path: Path) -> Path:
    path.write_bytes(b"my notes, not a folder")
    return path


def _dir_inside(tmp_path: Path, name: str) -> Path:
    (tmp_path / "out" / name).mkdir(parents=True)
    (tmp_path / "out" / name / "keep.txt").write_text("mine")
    return tmp_path / "out"


def _file_inside(tmp_path: Path, name: str) -> Path:
    (tmp_path / "out").mkdir()
    _file(tmp_path / "out" / name)
    return tmp_path / "out"


def _loop(path: Path) -> Path:
    path.symlink_to(path.with_name(path.name + "-b"))
    path.with_name(path.name + "-b").symlink_to(path)
    return path


@pytest.mark.parametrize("make_out, says", WRONG_KIND.values(), ids=WRONG_KIND.keys())
def test_finetune_output_of_the_wrong_kind_is_one_line(run_cli, tmp_path, ws, make_out, says):
    refused(run_cli, tmp_path, *finetune_args(ws, "-o", make_out(tmp_path, ws), "--force"), says=says)


@pytest.mark.parametrize("command", ["learn", "expand"])
def test_symlink_loop_as_output_is_one_line(run_cli, tmp_path, ws, command):
    out = _loop(tmp_path / "out")
    if command == "learn":
        args = learn_args(ws, "-o", out, "--force")
    else:
        args = ["expand", tiny_gene("tleg").save(tmp_path / "g.safetensors"), "-o", out, "--force"]
    refused(run_cli, tmp_path, *args, says="symbolic link loop")


def _chattr(flag: str, path: Path) -> None:
    try:
        done = subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        done = False
    if not done:
        pytest.skip(f"chattr {flag} is not allowed here (needs root and a filesystem with attributes)")


@pytest.mark.parametrize("flag", ["+i", "+a"], ids=["immutable", "append-only"])
def test_an_immutable_or_append_only_output_is_refused_before_training(run_cli, tmp_path, ws, flag):
    gene = _file(tmp_path / "g.safetensors")
    _chattr(flag, gene)
    try:
        line = refused(run_cli, tmp_path, *learn_args(ws, "-o", gene, "--force"))
    finally:
        _chattr(flag.replace("+", "-"), gene)
    assert f"is {'immutable' if flag == '+i' else 'append-only'}; lgtool does not replace it" in line


def test_an_immutable_output_folder_is_refused_before_training(run_cli, tmp_path, ws):
    out = _dir_inside(tmp_path, "best")
    _chattr("+i", out)
    try:
        refused(run_cli, tmp_path, *finetune_args(ws, "-o", out, "--force"), says="is immutable")
    finally:
        _chattr("-i", out)


def test_a_read_only_output_is_refused_even_with_force(run_cli, tmp_path, monkeypatch):
    """chmod a-w (root may write anyway, so os.access answers as for another user here)."""
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    (tmp_path / "desc").mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: not (Path(p) == tmp_path / "desc" and mode & os.W_OK) and real(p, mode)
    )
    refused(run_cli, tmp_path, "expand", gene, "-o", tmp_path / "desc", "--force", says="is read-only")


def test_an_append_only_folder_is_refused_as_a_place_to_write(run_cli, tmp_path, ws):
    (tmp_path / "box").mkdir()
    _chattr("+a", tmp_path / "box")
    try:
        refused(run_cli, tmp_path, *learn_args(ws, "-o", tmp_path / "box" / "g.safetensors"), says="not writable")
    finally:
        _chattr("-a", tmp_path / "box")


# --- links inside an output folder are replaced, never written through ---


def test_finetune_replaces_links_inside_its_output_and_never_writes_through_them(run_cli, tmp_path, ws):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("my notes")
    (mine / "weights.bin").write_bytes(b"\x00my weights")
    (mine / "folder").mkdir()
    (mine / "folder" / "keep.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    _symlink(out / "metrics.json", mine / "precious.txt")
    _hardlink(out / "checkpoint.ckpt", mine / "weights.bin")
    _symlink(out / "best", mine / "folder")
    before = tree(mine)
    got, stdout, stderr = run_cli(*finetune_args(ws, "-o", out, "--force"))
    assert got == 0, stderr
    assert tree(mine) == before
    for name in ("metrics.json", "checkpoint.ckpt"):
        assert stat.S_ISREG(os.lstat(out / name).st_mode)
    assert not (out / "best").is_symlink() and (out / "best" / "model.safetensors").is_file()
    assert leftovers(tmp_path) == []


# --- the final rename looks before it leaps ---


def test_final_rename_never_replaces_a_file_that_appeared(tmp_path):
    target = tmp_path / "g.safetensors"
    check_output(target)
    with pytest.raises(InputError) as e, atomic_file(target) as tmp:
        tmp.write_text("new result")
        target.write_text("another run's result")  # appears while this run works
    kept = tmp_path / f"g.{os.getpid()}.safetensors"
    assert f"the new result is kept as {kept}" in str(e.value) and e.value.exit_code == 3
    assert target.read_text() == "another run's result" and kept.read_text() == "new result"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, kept.name])


def test_final_rename_replaces_only_the_file_force_was_given_for(tmp_path):
    target = tmp_path / "g.safetensors"
    target.write_text("old")
    check_output(target, force=True)
    write_text(target, "first")  # what --force was given for: replaced
    write_text(target, "second")  # then what this run wrote itself: replaced (checkpoints every epoch)
    assert target.read_text() == "second"
    target.unlink()
    target.write_text("someone else's")  # another file under the name now
    with pytest.raises(InputError, match="was replaced by another file"):
        write_text(target, "third")
    assert target.read_text() == "someone else's"
    assert (tmp_path / f"g.{os.getpid()}.safetensors").read_text() == "third"


def test_final_rename_of_a_folder_that_appeared(tmp_path):
    target = tmp_path / "desc"
    check_output(target, is_dir=True)
    with pytest.raises(InputError, match="appeared"), atomic_dir(target) as tmp:
        (tmp / "who").write_text("new")
        target.mkdir()
        (target / "who").write_text("theirs")
    assert (target / "who").read_text() == "theirs"
    assert (tmp_path / f"desc.{os.getpid()}" / "who").read_text() == "new"
    assert leftovers(tmp_path) == []


def test_expand_keeps_a_folder_that_appeared_and_reports_its_own(run_cli, tmp_path, monkeypatch):
    import lgtool.training.descnet

    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    real = lgtool.training.descnet.check_descnet

    def another_run_writes_first(*args, **kwargs):  # --check runs between the last check and the rename
        (tmp_path / "desc").mkdir()
        (tmp_path / "desc" / "theirs.txt").write_text("another run's")
        return real(*args, **kwargs)

    monkeypatch.setattr(lgtool.training.descnet, "check_descnet", another_run_writes_first)
    got, stdout, stderr = run_cli("expand", gene, "--depth", 2, "--check", "-o", tmp_path / "desc")
    kept = tmp_path / f"desc.{os.getpid()}"
    line = error_line(3, got, stdout, stderr)
    assert "appeared" in line and f"kept as {kept}" in line
    assert (tmp_path / "desc" / "theirs.txt").read_text() == "another run's"
    assert (kept / "model.safetensors").is_file() and leftovers(tmp_path) == []


def test_learn_keeps_a_learngene_that_appeared_and_reports_its_own(run_cli, tmp_path, ws, monkeypatch):
    import lgtool.training.learn

    real = lgtool.training.learn.fit
    out = tmp_path / "g.safetensors"

    def another_run_finishes_first(*args, **kwargs):
        summary = real(*args, **kwargs)
        out.write_bytes(b"another run's learngene")
        return summary

    monkeypatch.setattr(lgtool.training.learn, "fit", another_run_finishes_first)
    line = error_line(3, *run_cli(*learn_args(ws, "-o", out)))
    assert out.read_bytes() == b"another run's learngene"
    assert f"kept as {tmp_path / f'g.{os.getpid()}.safetensors'}" in line
    assert leftovers(tmp_path) == []


# --- SIGTERM saves like Ctrl-C ---


def test_sigterm_during_training_saves_a_checkpoint_and_resume_finishes(run_cli, tmp_path, ws, monkeypatch):
    import lgtool.training.recipe

    real, calls = lgtool.training.recipe.kd_loss, []

    def terminated_at_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(lgtool.training.recipe, "kd_loss", terminated_at_second_step)
    out, checkpoint = tmp_path / "g.safetensors", tmp_path / "g.ckpt"
    line = error_line(143, *run_cli(*learn_args(ws, "-o", out)))
    assert "terminated by SIGTERM at step 2" in line and f"--resume {checkpoint}" in line
    assert checkpoint.is_file() and not out.exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(lgtool.training.recipe, "kd_loss", real)
    got, _, stderr = run_cli(*learn_args(ws, "-o", out, "--resume", checkpoint))
    assert got == 0 and out.is_file() and not checkpoint.exists(), stderr


def test_sigterm_before_training_is_one_line_and_exit_143(run_cli, tmp_path, ws, monkeypatch, sigterm_restored):
    import lgtool.training.learn

    def terminated_while_loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(lgtool.training.learn, "load_data", terminated_while_loading)
    refused(run_cli, tmp_path, *learn_args(ws, "-o", tmp_path / "g.safetensors"), code=143, says="SIGTERM")


# --- a folder moved aside by a killed run ---


def test_expand_beside_a_stale_aside_folder_writes_its_own_result(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    stale = make_dir(tmp_path / f".desc.{dead_pid()}.old", "stale")  # no record says which run moved it, or why
    before = tree(tmp_path)
    got, stdout, stderr = run_cli("expand", gene, "--depth", 2, "-o", tmp_path / "desc")
    assert got == 0 and "Traceback" not in stderr, stderr
    assert (tmp_path / "desc" / "model.safetensors").is_file()
    unchanged(before, tmp_path)  # left where it is, as it is
    assert (stale / "who").read_text() == "stale"


def test_expand_after_a_killed_forced_replace_finds_the_old_folder(run_cli, tmp_path):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    desc = make_dir(tmp_path / "desc", "mine")
    aside, record = interrupted_swap(desc, MOVED_ASIDE)  # killed between moving it aside and renaming the new in
    expand = ["expand", gene, "--depth", 2, "-o", desc]
    refused(run_cli, tmp_path, *expand, says=f"{desc} already exists (as {aside.name}, moved aside by a run")
    refused(run_cli, tmp_path, *expand, "--dry-run", says="already exists")
    before = tree(tmp_path)
    got, stdout, _ = run_cli(*expand, "--force", "--dry-run")
    assert got == 0 and tree(tmp_path) == before
    got, stdout, stderr = run_cli(*expand, "--force")
    assert got == 0 and "Traceback" not in stderr, stderr
    assert sorted(os.listdir(tmp_path)) == ["desc", "g.safetensors"] and (desc / "model.safetensors").is_file()


# --- a full disk ---

ENOSPC_SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"


def _disk_full_after(nbytes: int, reported_as: str = "OSError"):
    """A save that writes `nbytes` of its file, then is refused for want of space: reported as an OSError, as
    safetensors reports it (its own SafetensorError), or as torch.save to a Python file does (its RuntimeError
    raised while the file's OSError is handled)."""

    def write(*args, **kwargs):
        to = next(a for a in (*args, *kwargs.values()) if isinstance(a, (str, Path)) or hasattr(a, "write"))
        part = b"\x00" * nbytes  # a part of it, as a real full disk leaves
        to.write(part) if hasattr(to, "write") else Path(to).write_bytes(part)
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if reported_as == "safetensors":
            raise SafetensorError(ENOSPC_SAFETENSORS)
        if reported_as == "torch":
            try:
                raise full
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 598")  # noqa: B904
        raise full

    return write


@pytest.mark.parametrize("reported_as", ["OSError", "safetensors"])
def test_disk_full_at_the_learngene_keeps_the_old_file_and_names_the_checkpoint(
    run_cli, tmp_path, ws, monkeypatch, reported_as
):
    import safetensors.torch

    out, checkpoint = tmp_path / "g.safetensors", tmp_path / "g.ckpt"
    out.write_bytes(b"my older learngene")
    before = tree(tmp_path)
    real = safetensors.torch.save_file
    monkeypatch.setattr(safetensors.torch, "save_file", _disk_full_after(100, reported_as))
    line = error_line(1, *run_cli(*learn_args(ws, "-o", out, "--force")))
    assert "No space left on device" in line and f"{out} was left as it was" in line
    assert f"--resume {checkpoint}" in line and checkpoint.is_file()
    unchanged(before, tmp_path)
    assert leftovers(tmp_path) == []
    monkeypatch.setattr(safetensors.torch, "save_file", real)  # room again: the checkpoint finishes the job
    got, _, stderr = run_cli(*learn_args(ws, "-o", out, "--force", "--resume", checkpoint))
    assert got == 0 and out.read_bytes() != b"my older learngene", stderr


@pytest.mark.parametrize("reported_as", ["OSError", "torch"])
def test_disk_full_at_a_checkpoint_leaves_no_temporary(run_cli, tmp_path, ws, monkeypatch, reported_as):
    out = tmp_path / "out"
    _dir_inside(tmp_path, "notes")
    before = tree(tmp_path)
    monkeypatch.setattr(torch, "save", _disk_full_after(10, reported_as))
    line = error_line(1, *run_cli(*finetune_args(ws, "-o", out, "--force")))
    assert f"could not write {out / 'checkpoint.ckpt'}: No space left on device" in line
    assert "no checkpoint was kept" in line
    unchanged(before, tmp_path)
    assert leftovers(tmp_path) == []


def test_disk_full_at_the_desc_net_is_one_line_and_leaves_nothing(run_cli, tmp_path, monkeypatch):
    import lgtool.hub

    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    desc = make_dir(tmp_path / "desc", "mine")
    before = tree(tmp_path)
    monkeypatch.setattr(lgtool.hub, "save_tensors", _disk_full_after(100))  # the weights, written tensor by tensor
    line = error_line(1, *run_cli("expand", gene, "--depth", 2, "-o", desc, "--force"))
    assert f"could not write {desc}: No space left on device; {desc} was left as it was" in line
    assert tree(tmp_path) == before


def test_a_real_full_disk_at_the_desc_net_is_one_line(run_cli, tmp_path, small_disk):
    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")  # its Desc-Net at depth 2: over 64 KiB
    desc = small_disk / "desc"
    line = error_line(1, *run_cli("expand", gene, "--depth", 2, "-o", desc))
    assert f"could not write {desc}: No space left on device; {desc} was left as it was" in line
    assert os.listdir(small_disk) == []  # nothing under the final name, no temporary


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_stdout_on_a_full_device_is_one_line(tmp_path, as_json):
    import sys

    gene = tiny_gene("tleg").save(tmp_path / "g.safetensors")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "lgtool", "inspect", str(gene), *(["--json"] if as_json else [])],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1 and done.stderr.strip() == "error: No space left on device", done.stderr


def test_disk_full_at_the_end_of_finetune_names_the_checkpoint_that_finishes_it(run_cli, tmp_path, ws, monkeypatch):
    import lgtool.training.finetune

    real = lgtool.training.finetune.write_json

    def full(path, obj):
        with atomic_file(path) as tmp:
            tmp.write_text("{")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    monkeypatch.setattr(lgtool.training.finetune, "write_json", full)
    line = error_line(1, *run_cli(*finetune_args(ws, "-o", out)))
    checkpoint = out / "checkpoint.ckpt"
    assert f"could not write {out / 'metrics.json'}: No space left on device" in line
    assert f"the finished training is kept in {checkpoint}: continue with --resume {checkpoint}" in line
    assert not (out / "metrics.json").exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(lgtool.training.finetune, "write_json", real)
    got, _, stderr = run_cli(*finetune_args(ws, "-o", out, "--resume", checkpoint))
    assert got == 0 and (out / "metrics.json").is_file(), stderr
