"""The cells of each tutorial notebook, one module per notebook (written out by tools/make_notebooks.py)."""
