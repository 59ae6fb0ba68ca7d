"""Write to a temporary name, rename into place: a crash never leaves a half-written final file.

Every write goes to `.NAME.<pid>.<random>.tmp` beside NAME and is renamed to NAME only once complete, so NAME
holds either the old or the new content. Replacing a folder swaps the two in one atomic rename (Linux
`renameat2` with RENAME_EXCHANGE); where the filesystem cannot, the old folder is first renamed to
`.NAME.<pid>.old`, and a kill before the new folder takes its place leaves only that. The next write to NAME
restores that folder if NAME is missing (or deletes it if NAME exists) and deletes the temporaries of processes
that no longer run; those of a running process are never touched.

`check_output` (lgtool.base.outputs) runs before the work and claims each output: what its name held then
(nothing, or the entry `--force` was given for). The final rename re-checks the claim: a name that has since
appeared or changed is left alone, and the new result is kept beside it under a name the error reports (exit 3).
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

from lgtool.base.errors import InputError, LgtoolError

_TOKEN_HEX = 3  # 6 hex digits: short names leave room for long target names


class WriteFailed(LgtoolError, OSError):
    """A write that the system refused (a full disk, a quota, an I/O error, a file made immutable): one line, exit 1.
    The final name was left as it was and the temporary removed; callers add what else was kept."""

    exit_code = 1

    def __init__(self, path, error: OSError, kept: str = ""):
        reason = error.strerror or str(error)
        OSError.__init__(self, error.errno, f"could not write {path}: {reason}; {path} was left as it was" + kept)
        self.path, self.error = Path(path), error

    def __str__(self) -> str:
        return self.strerror

    def keeping(self, kept: str) -> "WriteFailed":
        """The same failure, its message naming what else was kept (e.g. the last checkpoint)."""
        return WriteFailed(self.path, self.error, f"; {kept}")


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


@contextmanager
def _refused_as_write_failed(path: Path):
    """What the system refuses while `path` is written (no space, a quota, an immutable file) is a WriteFailed:
    one line, exit 1."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as e:
        raise WriteFailed(path, e) from e


def _begin(path: Path, make) -> Path:
    """Cleans up after killed writers of `path` and makes its temporary with `make`."""
    with _refused_as_write_failed(path):
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
        with _refused_as_write_failed(path):
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # writers that recreate the file (safetensors) leave it 0600
            _flush(tmp)
            _commit(tmp, path, os.replace)
            _flush(path.parent)
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


_RENAME_NOREPLACE = 1

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


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Renames `src` to `dst` only if `dst` does not exist, atomically where the system can; False if it exists."""
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if not src.is_dir():
        try:
            os.link(src, dst)  # fails if dst exists, atomically
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: look, then leap
            pass
        else:
            os.unlink(src)
            return True
    if os.path.lexists(dst):
        return False
    os.rename(src, dst)
    return True


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
    """Yields a temporary folder beside `path`; on success it becomes `path`, everything in it flushed to disk
    before the rename and the folder that holds it after.

    With `force`, an existing `path` is replaced; it is deleted only once the new one is in place."""
    path = Path(path)
    tmp = _begin(path, lambda p: os.mkdir(p, 0o777))  # 0o777 less the umask, like mkdir
    try:
        with _refused_as_write_failed(path):
            yield tmp
            _flush_tree(tmp)
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


def claim(path, *, absent: bool = False) -> None:
    """Record what `path` holds now (or, with `absent`, nothing) as what its final rename must find there."""
    _claims[_key(Path(path))] = None if absent else _entry(path)


def tmp_overhead() -> int:
    """Bytes a temporary name adds to the name it stands for (the longest name written beside an output)."""
    return len(os.fsencode(_tmp_name("", "0" * 2 * _TOKEN_HEX)))
