"""IDX files: the format MNIST and Fashion-MNIST are distributed in.

Layout (all integers big-endian)::

    byte 0, 1   0x00 0x00
    byte 2      type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte 3      number of dimensions, d
    4 * d       the size of each dimension, uint32
    then        prod(sizes) items of the type, row-major (C order), big-endian

A file may be gzipped; :func:`read_idx` detects gzip by its magic bytes ``1f 8b``, not by the file name.
Public through :mod:`vae_numpy.datasets`.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

IDX_TYPES = {  # type code -> big-endian numpy dtype
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}  # native dtype -> type code
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _valid_types() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_TYPES.items())


def _open(path: Path):
    """A binary file object over the IDX bytes: the file itself, or its gzip stream."""
    f = open(path, "rb")
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    f.seek(0)
    return f, f


def _read_exactly(f, buf: memoryview) -> int:
    """Fill `buf` from `f`; return how many bytes arrived (fewer only at end of file)."""
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:got + _CHUNK])
        if not n:
            break
        got += n
    return got


def _read_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Parse the magic number and the dimensions; the stream is left at the first data byte."""
    magic = f.read(4)
    if len(magic) == 0:
        raise DataError(f"{path}: empty: the file holds no data (expected an IDX header)")
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{path}: not an IDX file: it starts with {magic.hex(' ')}, an IDX file starts with "
                        "00 00 <type> <ndim>")
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X}; valid codes are {_valid_types()}")
    if ndim == 0:
        raise DataError(f"{path}: the IDX header declares 0 dimensions; an array needs at least 1")
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: truncated: the header declares {ndim} dimensions ({4 * ndim} bytes of "
                        f"sizes), the file has {len(raw)} of them")
    return IDX_TYPES[code], struct.unpack(f">{ndim}I", raw)


def read_idx(path) -> np.ndarray:
    """Read an IDX file, gzipped or not, into a native-endian array.

    Shapes: the array has the shape the header declares, e.g. ``(60000, 28, 28)`` uint8 for MNIST images and
    ``(60000,)`` uint8 for its labels.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is detected by its magic bytes ``1f 8b``, whatever the name.

    Returns
    -------
    numpy.ndarray
        A fresh, writable, C-contiguous array in native byte order.

    Raises
    ------
    DataError
        The file is empty, is not IDX (bad magic number or type code), is truncated, has trailing bytes,
        or is a corrupt gzip stream. The message starts with the path and says what is wrong.
    """
    path = Path(path)
    try:
        f, raw = _open(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        with raw, f:
            return _read_body(f, path)
    except EOFError as exc:
        raise DataError(f"{path}: truncated: the gzip stream ends early ({exc})") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip stream: {exc}") from None


def _read_body(f, path: Path) -> np.ndarray:
    dtype, shape = _read_header(f, path)
    out = np.empty(shape, dtype=dtype)
    want = out.nbytes
    got = _read_exactly(f, memoryview(out.reshape(-1).view(np.uint8)))
    if got < want:
        dims = "x".join(map(str, shape))
        raise DataError(f"{path}: truncated: header says {dims} = {want} bytes of data, file has {got}")
    if f.read(1):
        extra = 1 + len(f.read())
        raise DataError(f"{path}: {extra} unexpected byte(s) after the {want} bytes of data the header "
                        "declares")
    return out.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array) -> Path:
    """Write `array` as an IDX file, gzipped when `path` ends in ``.gz``; atomically (temporary file, rename).

    Shapes: any ``(d1, ..., dk)`` with 1 <= k <= 255 and each size < 2**32, e.g. ``(N, 28, 28)`` images.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; a ``.gz`` suffix selects gzip (written with mtime 0, so the bytes are reproducible).
    array : array_like
        Of dtype uint8, int8, int16, int32, float32 or float64 (the IDX types); other dtypes are refused
        rather than silently converted.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ConfigError
        For an unsupported dtype, a 0-d array or a dimension too large for the header.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ConfigError(f"write_idx: dtype {arr.dtype} has no IDX type code; cast the array to one of "
                          f"{_valid_types()}")
    if not 1 <= arr.ndim <= 255 or any(n >= 2**32 for n in arr.shape):
        raise ConfigError(f"write_idx: shape {arr.shape} cannot be stored; IDX needs 1 to 255 dimensions, "
                          "each smaller than 2**32")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = np.ascontiguousarray(arr, dtype=IDX_TYPES[code])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            f = gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) if path.suffix == ".gz" else fh
            f.write(header)
            f.write(memoryview(body.reshape(-1).view(np.uint8)))
            if f is not fh:
                f.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
