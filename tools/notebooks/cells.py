"""Cell constructors for tools/make_notebooks.py: markdown, code, and nbgrader's exercise cells.

Each returns (cell type, source, metadata). The nbgrader metadata follows its schema version 3:

- ``solution``: code the student writes (solution regions become ``raise NotImplementedError()``);
- ``tests``: a graded, locked test cell worth `points` (hidden tests are removed in the student version);
- ``answer``: a markdown answer graded by hand, worth `points` (becomes "YOUR ANSWER HERE").
"""

from __future__ import annotations

from textwrap import dedent

SCHEMA = 3


def _text(source):
    return dedent(source).strip("\n")


def _meta(grade_id, grade, solution, locked, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def md(source):
    return ("markdown", _text(source), None)


def code(source):
    return ("code", _text(source), None)


def solution(grade_id, source):
    """A code cell the student completes."""
    return ("code", _text(source), _meta(grade_id, grade=False, solution=True, locked=False))


def tests(grade_id, points, source):
    """A graded test cell (autograded): read-only for students."""
    return ("code", _text(source), _meta(grade_id, grade=True, solution=False, locked=True, points=points))


def answer(grade_id, points, source):
    """A written answer, graded by hand."""
    return ("markdown", _text(source), _meta(grade_id, grade=True, solution=True, locked=False, points=points))


def imports(*modules, inspect=True, pyplot=True):
    """The first code cell: the imports every notebook shares, plus `modules` of vae_numpy (e.g. "explore").

    inspect / pyplot=False leave out ``import inspect`` / ``import matplotlib.pyplot as plt`` in a notebook
    that does not use them.
    """
    lines = ["import inspect", ""] if inspect else []
    lines += ["import matplotlib.pyplot as plt"] if pyplot else []
    lines += ["import numpy as np", "", "import vae_numpy as vn",
              f"from vae_numpy import {', '.join((*modules, 'tutorial'))}", "",
              'print(f"vae_numpy {vn.__version__}; fast mode (VAE_NUMPY_FAST=1): {tutorial.fast_mode()}")']
    return code("\n".join(lines))

