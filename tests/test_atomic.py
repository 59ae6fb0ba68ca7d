"""Atomic writes: a kill at any point leaves the old or the new content (or a folder the next run restores),
leftovers of dead writers are cleaned up, and an unusable output path is one InputError line up front."""

import ctypes
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from lgtool.base import atomic, renames
from lgtool.base.atomic import atomic_dir, atomic_file, write_json, write_text
from lgtool.base.errors import InputError, WriteFailed
from lgtool.base.outputs import check_output, check_output_path

# Replaces a folder in a child process that dies (os._exit) just before filesystem step number `die_at`
# (or inside the `with` body); prints the number of steps when it lives to the end.
KILLED_WRITER = """
import os, sys
from pathlib import Path
from lgtool.base import atomic

target, die_at, exchange = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
steps = 0

def step(fn):
    def wrapped(*args):
        global steps
        if str(steps) == die_at:
            os._exit(9)
        steps += 1
        return fn(*args)
    return wrapped

if not exchange:
    atomic._exchange = lambda a, b: False
atomic._exchange, atomic._remove, os.replace = step(atomic._exchange), step(atomic._remove), step(os.replace)
atomic._write_record = step(atomic._write_record)
with atomic.atomic_dir(target, force=True) as tmp:
    (tmp / "who").write_text("new")
    if die_at == "body":
        os._exit(9)
print(steps)
"""


def make_dir(path, who: str):
    path.mkdir()
    (path / "who").write_text(who)
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def kill_writer(target, die_at, exchange: bool) -> int:
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target), str(die_at), "1" if exchange else "0"],
        capture_output=True,
        text=True,
    )
    assert child.returncode in (0, 9), child.stderr
    return child.returncode


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_kill_at_any_point_of_a_forced_replace_is_recoverable(tmp_path, exchange):
    if exchange and not atomic._exchange(*(make_dir(tmp_path / n, n) for n in "ab")):
        pytest.skip("no renameat2 RENAME_EXCHANGE here")
    seen = []
    for i, die_at in enumerate(["body", *range(10)]):
        parent = tmp_path / f"run{i}"
        parent.mkdir()
        target = make_dir(parent / "out", "old")
        finished = kill_writer(target, die_at, exchange) == 0
        now = (target / "who").read_text() if target.exists() else None
        seen.append(now)
        assert now in ("old", "new") or (not exchange and any(n.endswith(".old") for n in names(parent))), now
        with atomic_dir(target, force=True) as tmp:  # the next run: recovers before it writes
            assert (target / "who").read_text() == (now or "old")
            (tmp / "who").write_text("third")
        assert names(parent) == ["out"] and (target / "who").read_text() == "third"
        if finished:
            break
    assert finished and seen[0] == "old" and seen[-1] == "new"
    assert (None in seen) == (not exchange)  # the fallback has a moment with nothing under the final name


def test_failed_body_keeps_the_old_folder_and_leaves_nothing(tmp_path):
    target = make_dir(tmp_path / "out", "old")
    with pytest.raises(RuntimeError), atomic_dir(target, force=True) as tmp:
        (tmp / "who").write_text("new")
        raise RuntimeError
    assert names(tmp_path) == ["out"] and (target / "who").read_text() == "old"


def test_fallback_when_renameat2_is_refused(tmp_path, monkeypatch):
    def refuse(*args):
        ctypes.set_errno(errno.EINVAL)  # what some filesystems answer to RENAME_EXCHANGE
        return -1

    monkeypatch.setattr(renames, "_renameat2", lambda: refuse)
    target = make_dir(tmp_path / "out", "old")
    assert not atomic._exchange(tmp_path / "out", tmp_path / "out")
    with atomic_dir(target, force=True) as tmp:
        (tmp / "who").write_text("new")
    assert names(tmp_path) == ["out"] and (target / "who").read_text() == "new"


