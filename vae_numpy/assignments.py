"""Student versions of the tutorial notebooks, with nbgrader's conventions (``vae-numpy assignments``).

The tutorial notebooks are the instructor's *source* versions: they hold the solutions and the hidden tests,
marked the way nbgrader marks them, so the same files also work with ``nbgrader generate_assignment``.

- A **solution cell** carries ``metadata.nbgrader = {"solution": true, "grade": false, "locked": false,
  "grade_id": ..., "schema_version": 3}``. In a code cell, each region between the lines ``### BEGIN SOLUTION``
  and ``### END SOLUTION`` becomes, at the indentation of the BEGIN line::

      # YOUR CODE HERE
      raise NotImplementedError()

  (a solution cell without delimiters is replaced whole). A markdown answer cell (``"solution": true,
  "grade": true``, graded by hand) becomes ``YOUR ANSWER HERE``.
- A **graded test cell** carries ``{"grade": true, "solution": false, "locked": true, "points": N, ...}``.
  What lies between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` (delimiters included) is removed;
  the visible tests stay, so students can check their work, and the grader runs the full cell.
- Every output and execution count is cleared; locked and test cells are made read-only (``editable`` and
  ``deletable`` false) and solution and answer cells undeletable (``deletable`` false), as nbgrader does.

Rules checked before anything is written (nbgrader's own, schema version 3): every nbgrader cell has a
unique, non-empty ``grade_id``; a graded cell has ``points``; a markdown cell that is a solution is also
graded and vice versa; solution regions only in solution cells, hidden tests only in graded cells; the
delimiters pair up and do not nest.

Grading is in :mod:`vae_numpy.grading` (nbgrader's ``autograde`` is the full tool): it trusts nothing of a
submission but the answer cells' sources.

nbformat is imported when needed (``pip install "vae-numpy[notebooks]"``); grading also needs nbclient and
ipykernel (installed with the ``dev`` extra).
"""

from __future__ import annotations

import copy
from pathlib import Path

from .errors import ConfigError

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = "YOUR ANSWER HERE"
SCHEMA_VERSION = 3


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise ConfigError('writing student notebooks needs nbformat: pip install "vae-numpy[notebooks]"') from None
    return nbformat


# ------------------------------------------------------------------------------------ cell metadata
def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} for an ordinary cell)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_solution(cell) -> bool:
    """A cell the student writes: code to implement, or a markdown answer."""
    return bool(nbgrader_meta(cell).get("solution", False))


def is_graded(cell) -> bool:
    """A cell that earns points: a test cell (code), or a markdown answer graded by hand."""
    return bool(nbgrader_meta(cell).get("grade", False))


def is_test(cell) -> bool:
    """An autograded test cell: graded code that is not a solution."""
    return cell["cell_type"] == "code" and is_graded(cell) and not is_solution(cell)


def grade_id(cell) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _where(index, cell) -> str:
    gid = grade_id(cell)
    return f"cell {index}" + (f" ({gid!r})" if gid else "")


def validate(nb, name="notebook") -> None:
    """Check the nbgrader metadata and delimiters of a source notebook; ConfigError naming the cell otherwise."""
    seen = {}
    for i, cell in enumerate(nb["cells"]):
        meta = nbgrader_meta(cell)
        where = f"{name}: {_where(i, cell)}"
        if meta:
            if not all(k in meta for k in ("grade", "solution", "locked")):
                raise ConfigError(f"{where}: nbgrader metadata needs 'grade', 'solution' and 'locked'; got {meta}")
            if meta["grade"] or meta["solution"] or meta["locked"]:
                gid = meta.get("grade_id", "")
                if not gid:
                    raise ConfigError(f"{where}: an nbgrader cell needs a non-empty 'grade_id'")
                if gid in seen:
                    raise ConfigError(f"{where}: grade_id {gid!r} is also used by cell {seen[gid]}; make it unique")
                seen[gid] = i
            if meta["grade"] and "points" not in meta:
                raise ConfigError(f"{where}: a graded cell needs 'points'")
            points = meta.get("points", 0)
            if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points < float("inf"):
                raise ConfigError(f"{where}: points={points!r}; give a number >= 0")
            if cell["cell_type"] == "markdown" and bool(meta["grade"]) != bool(meta["solution"]):
                raise ConfigError(f"{where}: a markdown answer must be both 'solution' and 'grade' (graded by hand)")
        solutions = _regions(_source(cell), BEGIN_SOLUTION, END_SOLUTION, where, exact=True)
        hidden = _regions(_source(cell), BEGIN_HIDDEN, END_HIDDEN, where, exact=False)
        if solutions and not is_solution(cell):
            raise ConfigError(f"{where}: a solution region in a cell that is not a solution cell; "
                              'set metadata.nbgrader.solution = true')
        if hidden and not is_test(cell):
            raise ConfigError(f"{where}: hidden tests in a cell that is not a graded test cell; "
                              "set metadata.nbgrader.grade = true (and points)")


