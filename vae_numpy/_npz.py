"""Reading an ``.npz`` archive without trusting it: names and sizes first, each ``.npy`` header before its data.

``np.load`` on an ``.npz`` decompresses whatever a member claims to hold once it is indexed: a crafted
checkpoint can then make the reader allocate gigabytes (a 1 GiB extra entry, a header declaring shape
(2**36,)). :class:`Archive` reads in three steps, and refuses at the first that fails:

1. the zip's member list: names (``<key>.npy``, no folders, no duplicates) and declared sizes
   (``ZipInfo.file_size``), before a single member is opened;
2. a member's ``.npy`` header (``numpy.lib.format.read_magic`` / ``read_array_header_1_0`` / ``_2_0``):
   dtype, shape and order checked against what the caller expects, and the member's size against the
   header's, before its data;
3. the data, read straight into the caller's array (no intermediate copy).

Nothing is ever unpickled (an object dtype is refused in step 2). Every refusal is a ``ValueError`` whose
message says what is wrong; :mod:`vae_numpy.checkpoint` turns it into a CheckpointError naming the file.
"""

from __future__ import annotations

import re
import zipfile

import numpy as np
from numpy.lib import format as npformat

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER = 10_000              # bytes; numpy's own default limit for a header
_KEY = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


class Archive:
    """The members of an ``.npz`` file, read with checks.

    ``keys`` is the set of entry names (member names without ``.npy``); ``size(key)`` the bytes a member
    declares uncompressed. Use as a context manager, or call ``close()``.

    Raises (on opening)
    -------------------
    ValueError
        Not a zip archive (with a hint when it is a single .npy array or a pickle), a member that is not
        ``<key>.npy``, a duplicate, or a member larger than ``max_member`` bytes.
    """

    def __init__(self, path, max_member: int):
        with open(path, "rb") as f:
            start = f.read(8)
        if not zipfile.is_zipfile(path):
            if start.startswith(NPY_MAGIC):
                raise ValueError("it is a single .npy array, not an .npz archive")
            if start[:1] == b"\x80":
                raise ValueError("it is a pickle, not an .npz archive, and it is never unpickled")
            raise ValueError("it is not a zip (.npz) archive" if start else "the file is empty")
        self._zip = zipfile.ZipFile(path)
        self._info = {}
        try:
            for info in self._zip.infolist():
                name = info.filename
                key = name[:-4] if name.endswith(".npy") else None
                if key is None or not _KEY.fullmatch(key):
                    raise ValueError(f"it holds a member {name[:80]!r} that no checkpoint has")
                if key in self._info:
                    raise ValueError(f"it holds the member {name!r} twice")
                if info.file_size > max_member:
                    raise ValueError(f"its member {name!r} declares {info.file_size:,} bytes (at most "
                                     f"{max_member:,} fit the largest model allowed); it was not read")
                self._info[key] = info
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    @property
    def keys(self) -> set:
        return set(self._info)

    def size(self, key: str) -> int:
        return self._info[key].file_size

    # -------------------------------------------------------------------------------- reading
    def header(self, key: str):
        """(shape, fortran_order, dtype) from the member's .npy header; nothing after the header is read."""
        with self._zip.open(self._info[key]) as f:
            return _read_header(f, key)[:3]

    def text(self, key: str, max_chars: int) -> str:
        """A 0-d unicode entry (how np.savez stores a str) of at most `max_chars` characters."""
        with self._zip.open(self._info[key]) as f:
            shape, _, dtype, offset = _read_header(f, key)
            if shape != () or dtype.kind != "U":
                raise ValueError(f"the entry {key!r} should be a string, got {dtype} {shape}")
            if dtype.itemsize > 4 * max_chars:
                raise ValueError(f"the entry {key!r} holds {dtype.itemsize // 4:,} characters, more than the "
                                 f"{max_chars:,} allowed")
            _check_size(self._info[key], offset, dtype.itemsize, key)
            data = f.read(dtype.itemsize)
        if len(data) != dtype.itemsize:
            raise ValueError(f"the entry {key!r} is truncated")
        return str(np.frombuffer(data, dtype=dtype)[0])

    def read_into(self, key: str, out: np.ndarray) -> np.ndarray:
        """Read the member into `out` (C-contiguous), after checking its header against out's dtype and shape."""
        with self._zip.open(self._info[key]) as f:
            shape, fortran, dtype, offset = _read_header(f, key)
            expect(key, shape, fortran, dtype, out.shape, out.dtype)
            _check_size(self._info[key], offset, out.nbytes, key)
            view = memoryview(out.reshape(-1).view(np.uint8))
            done = 0
            while done < out.nbytes:
                n = f.readinto(view[done:])
                if not n:
                    raise ValueError(f"the entry {key!r} is truncated")
                done += n
        return out


def expect(key, shape, fortran, dtype, want_shape, want_dtype) -> None:
    """A header must declare exactly `want_dtype` `want_shape` in C order (ValueError naming both otherwise)."""
    if dtype != np.dtype(want_dtype) or tuple(shape) != tuple(want_shape) or (fortran and len(shape) > 1):
        order = " (Fortran order)" if fortran and len(shape) > 1 else ""
        raise ValueError(f"{key} is {dtype} {tuple(shape)}{order}; the config needs {np.dtype(want_dtype)} "
                         f"{tuple(want_shape)}")


def _read_header(f, key):
    """(shape, fortran_order, dtype, bytes read so far) from the start of a member stream."""
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(f, max_header_size=MAX_HEADER)
        else:
            raise ValueError(f".npy format version {version} is not written by numpy's savez for plain arrays")
    except ValueError as exc:
        raise ValueError(f"the entry {key!r} has no valid .npy header ({str(exc).splitlines()[0]})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"the entry {key!r} holds object arrays, i.e. pickles, which are never loaded")
    return shape, fortran, dtype, f.tell()


def _check_size(info, offset, nbytes, key):
    if info.file_size != offset + nbytes:
        raise ValueError(f"the entry {key!r} is {info.file_size:,} bytes where its header implies "
                         f"{offset + nbytes:,}; it is truncated or padded")
