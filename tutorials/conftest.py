"""``pytest --nbmake tutorials``: the notebooks run in fast mode unless VAE_NUMPY_FAST is set (0: the real run)."""

import os

os.environ.setdefault("VAE_NUMPY_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
