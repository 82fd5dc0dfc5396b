"""The grader trusts nothing of a submission but its answer cells (vae_numpy/grading.py, ``assignments --grade``).

Each case builds a tiny source notebook in tmp_path, its student version, and a submission edited the way a
student (or an adversary) would. Most run the cells in this process (``run_cells`` replaced by an exec of each
code cell in one namespace) to stay fast; the batch through the command line, the time limit and a killed
kernel run in a real Jupyter kernel.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

nbformat = pytest.importorskip("nbformat")

from vae_numpy import _execute, grading  # noqa: E402
from vae_numpy.assignments import make_student_version  # noqa: E402
from vae_numpy.cli import main  # noqa: E402
from vae_numpy.errors import ConfigError  # noqa: E402


def _meta(gid, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return meta


def _source_nb():
    nb = nbformat.v4.new_notebook()
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb.cells = [
        md("# Two exercises"),
        code("base = 10"),
        code("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
             metadata={"nbgrader": _meta("add", solution=True)}),
        code("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-5, 5) == 0\n### END HIDDEN TESTS",
             metadata={"nbgrader": _meta("add-tests", grade=True, locked=True, points=2)}),
        code("def mul(a, b):\n    ### BEGIN SOLUTION\n    return a * b\n    ### END SOLUTION",
             metadata={"nbgrader": _meta("mul", solution=True)}),
        code("assert mul(2, 3) == 6\n### BEGIN HIDDEN TESTS\nassert mul(base, 0) == 0\n### END HIDDEN TESTS",
             metadata={"nbgrader": _meta("mul-tests", grade=True, locked=True, points=3)}),
        md("Why does addition commute?", metadata={"nbgrader": _meta("why", grade=True, solution=True, points=1)}),
    ]
    return nb


SOLVED = {"add": "def add(a, b):\n    return a + b", "mul": "def mul(a, b):\n    return a * b",
          "why": "Because counting does not depend on order."}
CHEAT_ADD = "def add(a, b):\n    return 3"          # passes the visible test only


@pytest.fixture
def course(tmp_path):
    """(source folder, the student version as a dict) for the notebook 'hw.ipynb'."""
    source = tmp_path / "source"
    source.mkdir()
    nb = _source_nb()
    nbformat.write(nb, source / "hw.ipynb")
    student = json.loads(nbformat.writes(make_student_version(nb)))
    return source, student


def _cell(nb, gid):
    return next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == gid)


def _answer(nb, **answers):
    for gid, text in answers.items():
        _cell(nb, gid)["source"] = text
    return nb


def _write(tmp_path, nb, who="alice"):
    path = tmp_path / who / "hw.ipynb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb), encoding="utf-8")
    return path


def _in_process(nb, cwd, env, timeout):
    """run_cells without a kernel: each code cell exec'd in order in one namespace."""
    namespace, runs = {"__name__": "__main__"}, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            runs.append(_execute.CellRun("skipped"))
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(cell.source, "<cell>", "exec"), namespace)
            runs.append(_execute.CellRun("ok"))
        except Exception as exc:  # noqa: BLE001 - the outcome is what is graded
            runs.append(_execute.CellRun("error", type(exc).__name__, str(exc)))
    return runs


@pytest.fixture
def grade(course, monkeypatch):
    monkeypatch.setattr(_execute, "run_cells", _in_process)
    source, _ = course
    return lambda path: grading.grade(path, source, timeout=10)


def _by_id(report):
    return {s.grade_id: s for s in report.scores}


# --------------------------------------------------------------------------------- the reference
def test_solutions_earn_everything_and_stubs_nothing(course, grade, tmp_path):
    _, student = course
    stub = grade(_write(tmp_path, student, "stub"))
    assert (stub.points, stub.max_points, stub.problems) == (0, 6, [])
    assert sorted(stub.unanswered) == ["add", "mul", "why"]
    assert _by_id(stub)["add-tests"].status == "failed: NotImplementedError"
    solved = grade(_write(tmp_path, _answer(student, **SOLVED)))
    assert (solved.points, solved.max_points, solved.by_hand, solved.problems) == (5, 6, 1, [])
    assert _by_id(solved)["why"].status == "by hand"


def test_hidden_tests_run(course, grade, tmp_path):
    _, student = course
    report = grade(_write(tmp_path, _answer(student, **{**SOLVED, "add": CHEAT_ADD})))
    assert _by_id(report)["add-tests"].status == "failed: AssertionError"
    assert report.points == 3