def _regions(source, begin, end, where, exact):
    """[(first line, last line)] of the delimited regions; ConfigError for a lone or nested delimiter.

    exact: a delimiter is a line equal to it (nbgrader's solution rule; other lines that mention the words
    are refused, since some nbgrader versions would take them for delimiters); otherwise any line that
    contains the delimiter's words is one (nbgrader's hidden-test rule).
    """
    words_b, words_e = begin.lstrip("# "), end.lstrip("# ")
    regions, start = [], None
    for k, line in enumerate(source.split("\n")):
        is_b, is_e = words_b in line, words_e in line
        if exact and (is_b or is_e) and line.strip() not in (begin, end):
            raise ConfigError(f"{where}: line {k + 1} {line.strip()!r} mentions {words_b!r}/{words_e!r} but is not "
                              f"the delimiter line {begin!r} or {end!r}")
        if is_b:
            if start is not None:
                raise ConfigError(f"{where}: nested {begin!r} at line {k + 1}")
            start = k
        elif is_e:
            if start is None:
                raise ConfigError(f"{where}: {end!r} at line {k + 1} without a {begin!r}")
            regions.append((start, k))
            start = None
    if start is not None:
        raise ConfigError(f"{where}: {begin!r} at line {start + 1} has no {end!r}")
    return regions


# ------------------------------------------------------------------------------------ transformation
def _strip(source, begin, end, stub=None, exact=True):
    """The source with each delimited region replaced by `stub` lines (indented like its BEGIN line) or removed."""
    lines = source.split("\n")
    out, k = [], 0
    for a, b in _regions(source, begin, end, "source", exact):
        out += lines[k:a]
        if stub is not None:
            indent = lines[a][:len(lines[a]) - len(lines[a].lstrip())]
            out += [indent + s for s in stub]
        k = b + 1
    return "\n".join(out + lines[k:])


def student_source(cell) -> str:
    """The source a student sees for this cell (solutions stubbed, hidden tests removed)."""
    src = _source(cell)
    if is_solution(cell):
        stub = CODE_STUB if cell["cell_type"] == "code" else (TEXT_STUB,)
        if BEGIN_SOLUTION not in src:
            return "\n".join(stub)                  # no delimiters: the whole cell is the solution
        return _strip(src, BEGIN_SOLUTION, END_SOLUTION, stub)
    if is_test(cell):
        return _strip(src, BEGIN_HIDDEN, END_HIDDEN, None, exact=False).rstrip("\n")
    return src


def make_student_version(nb, name="notebook"):
    """A student copy of a source notebook: solutions stubbed, hidden tests removed, outputs cleared.

    nb: an nbformat NotebookNode (or a dict of the same shape); it is not modified. Returns the new notebook.
    Raises ConfigError if the nbgrader metadata or the delimiters are inconsistent (see :func:`validate`).
    """
    validate(nb, name)
    out = copy.deepcopy(nb)
    out.get("metadata", {}).pop("celltoolbar", None)
    for cell in out["cells"]:
        cell["source"] = student_source(cell)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        meta = nbgrader_meta(cell)
        if meta.get("locked") or is_test(cell):          # nbgrader's lock_readonly_cells / lock_grade_cells
            cell["metadata"]["editable"] = False
            cell["metadata"]["deletable"] = False
        elif is_solution(cell) or is_graded(cell):       # nbgrader's lock_solution_cells: editable, kept
            cell["metadata"]["deletable"] = False
    return out


