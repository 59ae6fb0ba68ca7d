"""Write to a temporary name, rename into place: a crash never leaves a half-written final file.

Every write goes to `.NAME.<pid>.<random>.tmp` beside NAME and is renamed to NAME only once complete, so NAME
holds either the old or the new content. Replacing a folder swaps the two in one atomic rename (Linux
`renameat2` with RENAME_EXCHANGE); where the filesystem cannot, the old folder is first renamed to
`.NAME.<pid>.old`, and a kill before the new folder takes its place leaves only that. The next write to NAME
restores that folder if NAME is missing (or deletes it if NAME exists) and deletes the temporaries of processes
that no longer run; those of a running process are never touched.
"""

import ctypes
import errno
import functools
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from lgtool.errors import InputError

_TOKEN_HEX = 3  # 6 hex digits: short names leave room for long target names
_DEFAULT_NAME_MAX = 255


def _tmp_name(name: str, token: str) -> str:
    return f".{name}.{os.getpid()}.{token}.tmp"


def _old_name(name: str) -> str:
    return f".{name}.{os.getpid()}.old"


def _leftovers(name: str) -> re.Pattern:
    """Matches what a killed writer of NAME leaves: group 1 is its pid, group 2 is set for a moved-aside folder."""
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.(?:[0-9a-f]{{{2 * _TOKEN_HEX}}}\.tmp|(old))")


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


def _recover(path: Path) -> None:
    """Clean up after writers of `path` that were killed: restore a moved-aside folder, delete temporaries."""
    pattern = _leftovers(path.name)
    dead = [
        (path.parent / e.name, m.group(2) is not None)
        for e in os.scandir(path.parent)
        if (m := pattern.fullmatch(e.name)) and not _alive(int(m.group(1)))
    ]
    for leftover, moved_aside in sorted(dead):
        if moved_aside and not os.path.lexists(path):
            try:
                os.rename(leftover, path)
                continue
            except OSError:  # another process restored it first, or it is gone: fall through and delete it
                pass
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


def _create_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666 less the umask, like open()


@contextmanager
def atomic_file(path):
    """Yields a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = _new_tmp(path, _create_file)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # writers that recreate the file (safetensors) leave it 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not Linux, or a libc older than glibc 2.28
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swaps `a` and `b` in one atomic rename; False where this system or filesystem cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _replace_dir(tmp: Path, path: Path) -> None:
    """Puts `tmp` at `path` and deletes the old `path`, in an order that a kill cannot make unrecoverable."""
    if _exchange(tmp, path):
        return
    old = path.with_name(_old_name(path.name))
    os.replace(path, old)  # a kill from here to the next rename leaves `old` for _recover to restore
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


@contextmanager
def atomic_dir(path, force: bool = False):
    """Yields a temporary folder beside `path`; on success it becomes `path`.

    With `force`, an existing `path` is replaced; it is deleted only once the new one is in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = _new_tmp(path, lambda p: os.mkdir(p, 0o777))  # 0o777 less the umask, like mkdir
    try:
        yield tmp
        if force and os.path.lexists(path):
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_text(path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


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
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {parent} is not writable; choose a folder you can write to")
    if not is_dir and path.is_dir():
        raise InputError(f"{path}: is a folder, not a file; choose another output path")
    limit, size = _name_max(parent), len(os.fsencode(path.name))
    if size > limit:
        raise InputError(f"{path}: name is {size} bytes, over this filesystem's limit of {limit}; choose a shorter one")
    # the longest name written beside `path`; the old-folder name of atomic_dir is shorter than this
    overhead = len(os.fsencode(_tmp_name("", "0" * 2 * _TOKEN_HEX)))
    if size + overhead > limit:
        raise InputError(
            f"{path}: name is {size} bytes and its temporary name (+{overhead}) would exceed this filesystem's "
            f"limit of {limit}; choose a name of at most {limit - overhead} bytes"
        )


def check_output(path, *, inputs=(), force: bool = False, is_dir: bool = False) -> None:
    """Everything about an output that can be known before the work starts, as one-line InputErrors:
    it is none of the command's `inputs` (nor inside or around one), even with `force`; it does not exist
    unless `force`; and `check_output_path` can write it."""
    path = Path(path)
    target = path.resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        source = Path(given).resolve()
        if target == source or source.is_relative_to(target) or (source.is_dir() and target.is_relative_to(source)):
            raise InputError(f"{path} would overwrite this command's input {given}; choose another output path")
    if os.path.lexists(path) and not force:
        raise InputError(f"{path} already exists; choose another output path or pass --force to replace it")
    check_output_path(path, is_dir=is_dir)