def test_fallback_puts_the_old_folder_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(renames, "_renameat2", lambda: None)
    target = make_dir(tmp_path / "out", "old")
    real = os.replace

    def fail_on_tmp(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(errno.EIO, "simulated I/O error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_tmp)
    with pytest.raises(OSError, match="simulated"), atomic_dir(target, force=True) as tmp:
        (tmp / "who").write_text("new")
    assert names(tmp_path) == ["out"] and (target / "who").read_text() == "old"


# The fallback's steps (KILLED_WRITER): 0 exchange (refused), 1 write the record, 2 move the old folder aside,
# 3 rename the new one in, 4 delete the old one, 5 delete the record.
MOVED_ASIDE, RENAMED_IN = 3, 4


def interrupted_swap(target: Path, die_at: int) -> tuple[Path, Path]:
    """A forced replace of the folder `target` by the fallback, killed before step `die_at`: its aside folder and
    its record."""
    assert kill_writer(target, die_at, exchange=False) == 9
    (aside,) = target.parent.glob(f".{target.name}.*.old")
    return aside, aside.with_name(aside.name.removesuffix(".old") + ".rec")


@pytest.fixture
def claims(monkeypatch):
    """A command's claims, forgotten after the test (as `scoped` forgets them after a command)."""
    monkeypatch.setattr(atomic, "_claims", {})


def test_a_folder_aside_without_its_record_is_never_put_back(tmp_path, claims):
    pid = dead_pid()
    stale = [
        make_dir(tmp_path / f".out.{pid}.old", "stale"),  # what lgtool 0.1.0 left, or anyone
        make_dir(tmp_path / f".out.{pid}.abcdef.old", "stale"),  # today's name, no record
        make_dir(tmp_path / f".out.{pid}.123456.old", "stale"),  # a record, but not whole
        make_dir(tmp_path / f".out.{pid}.654321.old", "stale"),  # a record, for another name
    ]
    (tmp_path / f".out.{pid}.123456.rec").write_text('{"target": "ou')
    other = {"target": "other", "aside": f".out.{pid}.654321.old", "new": [0, 0]}
    (tmp_path / f".out.{pid}.654321.rec").write_text(json.dumps(other))
    before = names(tmp_path)
    out = tmp_path / "out"
    assert atomic.pending_restore(out) is None
    check_output(out, is_dir=True)  # a fresh run: nothing is at `out`
    with atomic_dir(out) as tmp:
        (tmp / "who").write_text("new")
    assert (out / "who").read_text() == "new"
    check_output(out, is_dir=True, force=True)  # and replacing it, by the fallback, leaves them too
    with atomic_dir(out, force=True) as tmp:
        (tmp / "who").write_text("newer")
    assert (out / "who").read_text() == "newer"
    assert names(tmp_path) == sorted([*before, "out"]) and all((d / "who").read_text() == "stale" for d in stale)


def test_a_swap_killed_before_the_new_folder_took_the_name_puts_the_old_one_back(tmp_path, claims):
    out = make_dir(tmp_path / "out", "old")
    aside, record = interrupted_swap(out, MOVED_ASIDE)
    assert not out.exists() and (aside / "who").read_text() == "old" and record.is_file()
    json_record = json.loads(record.read_text())
    assert json_record["target"] == "out" and json_record["aside"] == aside.name
    assert atomic.pending_restore(out) == aside
    before = names(tmp_path)
    with pytest.raises(InputError, match=f"already exists \\(as {aside.name}, moved aside"):
        check_output(out, is_dir=True)  # it is still the user's `out`: --force is needed to replace it
    assert names(tmp_path) == before  # a check moves nothing (a dry run makes it too)
    with pytest.raises(RuntimeError), atomic_dir(out):
        raise RuntimeError  # the first write puts it back, even one that then fails
    assert names(tmp_path) == ["out"] and (out / "who").read_text() == "old"

    aside, record = interrupted_swap(out, MOVED_ASIDE)
    check_output(out, is_dir=True, force=True)  # a fresh forced run: claims the folder where it lies
    with atomic_dir(out, force=True) as tmp:
        (tmp / "who").write_text("new")
    assert names(tmp_path) == ["out"] and (out / "who").read_text() == "new"


def test_a_swap_killed_after_the_new_folder_took_the_name_is_finished(tmp_path, claims):
    out = make_dir(tmp_path / "out", "old")
    aside, record = interrupted_swap(out, RENAMED_IN)
    assert (out / "who").read_text() == "new" and (aside / "who").read_text() == "old" and record.is_file()
    assert atomic.pending_restore(out) is None
    write_text(tmp_path / "other", "x")  # a write of another name leaves them alone
    assert aside.is_dir() and record.is_file()
    check_output(out, is_dir=True, force=True)
    with atomic_dir(out, force=True) as tmp:
        (tmp / "who").write_text("third")
    assert names(tmp_path) == ["other", "out"] and (out / "who").read_text() == "third"


def test_a_recorded_folder_is_not_put_back_over_something_else(tmp_path, claims):
    out = make_dir(tmp_path / "out", "old")
    aside, record = interrupted_swap(out, MOVED_ASIDE)
    make_dir(out, "made by hand meanwhile")  # not the folder the killed run renamed in
    with atomic_dir(tmp_path / "out", force=True) as tmp:
        (tmp / "who").write_text("new")
    assert (out / "who").read_text() == "new" and (aside / "who").read_text() == "old" and record.is_file()


def test_leftovers_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path):
    dead, live = dead_pid(), os.getpid()
    stale = [f".out.{dead}.abcdef.tmp", f".out.{dead}.123456.tmp"]
    kept = [
        f".out.{live}.abcdef.tmp",  # a writer still running
        f".out.{live}.old",
        f".out.{dead}.abcdef.tmp.bak",  # not ours: other names, and other targets
        f".out.x.{dead}.abcdef.tmp",
        f".outer.{dead}.abcdef.tmp",
        f".out.{dead}.ABCDEF.tmp",
    ]
    (tmp_path / stale[0]).write_text("half")
    make_dir(tmp_path / stale[1], "half")
    for name in kept:
        (tmp_path / name).write_text("keep")
    write_text(tmp_path / "out", "done")
    assert names(tmp_path) == sorted([*kept, "out"])
    with atomic_dir(tmp_path / "out2"):  # a folder target cleans up its own name only
        pass
    assert names(tmp_path) == sorted([*kept, "out", "out2"])


def test_temporary_names_carry_the_pid(tmp_path):
    with atomic_file(tmp_path / "f") as tmp_file, atomic_dir(tmp_path / "d") as tmp_dir:
        assert atomic._leftovers("f").fullmatch(tmp_file.name).group(1) == str(os.getpid())
        assert atomic._leftovers("d").fullmatch(tmp_dir.name).group(1) == str(os.getpid())
        assert tmp_file.parent == tmp_dir.parent == tmp_path


def test_modes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "f", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "g").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_write_text_and_json(tmp_path):
    write_text(tmp_path / "a" / "results.md", "| é |\n")
    write_json(tmp_path / "metrics.json", {"top1": 0.5})
    assert (tmp_path / "a" / "results.md").read_text(encoding="utf-8") == "| é |\n"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"top1": 0.5}
    assert (tmp_path / "metrics.json").read_text().endswith("}\n") and names(tmp_path) == ["a", "metrics.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    write_text(tmp_path / "f", "old")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "f") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert names(tmp_path) == ["f"] and (tmp_path / "f").read_text() == "old"


def test_a_refusal_reported_by_safetensors_or_torch_is_a_write_failed(tmp_path):
    def refused(raise_it) -> WriteFailed:
        with pytest.raises(WriteFailed) as e, atomic_file(tmp_path / "g.safetensors") as tmp:
            tmp.write_bytes(b"half")
            raise_it()
        assert names(tmp_path) == [] and "\n" not in str(e.value) and e.value.exit_code == 1
        return e.value

    def safetensors_full():
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def torch_full():  # torch.save to a Python file whose write the system refused
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 598")  # noqa: B904

    def safetensors_eof():  # an I/O error with no errno
        raise SafetensorError("Error while serializing: I/O error: failed to write whole buffer")

    for raise_it in (safetensors_full, torch_full):
        e = refused(raise_it)
        assert e.errno == errno.ENOSPC and str(e).startswith(f"could not write {tmp_path / 'g.safetensors'}: No space")
    e = refused(safetensors_eof)
    assert e.errno == errno.EIO and ": failed to write whole buffer;" in str(e)


@pytest.mark.parametrize(
    "bug",
    [SafetensorError("Error while serializing: InvalidTensorView"), RuntimeError("shape mismatch"), ValueError("x")],
    ids=["safetensors", "torch", "other"],
)
def test_a_programming_error_while_writing_stays_what_it_is(tmp_path, bug):
    with pytest.raises(type(bug)) as e, atomic_file(tmp_path / "g") as tmp:
        tmp.write_bytes(b"half")
        raise bug
    assert e.value is bug and names(tmp_path) == []


def test_a_real_full_disk_is_a_write_failed_for_safetensors_and_torch(small_disk):
    import safetensors.torch

    from lgtool.training.loop.checkpoint import Position, save_checkpoint
    from lgtool.training.settings import TrainConfig

    model = torch.nn.Linear(256, 256)  # 257 KB of weights, on a 64 KiB disk
    with pytest.raises(WriteFailed) as e, atomic_file(small_disk / "g.safetensors") as tmp:
        safetensors.torch.save_file(model.state_dict(), str(tmp))
    assert e.value.errno == errno.ENOSPC and os.listdir(small_disk) == []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(WriteFailed) as e:
        save_checkpoint(small_disk / "run.ckpt", model, optimizer, {}, TrainConfig(), Position())
    assert e.value.errno == errno.ENOSPC and os.listdir(small_disk) == []


def check_error(path, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        check_output_path(path, **kwargs)
    assert e.value.exit_code == 3 and "\n" not in str(e.value)
    return str(e.value)


def test_check_output_path_accepts_a_writable_place(tmp_path):
    check_output_path(tmp_path / "out", is_dir=True)
    check_output_path(tmp_path / "metrics.json")
    (tmp_path / "out").mkdir()
    check_output_path(tmp_path / "out", is_dir=True)  # an existing folder (replaced with --force)


def test_check_output_path_rejects_a_missing_or_non_folder_parent(tmp_path):
    assert "folder" in check_error(tmp_path / "no" / "out") and "does not exist" in check_error(tmp_path / "no" / "o")
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in check_error(tmp_path / "file" / "out", is_dir=True)
    (tmp_path / "dir").mkdir()
    assert "is a folder, not a file" in check_error(tmp_path / "dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_check_output_path_rejects_a_read_only_parent(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        assert "is not writable" in check_error(tmp_path / "ro" / "out")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_check_output_path_reports_an_unwritable_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # runs as root too
    assert f"folder {tmp_path} is not writable" in check_error(tmp_path / "out")


def test_check_output_path_knows_the_longest_name_that_works(tmp_path, monkeypatch):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    overhead = len(atomic._tmp_name("", "0" * 2 * atomic._TOKEN_HEX))
    longest = "n" * (limit - overhead)
    assert len(longest) >= 230
    check_output_path(tmp_path / longest)
    check_output_path(tmp_path / longest, is_dir=True)
    write_text(tmp_path / longest, "fits")
    with atomic_dir(tmp_path / longest, force=True) as tmp:  # replaces the file with a folder
        (tmp / "who").write_text("fits")
    monkeypatch.setattr(renames, "_renameat2", lambda: None)
    with atomic_dir(tmp_path / longest, force=True) as tmp:  # the fallback's .old name fits too
        (tmp / "who").write_text("fits again")
    assert (tmp_path / longest / "who").read_text() == "fits again"
    assert f"at most {len(longest)} bytes" in check_error(tmp_path / (longest + "n"))
    assert "over this filesystem's limit" in check_error(tmp_path / ("n" * (limit + 1)), is_dir=True)
    assert "at most" in check_error(tmp_path / ("é" * (len(longest) // 2 + 1)))  # bytes, not characters


def _recording_fsyncs(monkeypatch, final: Path):
    """Every fsync as (path synced, whether `final` existed then), in order."""
    synced, real = [], os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), os.path.exists(final)))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an fd by /proc (Linux)")
def test_a_file_is_flushed_before_its_rename_and_its_folder_after(tmp_path, monkeypatch):

    final = tmp_path / "results.json"
    synced = _recording_fsyncs(monkeypatch, final)
    write_json(final, {"a": 1})
    (data, existed), (folder, after) = synced
    assert Path(data).name.startswith(".results.json.") and data.endswith(".tmp") and not existed
    assert folder == str(tmp_path) and after and json.loads(final.read_text()) == {"a": 1}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an fd by /proc (Linux)")
@pytest.mark.parametrize("force", [False, True])
def test_a_folder_is_flushed_file_by_file_before_its_rename_and_its_parent_after(tmp_path, monkeypatch, force):

    final = tmp_path / "desc"
    if force:
        final.mkdir()
    synced = _recording_fsyncs(monkeypatch, final / "model.safetensors")
    with atomic_dir(final, force=force) as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
        (tmp / "config.json").write_text("{}")
    inside = [Path(p) for p, existed in synced[:-1] if not existed]
    assert {p.name for p in inside} == {"model.safetensors", "config.json", Path(inside[-1]).name}
    assert inside[-1].name.startswith(".desc.") and inside[-1].parent == tmp_path  # the folder itself, before
    assert synced[-1] == (str(tmp_path), True)  # then its parent, once the new name holds it
