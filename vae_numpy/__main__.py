"""python -m vae_numpy: the same as the vae-numpy command."""

import sys

from .cli import main

sys.exit(main())
