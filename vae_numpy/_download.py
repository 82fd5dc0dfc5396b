"""Download one file from a list of mirrors, safely.

Each attempt streams the response into a temporary file *in the destination folder* (so the final rename
never crosses a file system), hashing as it goes, with a tqdm progress bar. Only a file of the expected size
and SHA-256 is moved into place, with :func:`os.replace` (atomic: a reader sees the old state or the whole
new file, never a part). A failed attempt deletes its temporary file and the next mirror is tried.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DownloadFailed

USER_AGENT = "vae-numpy"  # some hosts refuse urllib's default agent
_CHUNK = 1 << 16


class _Refused(Exception):
    """The server answered, but with the wrong bytes."""


def _reason(exc: BaseException, timeout: float) -> str:
    """A short, human reason for a failed attempt."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _stream(url: str, out, size: int | None, desc: str, progress: bool, timeout: float) -> str:
    """Copy the body at `url` into the open file `out`; return its SHA-256 (hex)."""
    h, got = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = size or int(response.headers.get("Content-Length") or 0) or None
        from tqdm import tqdm  # imported here: `import vae_numpy` stays quick

        with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(_CHUNK):
                got += len(chunk)
                if size is not None and got > size:
                    raise _Refused(f"more than the expected {size} bytes")
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    if size is not None and got != size:
        raise _Refused(f"got {got} bytes, expected {size}")
    return h.hexdigest()


def _fetch_one(url: str, dest: Path, size: int | None, sha256: str | None, progress: bool,
               timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, size, dest.name, progress, timeout)
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and digest != sha256:
            raise _Refused(f"checksum mismatch: SHA-256 {digest}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(urls, dest, size: int | None = None, sha256: str | None = None, progress: bool = True,
          timeout: float = 5.0) -> Path:
    """Download `dest` from the first of `urls` that delivers the expected bytes.

    Parameters
    ----------
    urls : sequence of str
        Full URLs of the same file, tried in order.
    dest : str or os.PathLike
        Final path; its folder must exist. Untouched unless a download succeeds.
    size, sha256 : int, str or None
        Expected byte count and SHA-256 (hex); a mismatch rejects that mirror.
    progress : bool
        Show a tqdm progress bar (on stderr).
    timeout : float
        Seconds allowed to connect, and to wait for each chunk of the body.

    Returns
    -------
    pathlib.Path
        `dest`, now holding the verified file.

    Raises
    ------
    DownloadFailed
        A :class:`DataError` listing each URL and why it failed (HTTP status, connection refused, timed out,
        wrong size, checksum mismatch).
    """
    dest = Path(dest)
    errors = []
    for url in urls:
        try:
            _fetch_one(url, dest, size, sha256, progress, timeout)
            return dest
        except (OSError, http.client.HTTPException, _Refused) as exc:  # URLError and timeouts are OSErrors
            errors.append((url, _reason(exc, timeout)))
    raise DownloadFailed(dest.name, errors)