def insert_solutions(student_nb, source_nb):
    """The student notebook with each solution cell's source put back from the source notebook (by grade_id).

    What an instructor uses to check that a student version still passes with the reference answers; the
    graded cells keep the student version's (visible) tests.
    """
    solutions = {grade_id(c): _source(c) for c in source_nb["cells"] if is_solution(c)}
    out = copy.deepcopy(student_nb)
    for cell in out["cells"]:
        if is_solution(cell):
            gid = grade_id(cell)
            if gid not in solutions:
                raise ConfigError(f"solution cell {gid!r} is not in the source notebook")
            cell["source"] = solutions[gid]
    return out


def with_instructor_tests(submission, source_nb):
    """The submission with every graded test cell replaced by the source's (hidden tests included), by grade_id.

    What nbgrader's autograder runs: a student may edit anything but the tests. ConfigError when a graded cell
    of the source is missing from the submission.
    """
    graded = {grade_id(c): _source(c) for c in source_nb["cells"] if is_test(c)}
    out = copy.deepcopy(submission)
    found = set()
    for cell in out["cells"]:
        gid = grade_id(cell)
        if gid in graded and cell["cell_type"] == "code":
            cell["source"] = graded[gid]
            found.add(gid)
    missing = sorted(set(graded) - found)
    if missing:
        raise ConfigError(f"the submission lacks the graded cell(s) {', '.join(missing)}; start again from the "
                          "student version")
    return out


def summary(nb) -> list[tuple[str, str, float]]:
    """(grade_id, kind, points) for every graded or solution cell; kind: "solution", "tests" or "answer"."""
    rows = []
    for cell in nb["cells"]:
        if is_test(cell):
            rows.append((grade_id(cell), "tests", float(nbgrader_meta(cell)["points"])))
        elif is_solution(cell):
            kind = "answer" if cell["cell_type"] == "markdown" else "solution"
            rows.append((grade_id(cell), kind, float(nbgrader_meta(cell).get("points", 0)) if is_graded(cell) else 0.0))
    return rows


# ---------------------------------------------------------------------------------------- files
def read_notebook(path):
    """A source notebook read with nbformat (version 4); ConfigError naming the file when it is not one."""
    nbformat = _nbformat()
    try:
        nb = nbformat.read(path, as_version=4)
        cells = nb["cells"]
        if not isinstance(cells, list) or not all(isinstance(c, dict) and isinstance(c.get("cell_type"), str)
                                                  and isinstance(_source(c), str) for c in cells):
            raise ValueError("its 'cells' is not a list of cells with a type and a source")
        for cell in cells:
            if not isinstance(cell.get("metadata", {}), dict) or not isinstance(nbgrader_meta(cell), dict):
                raise ValueError("a cell's metadata is not a mapping")
    except OSError as exc:
        raise ConfigError(f"source notebook {path} cannot be read ({exc.strerror or exc}); check --source") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a broken file: one message
        raise ConfigError(f"source notebook {path} is not a valid notebook ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); restore it (e.g. git checkout) or regenerate it") from None
    return nb


def write_assignments(source_dir, out_dir, pattern="*.ipynb", overwrite=False) -> list[Path]:
    """Write the student version of every notebook in `source_dir` matching `pattern` into `out_dir`.

    Every notebook is validated before any file is written. Returns the written paths. An existing file is
    only replaced with overwrite=True (ConfigError otherwise), and `out_dir` may not be `source_dir`.
    """
    nbformat = _nbformat()
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise ConfigError(f"source={str(source_dir)!r} is not a folder; pass the folder of the tutorial notebooks")
    paths = sorted(source_dir.glob(pattern))
    if not paths:
        raise ConfigError(f"no notebooks matching {pattern!r} in {source_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out={str(out_dir)!r} is a file; pass a folder for the student versions")
    if out_dir.resolve() == source_dir.resolve():
        raise ConfigError(f"out={str(out_dir)!r} is the source folder; write the student versions elsewhere")
    students = []
    for path in paths:
        nb = read_notebook(path)
        students.append((out_dir / path.name, make_student_version(nb, path.name)))
    clash = [str(p) for p, _ in students if p.exists()]
    if clash and not overwrite:
        raise ConfigError(f"{', '.join(clash)} already exist(s); pass --force (overwrite=True) to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, nb in students:
        tmp = path.with_name(path.name + ".tmp")
        nbformat.write(nb, tmp)
        tmp.replace(path)
        written.append(path)
    return written
