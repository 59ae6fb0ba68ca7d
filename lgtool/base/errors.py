"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`. A write the system refuses is
a `WriteFailed`, whichever library reports it (`refused_as_write_failed`)."""

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path


class LgtoolError(Exception):
    exit_code = 1


class UsageError(LgtoolError):
    exit_code = 2


class InputError(LgtoolError):
    """Input invalid or missing: bad file, wrong schema, a size the learngene cannot make."""

    exit_code = 3


class CheckError(LgtoolError):
    exit_code = 4


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


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` says memory ran out: Python's MemoryError, the system's ENOMEM (an mmap refused), or torch's
    and safetensors' own words for either (torch's allocators, CPU and CUDA, say "can't allocate" or "out of
    memory")."""
    if isinstance(e, MemoryError) or getattr(e, "errno", None) == errno.ENOMEM:
        return True
    text = str(e).lower()
    return any(words in text for words in ("can't allocate", "cannot allocate", "out of memory", "mmap"))


# safetensors' own error when the system refuses its write: "Error while serializing: I/O error: No space left on
# device (os error 28)", perhaps followed by the path.
_SAFETENSORS_IO = re.compile(r"I/O error: (.*?)(?: \(os error (\d+)\))?(?: at path .*)?$", re.S)


def refusal(e: Exception) -> OSError | None:
    """The system's refusal behind `e`: an OSError, or one that a library reports as its own error; None for
    anything else, which stays what it is (a programming error keeps its traceback)."""
    if isinstance(e, OSError):
        return e
    if type(e).__name__ == "SafetensorError" and (m := _SAFETENSORS_IO.search(str(e))):
        code = int(m.group(2)) if m.group(2) else errno.EIO
        return OSError(code, os.strerror(code) if m.group(2) else m.group(1))
    # torch.save writing to a Python file: the file's OSError, then torch's RuntimeError raised over it
    cause = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    if isinstance(e, RuntimeError) and isinstance(cause, OSError) and cause.errno is not None:
        return cause
    return None


@contextmanager
def refused_as_write_failed(path: Path):
    """What the system refuses while `path` is written (no space, a quota, an immutable file) is a WriteFailed:
    one line, exit 1, whether it comes as an OSError or as safetensors' or torch's own error."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as e:
        refused = refusal(e)
        if refused is None:
            raise
        raise WriteFailed(path, refused) from e
