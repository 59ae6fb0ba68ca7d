"""Write to a temporary name, rename into place: a crash never leaves a half-written final file.

Every write goes to `.NAME.<pid>.<random>.tmp` beside NAME and is renamed to NAME only once complete, so NAME
holds either the old or the new content. Replacing a folder swaps the two in one atomic rename (Linux
`renameat2` with RENAME_EXCHANGE); where the filesystem cannot, a record `.NAME.<pid>.<random>.rec` naming NAME,
the aside name and the new folder is written and flushed first, then the old folder is renamed to
`.NAME.<pid>.<random>.old`, the new one to NAME, and the old one and the record are deleted. The next write to
NAME finishes what a killed run's record describes: the old folder goes back if NAME is missing, and is deleted
if NAME holds that run's new folder; anything else is left as it is. A folder is never put back by its name
alone: one without a record is not lgtool's to move. Temporaries of processes that no longer run are deleted;
those of a running process are never touched.

`check_output` (lgtool.base.outputs) runs before the work and claims each output: what its name held then
(nothing, or the entry `--force` was given for). The final rename re-checks the claim: a name that has since
appeared or changed is left alone, and the new result is kept beside it under a name the error reports (exit 3).
"""

import errno
import functools
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from lgtool.base.errors import InputError, refused_as_write_failed
from lgtool.base.interrupt import raise_if_terminated
from lgtool.base.renames import exchange as _exchange
from lgtool.base.renames import rename_noreplace as _rename_noreplace

_TOKEN_HEX = 3  # 6 hex digits: short names leave room for long target names


def _tmp_name(name: str, token: str) -> str:
    return f".{name}.{os.getpid()}.{token}.tmp"


def _swap_names(tmp: Path) -> tuple[Path, Path]:
    """The aside name of the old folder and the record's name, for a folder swap whose new folder is `tmp`: the
    temporary's name with another suffix of the same length, so that whatever fits one fits all three."""
    base = tmp.name.removesuffix(".tmp")
    return tmp.with_name(base + ".old"), tmp.with_name(base + ".rec")


def _leftovers(name: str) -> re.Pattern:
    """Matches what a writer of NAME leaves if killed: group 1 is its pid, group 2 what it is (tmp, old, rec)."""
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[0-9a-f]{{{2 * _TOKEN_HEX}}}\.(tmp|old|rec)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid we can ask about
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _dead_leftovers(path: Path) -> list[tuple[Path, str]]:
    """What writers of `path` that no longer run left beside it, each with its kind (tmp, old, rec)."""
    pattern = _leftovers(path.name)
    return sorted(
        (path.parent / e.name, m.group(2))
        for e in os.scandir(path.parent)
        if (m := pattern.fullmatch(e.name)) and not _alive(int(m.group(1)))
    )