# ------------------------------------------------------------------------------ forged metadata
def test_a_forged_bonus_cell_earns_nothing(course, grade, tmp_path):
    _, student = course
    bonus = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": _meta("bonus", grade=True, points=50)})
    no_id = nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {"grade": True, "points": 20}})
    student["cells"] += [json.loads(json.dumps(bonus)), json.loads(json.dumps(no_id))]
    report = grade(_write(tmp_path, _answer(student, **SOLVED)))
    assert (report.points, report.max_points) == (5, 6)
    assert "bonus" not in _by_id(report)
    assert any("'bonus'" in p and "not in the source" in p for p in report.problems)
    assert any("without a grade_id" in p for p in report.problems)


def test_edited_points_do_not_count(course, grade, tmp_path):
    _, student = course
    _cell(student, "add-tests")["metadata"]["nbgrader"]["points"] = 100
    _cell(student, "why")["metadata"]["nbgrader"]["grade"] = False
    report = grade(_write(tmp_path, _answer(student, **SOLVED)))
    assert (report.points, report.max_points, report.by_hand) == (5, 6, 1)
    assert any("points 2 -> 100" in p for p in report.problems)
    assert any("'why'" in p and "grade True -> False" in p for p in report.problems)


def test_a_test_cell_edited_to_pass_runs_the_source_tests(course, grade, tmp_path):
    _, student = course
    _cell(student, "add-tests")["source"] = "pass"
    report = grade(_write(tmp_path, _answer(student, **{**SOLVED, "add": CHEAT_ADD})))
    assert _by_id(report)["add-tests"].points == 0
    assert any("'add-tests'" in p and "test cell was edited" in p for p in report.problems)


def test_duplicate_grade_ids_count_once(course, grade, tmp_path):
    _, student = course
    _answer(student, **SOLVED)
    student["cells"].append(json.loads(json.dumps(_cell(student, "mul-tests"))) | {"id": "copy-of-tests"})
    student["cells"].append(json.loads(json.dumps(_cell(student, "add"))) | {"id": "copy-of-add"})
    report = grade(_write(tmp_path, student))
    assert (report.points, report.max_points) == (5, 6)
    assert [s.grade_id for s in report.scores] == ["add", "add-tests", "mul", "mul-tests", "why"]
    assert sum("also used by cell" in p for p in report.problems) == 2


def test_a_retyped_cell_is_not_graded(course, grade, tmp_path):
    _, student = course
    _answer(student, **SOLVED)
    _cell(student, "add")["cell_type"] = "markdown"
    del _cell(student, "add")["outputs"], _cell(student, "add")["execution_count"]
    _cell(student, "why")["cell_type"] = "code"
    _cell(student, "why").update(outputs=[], execution_count=None)
    report = grade(_write(tmp_path, student))
    scores = _by_id(report)
    assert (scores["add"].status, scores["add-tests"].points, scores["why"].status) == ("missing", 0, "missing")
    assert (report.points, report.max_points) == (3, 6)
    assert sum("cell type changed" in p for p in report.problems) == 2


# ---------------------------------------------------------------------------- missing and extra
@pytest.mark.parametrize("gid, lost", [("add", 2), ("add-tests", 2), ("why", 0)])
def test_a_missing_cell_scores_zero_and_stays_in_the_total(course, grade, tmp_path, gid, lost):
    _, student = course
    _answer(student, **SOLVED)
    student["cells"].remove(_cell(student, gid))
    report = grade(_write(tmp_path, student))
    assert _by_id(report)[gid].status == "missing"
    assert (report.points, report.max_points) == (5 - lost, 6)
    assert report.by_hand == (0 if gid == "why" else 1)
    assert any(f"{gid!r} is missing" in p for p in report.problems)


def test_added_and_edited_plain_cells_do_not_run(course, grade, tmp_path):
    _, student = course
    _answer(student, **SOLVED)
    student["cells"][1]["source"] = "base = 0"                        # the source's cell runs instead
    student["cells"].insert(3, json.loads(json.dumps(nbformat.v4.new_code_cell("add = lambda a, b: 3"))))
    report = grade(_write(tmp_path, student))
    assert report.points == 5
    assert any("added by the student were not run" in p for p in report.problems)
    assert any("edited outside the answer cells" in p for p in report.problems)


