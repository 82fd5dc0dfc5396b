"""From uint8 images to float minibatches: scaling, binarization, flattening, shuffling, a validation split.

The data set stays uint8 (Fashion-MNIST's 60,000 train images are 47 MB that way, 188 MB as float32);
each minibatch is gathered and scaled on the fly into a float buffer allocated once, so an epoch allocates
nothing per batch. Public through :mod:`vae_numpy.datasets`.

Binarization turns a grey level x in 0..255 into a Bernoulli(x / 255) sample, so that a Bernoulli decoder
models real binary data:

- ``"none"``: x / 255, grey levels in [0, 1];
- ``"static"``: sampled once over the whole set with a fixed seed (the "statically binarized MNIST" of the
  literature); stored as uint8 **0 or 255**, so it flows through the same x / 255 path and displays as an
  image;
- ``"dynamic"``: resampled for every batch from the iterator's generator, a fresh binary image each epoch.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from ._validate import check_choice, check_dtype, check_float, check_int, check_rng
from .errors import ConfigError

BINARIZE = ("none", "static", "dynamic")
STATIC_SEED = 0  # the seed of "static" binarization: fixed, so the binary set is the same on every run
_ROWS = 8192  # rows per chunk when binarizing a whole set (bounds the temporary random bytes)


def _check_u8(name: str, images, min_ndim: int = 2) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < min_ndim:
        raise ConfigError(f"{name} must be a uint8 array (N, 28, 28) or (N, D) with grey levels 0-255, as "
                          f"load_dataset returns; got {images.dtype} {images.shape}")
    return images


def flatten(images) -> np.ndarray:
    """(N, H, W) -> (N, H * W): a view when the array is C-contiguous, (N, D) unchanged.

    Shapes: images ``(N, 28, 28)`` -> ``(N, 784)``.
    """
    images = np.asarray(images)
    return np.ascontiguousarray(images).reshape(len(images), -1)


def to_unit(images, dtype="float32", out=None) -> np.ndarray:
    """Grey levels 0..255 -> floats in [0, 1]: x / 255, correctly rounded (255 maps to exactly 1.0).

    Shapes: images ``(B, ...)`` uint8 -> the same shape in `dtype`. Meant for one batch at a time: keep the
    data set in uint8 rather than converting it whole every epoch.

    Parameters
    ----------
    images : numpy.ndarray of uint8
    dtype : {"float32", "float64"}
        The model's dtype.
    out : numpy.ndarray, optional
        Array of the same shape and dtype to write into (no allocation).
    """
    images = _check_u8("images", images, min_ndim=0)
    return _scale_into(images, np.empty(images.shape, check_dtype(dtype)) if out is None else out)


def _scale_into(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = images / 255, without temporaries: a mixed uint8/float ufunc would allocate a cast buffer."""
    np.copyto(out, images)
    return np.divide(out, out.dtype.type(255), out=out)


def binarize_static(images, seed: int = STATIC_SEED) -> np.ndarray:
    """One Bernoulli(x / 255) sample of every pixel, fixed by `seed`; uint8 0 or 255, same shape.

    Shapes: images ``(N, ...)`` uint8 -> ``(N, ...)`` uint8 with values in {0, 255}.

    Notes
    -----
    A pixel is on when r < x with r uniform on {0, ..., 254}: P(on) = x / 255 exactly, 0 stays 0 and 255
    stays 255. Rows are drawn in chunks, so the temporary random bytes stay small.
    """
    images = _check_u8("images", images)
    rng = check_rng(seed=seed)
    out = np.empty_like(images)
    for start in range(0, len(images), _ROWS):
        x = images[start:start + _ROWS]
        r = rng.integers(0, 255, size=x.shape, dtype=np.uint8)
        np.multiply(r < x, np.uint8(255), out=out[start:start + _ROWS])
    return out


