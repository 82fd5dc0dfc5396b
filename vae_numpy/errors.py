"""Errors raised by vae_numpy.

Every error derives from :class:`VAENumpyError`, so ``except vn.VAENumpyError`` catches all of them.
The ones about bad input are also ``ValueError`` so that generic code keeps working. A message names the
bad value and says what is allowed or how to fix it.
"""


class VAENumpyError(Exception):
    """Base class of every error raised on purpose by vae_numpy."""


class ConfigError(VAENumpyError, ValueError):
    """A bad argument or hyperparameter: wrong shape, NaN, unknown name, out-of-range value."""


class DataError(VAENumpyError, ValueError):
    """A dataset that cannot be found, downloaded, verified or parsed."""


class DownloadFailed(DataError):
    """Every mirror failed; ``errors`` holds ``(url, reason)`` for each attempt, in order."""

    def __init__(self, name: str, errors: list[tuple[str, str]]):
        self.errors = errors
        tried = "; ".join(f"{url} ({why})" for url, why in errors)
        super().__init__(f"could not download {name}: {tried}")


class CheckpointError(VAENumpyError, ValueError):
    """A checkpoint that is unreadable, truncated, corrupt, of another format, or not ours."""


class TrainingDiverged(VAENumpyError, FloatingPointError):
    """The training loss became NaN or infinite."""


class WriteError(VAENumpyError, OSError):
    """A file that could not be written (a full disk or quota, a read-only folder); ``errno`` is kept.

    ``WriteError(errno, message, filename)``; ``str()`` is the message alone, one line naming the file and the fix.
    """

    def __str__(self):
        return self.strerror or super().__str__()
