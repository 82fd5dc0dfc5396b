"""Atomic writes: a temporary file beside the target, flushed and fsync'ed, then ``os.replace``.

A crash, a kill or a full disk half-way leaves the previous file untouched; the temporary is removed on any
failure (at worst a hidden ``.<name>.*.tmp`` stays behind after a SIGKILL). A full disk (or quota) becomes
one :class:`~vae_numpy.errors.WriteError` line that names the file and the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import WriteError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_atomic(path, write, hint="free some space or write elsewhere") -> Path:
    """Call ``write(f)`` on a temporary binary file beside `path`, then put it in place with os.replace.

    Raises
    ------
    WriteError
        The disk (or the quota) is full: "no space left writing <path>: <hint>"; the old file is intact.
    OSError
        Any other failure (a missing or read-only folder, ...), after removing the temporary.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise WriteError(exc.errno, f"no space left writing {path}: {hint}", str(path)) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:  # also KeyboardInterrupt: never leave a half-written file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise WriteError(exc.errno, f"no space left writing {path}: {hint}", str(path)) from None
        raise
    try:  # make the rename itself durable (best effort: not every file system allows it)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def write_text_atomic(path, text: str, hint="free some space or write elsewhere") -> Path:
    """`text` (UTF-8) into `path`, atomically, as :func:`write_atomic`."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), hint)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
