"""Student versions of the tutorial notebooks (``vae-numpy assignments``), and grading.

The central test: for every notebook with graded cells, the student version holds no solution and no hidden
test; run in fast mode, each graded cell fails with NotImplementedError (the stubs) while every other cell
runs; with the solutions put back and the instructor's full test cells (hidden tests included), every cell
passes. The notebooks run in this process (their code cells exec'd in order in one namespace), up to the last
graded cell: tests/test_notebooks.py runs each one whole in a kernel.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from vae_numpy import assignments  # noqa: E402
from vae_numpy.assignments import (  # noqa: E402
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    TEXT_STUB,
    insert_solutions,
    is_solution,
    is_test,
    make_student_version,
    with_instructor_tests,
    write_assignments,
)
from vae_numpy.cli import main  # noqa: E402
from vae_numpy.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))


def _read(path):
    return nbformat.read(path, as_version=4)


GRADED = [p for p in NOTEBOOKS if any(is_test(c) for c in _read(p).cells)]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The student versions of every tutorial, written by the command line."""
    out = tmp_path_factory.mktemp("release")
    assert main(["assignments", "--source", str(TUTORIALS), "--out", str(out)]) == 0
    return out


def _regions(source, begin, end):
    """(lines inside the delimited regions, lines outside them), stripped and non-empty."""
    inside, outside, depth = set(), set(), False
    for line in source.split("\n"):
        s = line.strip()
        if begin.lstrip("# ") in s:
            depth = True
        elif end.lstrip("# ") in s:
            depth = False
        elif s:
            (inside if depth else outside).add(s)
    return inside, outside


def _secret_lines(nb):
    """Lines that only the solution and hidden-test regions of a source notebook contain."""
    inside, outside = set(), set()
    for cell in nb.cells:
        for begin, end in ((BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN)):
            i, o = _regions(cell.source, begin, end)
            inside |= i
            outside |= o
    return inside - outside