def _write_record(record: Path, path: Path, aside: Path, new: Path) -> None:
    """Before a folder swap moves anything: which name it replaces, where the old folder goes, and the identity of
    the new one, flushed to disk with its folder, so that a kill or a crash at any later point can be finished."""
    st = os.lstat(new)
    text = json.dumps({"target": path.name, "aside": aside.name, "new": [st.st_dev, st.st_ino]}) + "\n"
    try:
        with open(record, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _flush(record.parent)
    except BaseException:
        record.unlink(missing_ok=True)
        raise


def _swap_outcome(path: Path, record: Path) -> tuple[Path, str | None]:
    """How to finish the swap of `path` that a killed run recorded in `record`: its aside folder and "restore"
    (killed before the new folder took the name: the old one goes back), "delete" (killed after it: the old one
    goes, as that run was about to do), "forget" (nothing is aside: killed before moving it, or after deleting it)
    or None (a record not whole or not for `path`, or a name that now holds something else: both are left)."""
    aside = record.with_name(record.name.removesuffix(".rec") + ".old")
    if not os.path.lexists(aside):
        return aside, "forget"
    try:
        done = json.loads(record.read_text(encoding="utf-8"))
        if done["target"] != path.name or done["aside"] != aside.name:
            return aside, None
        new = tuple(done["new"])
    except (OSError, ValueError, KeyError, TypeError):
        return aside, None
    now = _entry(path)
    if now is None:
        return aside, "restore"
    return aside, "delete" if now[:2] == new else None


def pending_restore(path) -> Path | None:
    """The folder that the next write of `path` puts back there (a killed run had moved it aside while replacing
    `path`, and recorded doing so), or None. Looks only: `check_output` judges `path` by it, a dry run included."""
    path = Path(path)
    try:
        for leftover, kind in _dead_leftovers(path):
            if kind == "rec" and (found := _swap_outcome(path, leftover))[1] == "restore":
                return found[0]
    except OSError:  # a parent that is missing or unreadable: the output checks say so
        pass
    return None


def _recover(path: Path) -> None:
    """Clean up after writers of `path` that were killed: finish the folder swaps they recorded, delete their
    temporaries. An aside folder without a record is left where it is."""
    dead = _dead_leftovers(path)
    for record in (leftover for leftover, kind in dead if kind == "rec"):
        aside, outcome = _swap_outcome(path, record)
        if outcome == "restore":
            before, key = _entry(aside), _key(path)
            try:
                if not _rename_noreplace(aside, path):
                    continue  # the name was taken meanwhile: keep the folder aside, and its record
            except FileNotFoundError:  # another process put it back first
                continue
            if key in _claims and _claims[key] == before:  # claimed as it lay aside: the claim follows it
                _claims[key] = _entry(path)
        elif outcome == "delete":
            _remove(aside)
        if outcome is not None:
            _remove(record)
    for leftover, kind in dead:
        if kind == "tmp":
            _remove(leftover)


def _new_tmp(path: Path, make) -> Path:
    """A fresh temporary name beside `path`, created by `make(name)` (which must fail if the name exists)."""
    while True:
        tmp = path.with_name(_tmp_name(path.name, secrets.token_hex(_TOKEN_HEX)))
        try:
            make(tmp)
            return tmp
        except FileExistsError:
            continue


def _begin(path: Path, make) -> Path:
    """Cleans up after killed writers of `path` and makes its temporary with `make`."""
    with refused_as_write_failed(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _recover(path)
        return _new_tmp(path, make)


def _create_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666 less the umask, like open()


def _flush(path: Path) -> None:
    """fsync `path`, a file or a folder (its entries). Data first, then the rename, then its folder: SQLite's and
    git's order, so that a machine crash cannot leave the new name on an empty or partial file (ext4's and XFS's
    delayed allocation) nor lose the rename itself."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if not (path.is_dir() and e.errno in (errno.EINVAL, errno.EBADF)):  # some filesystems sync no folders
            raise
    finally:
        os.close(fd)


def _flush_tree(root: Path) -> None:
    """fsync every file and folder under `root`, folders after what they hold, `root` last."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _flush(Path(folder) / name)
        _flush(Path(folder))


@contextmanager
def atomic_file(path):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename, the data flushed to
    disk before it and the folder after it."""
    path = Path(path)
    tmp = _begin(path, _create_file)
    try:
        with refused_as_write_failed(path):
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # writers that recreate the file (safetensors) leave it 0600
            _flush(tmp)
            raise_if_terminated()  # a signal held back during an import stops the write before it takes the name
            _commit(tmp, path, os.replace)
            _flush(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What each claimed output name held when `check_output` looked: None (nothing) or the identity of the entry
# that --force was given for; after each write, the entry lgtool put there.
_claims: dict[str, tuple[int, int, int] | None] = {}


def scoped(command):
    """Decorates a command (learn, finetune, expand): the claims its checks make guard its own writes and are
    forgotten when it returns, so that a later write by someone else's code is not held to them."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        saved = dict(_claims)
        try:
            return command(*args, **kwargs)
        finally:
            _claims.clear()
            _claims.update(saved)

    return run


def _key(path: Path) -> str:
    """The name a rename acts on: the real folder, and the last component as given (a link there is replaced)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def _entry(path) -> tuple[int, int, int] | None:
    """(device, inode, change time) of the entry at `path` itself (a link, not what it points to); None if there
    is none. The change time tells a new file from a deleted one whose inode number it reuses."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _keep_aside(tmp: Path, path: Path) -> Path:
    """Gives a finished temporary a visible name beside `path` that nothing else uses, and returns it."""
    stem, suffix = (path.stem, path.suffix) if path.suffix and not tmp.is_dir() else (path.name, "")
    for n in range(100):
        kept = path.with_name(f"{stem}.{os.getpid()}{f'-{n}' if n else ''}{suffix}")
        if _rename_noreplace(tmp, kept):
            return kept
    raise OSError(errno.EEXIST, "no free name to keep the new result under", str(path))


def _commit(tmp: Path, path: Path, replace) -> None:
    """Renames the finished `tmp` to `path` with `replace(tmp, path)`, but only if `path` is as it was claimed:
    still absent, or still the entry --force was given for. Otherwise `path` is left alone, `tmp` is kept under
    a reported name, and the error is an InputError (exit 3)."""
    key = _key(path)
    if key not in _claims:
        replace(tmp, path)
        return
    now = _entry(path)
    if now is None:
        placed = _rename_noreplace(tmp, path)
    elif now == _claims[key]:
        replace(tmp, path)
        placed = True
    else:
        placed = False
    if not placed:
        kept = _keep_aside(tmp, path)
        what = "appeared" if _claims[key] is None else "was replaced by another file"
        raise InputError(
            f"{path} {what} while lgtool was working (another run?) and was left as it is; the new result is kept "
            f"as {kept}"
        )
    _claims[key] = _entry(path)


def discard(path) -> None:
    """Deletes the file at `path` if it is still the one lgtool last wrote there (or was never claimed)."""
    path = Path(path)
    key = _key(path)
    if key in _claims and _entry(path) != _claims[key]:
        return
    if os.path.isfile(path) or os.path.islink(path):
        path.unlink(missing_ok=True)


def _replace_dir(tmp: Path, path: Path) -> None:
    """Puts `tmp` at `path` and deletes the old `path`, in an order that a kill cannot make unrecoverable."""
    if _exchange(tmp, path):
        return
    old, record = _swap_names(tmp)
    _write_record(record, path, old, tmp)
    os.replace(path, old)  # a kill from here until the record is gone: the next write of `path` finishes it
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        _remove(record)
        raise
    _remove(old)
    _remove(record)  # last: a kill while the old folder is being deleted leaves the record to finish it


@contextmanager
def atomic_dir(path, force: bool = False):
    """Yields a temporary folder beside `path`; on success it becomes `path`, everything in it flushed to disk
    before the rename and the folder that holds it after.

    With `force`, an existing `path` is replaced; it is deleted only once the new one is in place."""
    path = Path(path)
    tmp = _begin(path, lambda p: os.mkdir(p, 0o777))  # 0o777 less the umask, like mkdir
    try:
        with refused_as_write_failed(path):
            yield tmp
            _flush_tree(tmp)
            raise_if_terminated()  # as in atomic_file
            if _key(path) in _claims:
                _commit(tmp, path, _replace_dir)
            elif force and os.path.lexists(path):
                _replace_dir(tmp, path)
            else:
                os.replace(tmp, path)
            _flush(path.parent)
    finally:
        _remove(tmp)


def write_text(path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def claim(path, *, absent: bool = False, held_by=None) -> None:
    """Record what `path` holds now (or, with `absent`, nothing) as what its final rename must find there.
    `held_by`: where that entry lies now instead (a folder aside, which `_recover` puts back at `path`)."""
    _claims[_key(Path(path))] = None if absent else _entry(held_by or path)


def tmp_overhead() -> int:
    """Bytes a temporary name adds to the name it stands for (the longest name written beside an output)."""
    return len(os.fsencode(_tmp_name("", "0" * 2 * _TOKEN_HEX)))
