"""Check an output path before any work, and claim it: `check_output` refuses (one line, exit 3) an output that
could not be written, is one of the inputs in any form, or exists without --force, and records what the name
holds now, which the final rename of `lgtool.base.atomic` re-checks."""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from lgtool.base.atomic import claim, pending_restore, tmp_overhead
from lgtool.base.errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX: no inode flags to read
    fcntl = None

_DEFAULT_NAME_MAX = 255


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def check_output_path(path, *, is_dir: bool = False) -> None:
    """Raises InputError (one line) if atomic_file (or, with `is_dir`, atomic_dir) could not write `path`.

    Meant to run before long work, so that a bad -o fails in a second rather than after training."""
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{path}: folder {parent} does not exist; create it or choose another output path")
    if not parent.is_dir():
        raise InputError(f"{path}: {parent} is not a folder; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK) or _attributes(parent) & (_IMMUTABLE_FL | _APPEND_FL):
        raise InputError(f"{path}: folder {parent} is not writable; choose a folder you can write to")
    limit, size = _name_max(parent), len(os.fsencode(path.name))
    if size > limit:
        raise InputError(f"{path}: name is {size} bytes, over this filesystem's limit of {limit}; choose a shorter one")
    # the longest name written beside `path`; atomic_dir's aside and record names are as long
    overhead = tmp_overhead()
    if size + overhead > limit:
        raise InputError(
            f"{path}: name is {size} bytes and its temporary name (+{overhead}) would exceed this filesystem's "
            f"limit of {limit}; choose a name of at most {limit - overhead} bytes"
        )
    if not is_dir and path.is_dir():
        raise InputError(f"{path}: is a folder, not a file; choose another output path")


_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def _kind(path: Path, shown) -> str | None:
    """ "file", "dir" or None (nothing there, or a dangling link) for what `path` names, following links;
    anything else (a device, FIFO or socket, a link loop, a path lgtool may not look at) is an InputError."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as e:
        if isinstance(e, NotADirectoryError):
            raise InputError(f"{shown}: part of this path is a file, not a folder; choose another path") from None
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return None  # check_output_path says which limit, and by how much
        if e.errno == errno.ELOOP:
            raise InputError(f"{shown} is a symbolic link loop; choose another output path") from None
        raise InputError(f"{shown}: {e.strerror}; choose another output path") from None
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    special = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file or folder")
    raise InputError(
        f"{shown} is {special}; lgtool writes only regular files and folders and never replaces one of these, "
        "even with --force: choose another output path"
    )


def _overlaps(path: Path, other: Path) -> bool:
    """Whether writing `path` could touch `other` (an existing input or another output), in any form: the same
    file through a symbolic or hard link, the same real path, or one inside the other."""
    try:
        if os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other):
            return True  # (device, inode): symlinks followed, hard links found
    except OSError:
        pass
    mine, theirs = Path(os.path.realpath(path)), Path(os.path.realpath(other))
    if mine == theirs or theirs.is_relative_to(mine) or (mine.is_relative_to(theirs) and os.path.isdir(other)):
        return True
    return os.path.isdir(other) and _linked_into(path, other)


def _linked_into(path: Path, folder: Path) -> bool:
    """Whether the file at `path` is also a file somewhere inside `folder` through a hard link. Only a file with
    more than one link is looked for, so the common case costs one stat."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
        return False
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                other = os.stat(os.path.join(parent, name))
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def _given(paths) -> list[Path]:
    return [Path(p) for p in paths if p is not None and str(p) != "" and os.path.exists(p)]


def check_output(path, *, inputs=(), force: bool = False, is_dir: bool = False, others=(), keep=()) -> None:
    """Everything about an output that can be known before the work starts, as one-line InputErrors, then
    claims it for the final rename (see the module docstring).

    Refused even with `force`: an output that is one of the command's `inputs` in any form (through a symbolic
    or hard link, or a folder inside or around one), or one of the command's `others` outputs; one that is not
    a regular file or folder (a device, FIFO, socket, link loop); one of the wrong kind (a file where a folder
    goes, or the reverse); one that is read-only or immutable. Refused without `force`: one that exists, unless
    it is in `keep` (e.g. the checkpoint being resumed).

    A folder that a killed run moved aside while replacing `path` (and recorded doing so) is judged as `path`:
    the run's first write puts it back there. Nothing is changed here (a dry run makes these checks too)."""
    path = Path(path)
    aside = pending_restore(path)
    seen = aside or path  # what `path` will hold when this run writes it
    kind = _kind(seen, path)
    for given in _given(inputs):
        if _overlaps(path, given):
            raise InputError(f"{path} would overwrite this command's input {given}; choose another output path")
    for other in others:
        if other is not None and _overlaps(path, Path(other)):
            raise InputError(f"{path} and {other} are both outputs of this command; give each its own path")
    exists = os.path.lexists(seen)
    kept = any(os.path.exists(k) and kind is not None and os.path.samefile(seen, k) for k in _given(keep))
    if exists and not force and not kept:
        where = f" (as {aside.name}, moved aside by a run that was killed; lgtool puts it back first)" if aside else ""
        raise InputError(f"{path} already exists{where}; choose another output path or pass --force to replace it")
    if is_dir and kind == "file":
        raise InputError(f"{path} is a file, not a folder; choose another output path")
    check_output_path(path, is_dir=is_dir)
    _check_writable(seen, kind)
    claim(path, held_by=aside)


_FS_IOC_GETFLAGS = 0x80086601  # Linux: _IOR('f', 1, long)
_IMMUTABLE_FL, _APPEND_FL = 0x10, 0x20


def _attributes(path) -> int:
    """The Linux inode flags of `path` (chattr +i / +a), or 0 where they cannot be read."""
    if fcntl is None:
        return 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        return struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8))[0]
    except OSError:
        return 0
    finally:
        os.close(fd)