def _run(nb, upto):
    """Exec the code cells before index `upto` in order, in one namespace -> [(cell, exception or None)]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    namespace = {"__name__": "__main__"}
    results = []
    for index, cell in enumerate(nb.cells[:upto]):
        if cell.cell_type != "code":
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(compile(cell.source, f"<cell {index}>", "exec"), namespace)
            results.append((cell, None))
        except Exception as exc:  # noqa: BLE001 - every outcome is checked by the caller
            results.append((cell, exc))
    plt.close("all")
    return results


# ------------------------------------------------------------------------------ the tutorials
def test_every_notebook_gets_a_student_version(released):
    assert sorted(p.name for p in released.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert len(GRADED) >= 3, "notebooks 02 and 03 (and others) carry graded exercises"
    graded_ids = {assignments.grade_id(c) for p in GRADED for c in _read(p).cells if is_test(c)}
    for exercise in ("nb02-dense-backward-tests", "nb03-reparam-backward-tests", "nb03-kl-tests", "nb06-adam-tests"):
        assert exercise in graded_ids


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_version_holds_no_solution(path, released):
    source, student = _read(path), _read(released / path.name)
    text = (released / path.name).read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    lines_of_student = {line.strip() for cell in student.cells for line in cell.source.split("\n")}
    leaked = _secret_lines(source) & lines_of_student
    assert not leaked, f"solution lines in the student version: {sorted(leaked)[:5]}"
    assert [c.id for c in student.cells] == [c.id for c in source.cells]
    for src, stu in zip(source.cells, student.cells, strict=True):
        assert stu.metadata.get("nbgrader") == src.metadata.get("nbgrader")
        if stu.cell_type == "code":
            assert stu.outputs == [] and stu.execution_count is None
        if is_solution(src) and src.cell_type == "markdown":
            assert stu.source == TEXT_STUB
        elif is_solution(src):
            assert "raise NotImplementedError()" in stu.source
            assert stu.metadata["deletable"] is False
        elif is_test(src):
            visible = src.source.split(BEGIN_HIDDEN)[0].rstrip("\n")
            assert stu.source == visible
            assert stu.metadata["editable"] is False and stu.metadata["deletable"] is False
        else:
            assert stu.source == src.source


@pytest.mark.parametrize("path", GRADED, ids=lambda p: p.stem)
def test_graded_cells_fail_with_the_stubs_and_pass_with_the_solutions(path, released, monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_FAST", "1")
    source, student = _read(path), _read(released / path.name)
    upto = max(i for i, c in enumerate(source.cells) if is_test(c)) + 1

    stubbed = _run(student, upto)
    graded = [(c, exc) for c, exc in stubbed if is_test(c)]
    assert graded
    for cell, exc in graded:
        assert isinstance(exc, NotImplementedError), f"{assignments.grade_id(cell)}: {exc!r}"
    for cell, exc in stubbed:
        if not is_test(cell):
            assert exc is None, f"a cell that is not graded fails in the student version: {exc!r}\n{cell.source}"

    restored = with_instructor_tests(insert_solutions(student, source), source)
    assert any(BEGIN_HIDDEN in c.source for c in restored.cells), "the grader runs the hidden tests too"
    for cell, exc in _run(restored, upto):
        assert exc is None, f"{assignments.grade_id(cell) or 'a cell'} fails with the solutions: {exc!r}"


def test_the_command_refuses_to_overwrite_without_force(released, capsys):
    args = ["assignments", "--source", str(TUTORIALS), "--out", str(released)]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main(["assignments", "--source", str(TUTORIALS), "--out", str(TUTORIALS)]) == 2


# ------------------------------------------------------------------------- the transformation
def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, meta in cells:
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(source=source, metadata={"nbgrader": meta} if meta else {}))
    return nb


def _meta(gid, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return meta


SOLUTION = _meta("add", solution=True)
TESTS = _meta("add-tests", grade=True, locked=True, points=2)
ANSWER = _meta("why", grade=True, solution=True, points=1)
SOURCE = _nb(
    ("markdown", "# Adding", None),
    ("code", "def add(a, b):\n    \"\"\"a + b\"\"\"\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n",
     SOLUTION),
    ("code", "assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n### END HIDDEN TESTS", TESTS),
    ("code", "x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", _meta("whole", solution=True)),
    ("code", "y = 3", _meta("plain", solution=True)),
    ("markdown", "Because addition commutes.", ANSWER),
    ("markdown", "Answer:\n### BEGIN SOLUTION\nIt is 3.\n### END SOLUTION", _meta("what", True, True, points=1)),
)


def test_make_student_version_stubs_solutions_at_their_indentation():
    before = copy.deepcopy(SOURCE)
    student = make_student_version(SOURCE)
    assert SOURCE == before, "the source notebook is not modified"
    cells = student.cells
    assert cells[1].source == ('def add(a, b):\n    """a + b"""\n    # YOUR CODE HERE\n'
                               '    raise NotImplementedError()\n')
    assert cells[2].source == "assert add(1, 2) == 3"
    assert cells[3].source == "x = 1\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert cells[4].source == "# YOUR CODE HERE\nraise NotImplementedError()"   # no delimiters: the whole cell
    assert cells[5].source == TEXT_STUB
    assert cells[6].source == "Answer:\n" + TEXT_STUB                             # only the region, as nbgrader
    assert cells[0].source == "# Adding"
    assert cells[2].metadata["editable"] is False


def test_solutions_go_back_by_grade_id():
    student = make_student_version(SOURCE)
    restored = with_instructor_tests(insert_solutions(student, SOURCE), SOURCE)
    assert [c.source for c in restored.cells] == [c.source for c in SOURCE.cells]
    namespace = {}
    exec(restored.cells[1].source + "\n" + restored.cells[2].source, namespace)
    lacking = copy.deepcopy(student)
    del lacking.cells[2]
    with pytest.raises(ConfigError, match="add-tests"):
        with_instructor_tests(lacking, SOURCE)


@pytest.mark.parametrize("cells, message", [
    ([("code", "pass", {"grade": False, "solution": True, "locked": False})], "grade_id"),
    ([("code", "a = 1", SOLUTION), ("code", "b = 2", _meta("add", solution=True))], "also used"),
    ([("code", "assert True", _meta("t", grade=True, locked=True))], "points"),
    ([("markdown", "text", _meta("m", solution=True))], "markdown"),
    ([("code", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION", None)], "not a solution cell"),
    ([("code", "### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS", SOLUTION)], "not a graded test"),
    ([("code", "### BEGIN SOLUTION\nx = 1", SOLUTION)], "has no"),
    ([("code", "x = 1\n### END SOLUTION", SOLUTION)], "without"),
    ([("code", "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", SOLUTION)], "nested"),
    ([("code", "x = 1  # BEGIN SOLUTION", SOLUTION)], "delimiter line"),
])
def test_inconsistent_sources_are_refused(cells, message):
    with pytest.raises(ConfigError, match=message):
        make_student_version(_nb(*cells), "bad.ipynb")


def test_write_assignments_without_nbformat_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nbformat", None)
    with pytest.raises(ConfigError, match=r'pip install "vae-numpy\[notebooks\]"'):
        write_assignments(TUTORIALS, tmp_path / "out")


def test_write_assignments_checks_every_notebook_before_writing(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(SOURCE, source / "a.ipynb")
    nbformat.write(_nb(("code", "### BEGIN SOLUTION\nx = 1", SOLUTION)), source / "b.ipynb")
    with pytest.raises(ConfigError, match="b.ipynb"):
        write_assignments(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no notebooks"):
        write_assignments(empty, tmp_path / "x")


# ------------------------------------------------------------------------------------- locking
def test_student_cells_are_locked_as_nbgrader_locks_them():
    """Solution and answer cells: deletable false; test and locked cells: editable and deletable false."""
    student = make_student_version(SOURCE)
    for src, stu in zip(SOURCE.cells, student.cells, strict=True):
        if is_test(src):
            assert (stu.metadata["editable"], stu.metadata["deletable"]) == (False, False)
        elif is_solution(src):
            assert stu.metadata["deletable"] is False and stu.metadata.get("editable", True) is True
        else:
            assert "deletable" not in stu.metadata and "editable" not in stu.metadata


def test_out_naming_a_file_or_a_broken_source_is_one_line(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(SOURCE, source / "a.ipynb")
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    assert main(["assignments", "--source", str(source), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    (source / "b.ipynb").write_text('{"cells": 3}', encoding="utf-8")
    assert main(["assignments", "--source", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "b.ipynb" in err and "not a valid notebook" in err
    assert not (tmp_path / "out").exists()