# ------------------------------------------------------------------------------------- unanswered
def test_blank_and_untouched_answers_are_unanswered(course, grade, tmp_path):
    _, student = course
    _answer(student, add="\n   \n", why="YOUR ANSWER HERE\n")   # mul keeps its stub
    report = grade(_write(tmp_path, student))
    assert sorted(report.unanswered) == ["add", "mul", "why"]
    assert (report.points, report.by_hand) == (0, 0)
    answered = grade(_write(tmp_path, _answer(student, **SOLVED), "bob"))
    assert answered.unanswered == []


# ------------------------------------------------------------------------------ unreadable files
@pytest.mark.parametrize("content, message", [
    ("not json {", "not JSON"),
    ("[1, 2]", "no list of cells"),
    ('{"cells": [], "nbformat": 3}', "format 3"),
    (b"\xff\xfe\x00", "not UTF-8"),
])
def test_a_file_that_is_not_a_notebook_is_a_submission_error(course, grade, tmp_path, content, message):
    path = tmp_path / "hw.ipynb"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(grading.SubmissionError, match=message):
        grade(path)
    with pytest.raises(grading.SubmissionError, match="no source notebook"):
        grade(tmp_path / "other.ipynb")


def test_an_invalid_source_is_one_line(course, tmp_path, capsys):
    source, student = course
    (source / "hw.ipynb").write_text("{ broken", encoding="utf-8")
    path = _write(tmp_path, student)
    assert main(["assignments", "--source", str(source), "--grade", str(path)]) == 2
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 1 and "is not a valid notebook" in err[0] and "restore it" in err[0]
    with pytest.raises(ConfigError, match="not a valid notebook"):
        grading.read_source(source / "hw.ipynb")


def test_csv_is_refused_over_an_existing_file_before_grading(course, tmp_path, capsys):
    source, student = course
    path = _write(tmp_path, student)
    existing = tmp_path / "grades.csv"
    existing.write_text("keep me", encoding="utf-8")
    assert main(["assignments", "--source", str(source), "--grade", str(path), "--csv", str(existing)]) == 2
    err = capsys.readouterr()
    assert "--force" in err.err and err.out == "", "refused before any grading"
    assert existing.read_text(encoding="utf-8") == "keep me"
    assert main(["assignments", "--source", str(source), "--grade", str(path), "--csv", str(tmp_path)]) == 2


# --------------------------------------------------------------------------- in a real kernel
@pytest.fixture
def kernel():
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")


def test_a_corrupt_file_in_a_batch_of_three(course, tmp_path, capsys, kernel):
    source, student = course
    good = _write(tmp_path, _answer(json.loads(json.dumps(student)), **SOLVED), "alice")
    bad = _write(tmp_path, '{"cells": [', "bob")
    forged = json.loads(json.dumps(student))
    _cell(forged, "add-tests")["metadata"]["nbgrader"]["points"] = 100
    cheat = _write(tmp_path, _answer(forged, add=CHEAT_ADD), "carol")
    table = tmp_path / "grades.csv"
    args = ["assignments", "--source", str(source), "--grade", str(good), str(bad), str(cheat),
            "--timeout", "60", "--csv", str(table)]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and "bob" in err and "not JSON" in err
    assert "Traceback" not in out + err
    rows = {line.split()[0]: line.split()[1:] for line in out.split("student file")[1].strip().split("\n")[1:-1]}
    assert rows[str(good)][:2] == ["5", "6"] and rows[str(cheat)][:2] == ["0", "6"]
    assert rows[str(cheat)][-1] == "1"           # one problem: the points edited
    text = table.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("submission,source,points,max_points") and len(text) == 3
    assert not list(tmp_path.glob(".grades.csv*")), "written through a temporary file, then renamed"
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 2


def test_a_hanging_cell_and_a_dead_kernel_cost_only_their_points(course, tmp_path, kernel):
    source, student = course
    _answer(student, **SOLVED)
    _answer(student, add="import time\ndef add(a, b):\n    while True:\n        time.sleep(0.05)")
    _cell(student, "why")["source"] = "done"
    report = grading.grade(_write(tmp_path, student), source, timeout=3)
    scores = _by_id(report)
    assert (scores["add-tests"].status, scores["mul-tests"].status) == ("timeout", "passed")
    assert (report.points, report.max_points) == (3, 6)
    assert any("add-tests" in p and "3 s limit" in p for p in report.problems)

    _answer(student, add="def add(a, b):\n    import os\n    os._exit(1)")
    report = grading.grade(_write(tmp_path, student, "bob"), source, timeout=30)
    scores = _by_id(report)
    assert (scores["add-tests"].status, scores["mul-tests"].status) == ("kernel died", "passed")
    assert report.points == 3