def _check_writable(path: Path, kind: str | None) -> None:
    """An existing output must be writable: lgtool never replaces what its owner write-protected (chmod a-w,
    chattr +i or +a), and could not delete an old folder's files or write into it otherwise."""
    if kind is None:
        return
    flags = _attributes(path)
    if not os.access(path, os.W_OK | (os.X_OK if kind == "dir" else 0)) or flags & (_IMMUTABLE_FL | _APPEND_FL):
        what = "immutable" if flags & _IMMUTABLE_FL else "append-only" if flags & _APPEND_FL else "read-only"
        raise InputError(
            f"{path} is {what}; lgtool does not replace it even with --force: make it writable "
            f"{'(chattr -i or -a) ' if flags else ''}or choose another output path"
        )


def check_work_folder(path) -> None:
    """A folder a command makes (with any missing parents) and keeps writing into while it runs, as a resumable
    bench does: refused in one line before any work if it is a dangling link or not a folder, or if it, or the
    nearest folder above it that exists, cannot be written."""
    path = Path(path)
    kind = _kind(path, path)
    if kind is None and os.path.islink(path):
        raise InputError(f"{path} is a symbolic link to nothing; remove it or choose another output folder")
    if kind == "file":
        raise InputError(f"{path} is a file, not a folder; choose another output folder")
    if kind == "dir":
        _check_writable(path, kind)
        return
    above = path.absolute().parent
    while not os.path.lexists(above):
        above = above.parent
    if _kind(above, above) != "dir":
        raise InputError(f"{path}: {above} is not a folder; choose another output folder")
    if not os.access(above, os.W_OK | os.X_OK) or _attributes(above) & (_IMMUTABLE_FL | _APPEND_FL):
        raise InputError(f"{path}: folder {above} is not writable; choose a folder you can write to")


def check_inside(folder, names: dict[str, bool], *, inputs=(), others=()) -> None:
    """Checks and claims the `names` (name -> is a folder) a command writes inside the output `folder`, each
    like `check_output` with --force (the folder was accepted with it)."""
    folder = Path(folder)
    for name, is_dir in names.items():
        if os.path.lexists(folder):
            check_output(folder / name, inputs=inputs, force=True, is_dir=is_dir, others=others)
        else:  # nothing is inside a folder that is not there yet
            claim(folder / name, absent=True)