class Batches:
    """Shuffled float minibatches over a uint8 image set; each ``for`` loop over it is one epoch.

    Shapes: images ``(N, 28, 28)`` or ``(N, D)`` uint8 -> yields x ``(B, D)`` in `dtype`, values in [0, 1]
    (with `labels` ``(N,)``: yields ``(x, y)``, y ``(B,)`` int64). B = batch_size, except a smaller last
    batch unless drop_last.

    Parameters
    ----------
    images : numpy.ndarray of uint8
        Kept as is (not copied), except that ``binarize="static"`` makes one binarized copy up front.
    batch_size : int
    rng : numpy.random.Generator, optional
        Drives the shuffling and dynamic binarization. Default: a generator seeded with `seed`.
    dtype : {"float32", "float64"}
    binarize : {"none", "static", "dynamic"}
        See the module notes.
    shuffle : bool
        Visit the examples in a new random order every epoch (in order otherwise).
    drop_last : bool
        Skip the last, smaller batch.
    labels : numpy.ndarray, optional
        ``(N,)`` integer labels to yield beside the images.
    seed : int, optional
        Seeds the generator when `rng` is not given (None: fresh entropy).
    binarize_seed : int
        The fixed seed of ``binarize="static"`` (give a test set another seed than its train set).

    Notes
    -----
    The yielded arrays are **reused**: every full batch is the very same array object, overwritten by the
    next batch (the last, smaller batch is a view into it). Copy a batch (``x.copy()``) to keep it, and do
    not interleave two loops over one instance.
    """

    def __init__(self, images, batch_size: int = 128, rng=None, dtype="float32", binarize: str = "none",
                 shuffle: bool = True, drop_last: bool = False, labels=None, seed=None,
                 binarize_seed: int = STATIC_SEED):
        x = flatten(_check_u8("images", images))
        self.batch_size = check_int("batch_size", batch_size)
        self.binarize = check_choice("binarize", binarize, BINARIZE)
        self.dtype = check_dtype(dtype)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        if drop_last and self.batch_size > len(x):
            raise ConfigError(f"batch_size={batch_size} is larger than the {len(x)} examples, so "
                              "drop_last=True leaves no batch; lower batch_size or set drop_last=False")
        self._x = binarize_static(x, binarize_seed) if binarize == "static" else x
        self._y = None if labels is None else self._check_labels(labels, len(x))
        self._rng = check_rng(seed=seed, rng=rng)
        self._order = np.arange(len(x))
        b = min(self.batch_size, len(x))  # the buffers, allocated once:
        self._u8 = np.empty((b, x.shape[1]), np.uint8)  # gathered rows (the NumPy twin's scratch)
        self._out = np.empty((b, x.shape[1]), self.dtype)  # the yielded batch
        self._c255 = self.dtype.type(255)
        if binarize == "dynamic":  # uniform draws, and which pixels are on
            self._noise, self._on = np.empty_like(self._out), np.empty(self._out.shape, bool)
        self._y_out = None if self._y is None else np.empty(b, np.int64)

    @staticmethod
    def _check_labels(labels, n: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ConfigError(f"labels must be integers of shape ({n},) to match the images; got "
                              f"{labels.dtype} {labels.shape}")
        return labels.astype(np.int64, copy=False)  # np.take(out=) needs the dtype of its output

    def __len__(self) -> int:
        """Number of batches in one epoch."""
        n, b = len(self._x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        if self.shuffle:
            self._rng.shuffle(self._order)  # in place: no new index array per epoch
        for i in range(len(self)):
            idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self._fill(idx)
            if self._y is None:
                yield x
            else:
                y = self._y_out if len(idx) == len(self._y_out) else self._y_out[:len(idx)]
                yield x, np.take(self._y, idx, out=y, mode="clip")

    def _fill(self, idx: np.ndarray) -> np.ndarray:
        """Gather rows `idx` into the uint8 buffer, scale into the float buffer; returns it (or a view)."""
        full = len(idx) == len(self._out)
        u8, out = (self._u8, self._out) if full else (self._u8[:len(idx)], self._out[:len(idx)])
        _kernels.K.gather_unit(self._x, idx, self._c255, u8, out)   # out = x[idx] / 255, one pass
        if self.binarize == "dynamic":
            noise, on = (self._noise, self._on) if full else (self._noise[:len(idx)], self._on[:len(idx)])
            self._rng.random(out=noise, dtype=self.dtype)
            np.less(noise, out, out=on)  # u < p: on with probability p
            np.copyto(out, on)
        return out


def iterate_minibatches(images, batch_size: int, rng=None, dtype="float32", binarize: str = "none",
                        shuffle: bool = True, drop_last: bool = False, labels=None):
    """One epoch of minibatches: ``iter(Batches(...))``; see :class:`Batches` (the yielded array is reused).

    Shapes: images ``(N, 28, 28)`` or ``(N, D)`` uint8 -> yields ``(B, D)`` floats in [0, 1].
    Build a :class:`Batches` once and loop over it every epoch to reuse its buffers across epochs.
    """
    return iter(Batches(images, batch_size, rng=rng, dtype=dtype, binarize=binarize, shuffle=shuffle,
                        drop_last=drop_last, labels=labels))


def train_val_split(images, labels, val_fraction: float = 0.1, seed: int = 0):
    """Split off a stratified validation set: round(val_fraction * n_c) random examples of each class c.

    Shapes: images ``(N, ...)``, labels ``(N,)`` -> train_images ``(N - V, ...)``, train_labels
    ``(N - V,)``, val_images ``(V, ...)``, val_labels ``(V,)``; both parts keep the original order.

    Parameters
    ----------
    images, labels : numpy.ndarray
    val_fraction : float
        In (0, 1).
    seed : int
        Which examples go to validation; the same seed gives the same split.

    Returns
    -------
    train_images, train_labels, val_images, val_labels : numpy.ndarray
        Copies (fancy indexing), not views.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"labels must have shape ({len(images)},) to match images; got {labels.shape}")
    check_float("val_fraction", val_fraction, minimum=0.0, exclusive=True, maximum=1.0)
    if val_fraction >= 1.0:
        raise ConfigError(f"val_fraction={val_fraction!r} must be < 1 so that something is left to train on")
    perm = check_rng(seed=seed).permutation(len(labels))
    is_val = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]  # the examples of class c, in random order
        is_val[members[:round(val_fraction * len(members))]] = True
    train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return images[train], labels[train], images[val], labels[val]
