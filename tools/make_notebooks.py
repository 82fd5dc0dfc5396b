"""Write the tutorial notebooks (tutorials/*.ipynb) from the cells below: the notebooks' one source.

    python tools/make_notebooks.py            # (re)write every notebook, outputs empty
    python tools/make_notebooks.py --check    # exit 1 when a committed notebook differs from what this writes

Edit a notebook here, not in Jupyter, then rerun; tests/test_notebooks.py runs ``--check``. Cell ids are fixed
(``<notebook>-<index>``) so that the same cells give the same bytes.

Exercise cells follow nbgrader's conventions (see vae_numpy/assignments.py and tutorials/README.md):
``solution(...)`` cells hold the code a student writes between the solution delimiters, ``tests(...)`` cells
are graded (their hidden part sits between the hidden-test delimiters), ``answer(...)`` cells are written
answers graded by hand. The notebooks themselves live in the modules ``tools/notebooks/nbNN.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
sys.path.insert(0, str(Path(__file__).resolve().parent))

NOTEBOOKS = {  # file name -> module in tools/notebooks holding CELLS
    "01_latent_variable_models.ipynb": "nb01",
    "02_autoencoder_from_scratch.ipynb": "nb02",
    "03_the_vae.ipynb": "nb03",
    "04_exploring_the_latent_space.ipynb": "nb04",
    "05_beta_vae_and_collapse.ipynb": "nb05",
    "06_making_it_fast.ipynb": "nb06",
    "07_cnn_and_rnn_encoders.ipynb": "nb07",
    "08_importance_weighted_bound.ipynb": "nb08",
}

METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "pygments_lexer": "ipython3"},
}


def build(name, cells):
    """The notebook for a list of cells from :mod:`notebooks.cells`, with fixed cell ids."""
    nb = nbformat.v4.new_notebook(metadata=METADATA)
    stem = name.removesuffix(".ipynb")[:40]
    for i, (kind, source, meta) in enumerate(cells):
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = new(source=source, metadata=meta or {})
        cell["id"] = f"{stem}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name):
    module = importlib.import_module(f"notebooks.{NOTEBOOKS[name]}")
    return nbformat.writes(build(name, module.CELLS)) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the notebooks on disk; write nothing")
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for name in args.names or NOTEBOOKS:
        text, path = render(name), TUTORIALS / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/make_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
