"""Grading submissions against the instructor's source notebook (``vae-numpy assignments --grade``).

Nothing in a submission decides an outcome but the code and text the student wrote in the answer cells. From
the instructor's *source* notebook come: which cells are graded, their ``grade_id``, their points, the test
cells' code (hidden tests included) and every other cell. The notebook that runs is the source notebook with
each answer (solution) cell's source taken from the submission's cell of the same ``grade_id`` and cell type;
nothing else of the submission runs. The submission's metadata is read only to find those cells and to report
what differs (:func:`read_submission`, :func:`match`):

- a cell whose ``grade_id`` the source does not have (a forged "bonus" cell), or nbgrader metadata without one;
- graded metadata changed (``points``, ``grade``, ``solution``, ``locked``): the source's is used;
- a test cell or a locked cell whose source was edited: the source's runs;
- a ``grade_id`` used by two cells (the first of the right type is used), a cell whose type was changed (not used);
- a missing answer cell (its stub runs, so its tests fail), test cell or written answer: 0 points for it,
  still counted in the total, which is always the source's total;
- cells the student added or edited outside the answer cells (matched by cell id): not run.

Each is one line in the report's ``problems``. An answer left blank or as the student version's stub is
``"unanswered"``. Scoring: a test cell (or a code cell that is both solution and graded) earns its points if it
ran without an error, else 0; a written answer is left to grade by hand (``"by hand"``). The cells run one at a
time with a time limit each (:mod:`vae_numpy._execute`): a cell that hangs or kills the kernel costs its own
points only.

Code in the answer cells runs in the same kernel as the tests, as with nbgrader: a student determined to tamper
with the kernel itself can; the guarantee here is that no metadata or test of the submission counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .assignments import (
    TEXT_STUB,
    _source,
    grade_id,
    is_graded,
    is_solution,
    is_test,
    nbgrader_meta,
    read_notebook,
    student_source,
    validate,
)
from .errors import ConfigError, VAENumpyError

_COMPARED = ("grade", "solution", "locked", "points")


class SubmissionError(VAENumpyError, ValueError):
    """A submission that cannot be graded at all: unreadable, not JSON, not a notebook, no source to match."""


@dataclass
class Score:
    """One graded or answer cell of the source: its grade_id, kind, points earned out of max_points, status.

    kind: "tests", "autograded answer", "written" (by hand) or "answer" (a code answer worth no points itself).
    status: "passed", "failed: <exception>", "timeout", "kernel died", "not run: ...", "by hand", "answered",
    "unanswered" or "missing".
    """

    grade_id: str
    kind: str
    points: float
    max_points: float
    status: str


@dataclass
class Report:
    """The grade of one submission: per-cell scores, the problems found, and the totals from the source."""

    submission: str
    source: str
    scores: list[Score] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(s.points for s in self.scores)

    @property
    def max_points(self) -> float:
        return sum(s.max_points for s in self.scores)

    @property
    def by_hand(self) -> float:
        return sum(s.max_points for s in self.scores if s.status == "by hand")

    @property
    def unanswered(self) -> list[str]:
        return [s.grade_id for s in self.scores if s.status == "unanswered"]


# ------------------------------------------------------------------------------------------ reading
def read_source(path):
    """The instructor's notebook at `path`, read and validated; ConfigError naming the file otherwise."""
    path = Path(path)
    nb = read_notebook(path)
    validate(nb, str(path))
    return nb


def read_submission(path) -> list[dict]:
    """The cells of a student's notebook as plain dicts; SubmissionError when it is not a readable notebook.

    Only what matching needs is kept, checked by type: cell_type, source (text), id, and the nbgrader metadata
    (a dict, or {}). A cell of another shape is dropped and reported by :func:`match` as "unreadable".
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot be read ({exc.strerror or exc}); ask for the file again") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not a notebook (not UTF-8 text); ask for the .ipynb file again") from None
    try:
        nb = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{path}: not a notebook (not JSON: {getattr(exc, 'msg', exc)}); "
                              "ask for the .ipynb file again") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path}: not a notebook (no list of cells); ask for the .ipynb file again")
    if nb.get("nbformat") != 4:
        raise SubmissionError(f"{path}: notebook format {nb.get('nbformat')!r}, not 4; open and save it in "
                              "Jupyter, or ask for the file again")
    cells = []
    for index, cell in enumerate(nb["cells"]):
        ok = isinstance(cell, dict) and cell.get("cell_type") in ("code", "markdown", "raw")
        src = cell.get("source", "") if ok else None
        if isinstance(src, list) and all(isinstance(s, str) for s in src):
            src = "".join(src)
        meta = cell.get("metadata", {}) if ok else {}
        nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        cells.append({"index": index, "cell_type": cell.get("cell_type") if ok else None,
                      "source": src if isinstance(src, str) else None,
                      "id": cell.get("id") if ok and isinstance(cell.get("id"), str) else None,
                      "nbgrader": nbg if isinstance(nbg, dict) else {"?": nbg}})
    return cells


# ------------------------------------------------------------------------------------------ matching
def _blank(text, stub) -> bool:
    text = "\n".join(line.rstrip() for line in text.strip().split("\n"))
    stub = "\n".join(line.rstrip() for line in stub.strip().split("\n"))
    return not text or text == stub or text == TEXT_STUB


def match(source_nb, cells):
    """Pair the source's nbgrader cells with the submission's, by grade_id -> (answers, found, problems).

    answers: {grade_id: the student's source} for the answer cells found with the right type. found: the
    grade_ids of the source's cells present in the submission with the right type. problems: one line each.
    """
    problems = []
    wanted = {grade_id(c): c for c in source_nb["cells"] if grade_id(c) and nbgrader_meta(c)
              and any(nbgrader_meta(c).get(k) for k in ("grade", "solution", "locked"))}
    ids = {c.get("id") for c in source_nb["cells"] if c.get("id")}
    graded_ids = {c.get("id"): grade_id(c) for c in wanted.values() if c.get("id")}
    plain = {c.get("id"): _source(c) for c in source_nb["cells"] if c.get("id") and not nbgrader_meta(c)}
    seen, answers, found = {}, {}, set()
    added, edited = [], []
    for cell in cells:
        where = f"cell {cell['index']}"
        if cell["cell_type"] is None or cell["source"] is None:
            problems.append(f"{where}: unreadable (no cell type or source); ignored")
            continue
        meta = cell["nbgrader"]
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if not meta:
            if cell["id"] in graded_ids:
                problems.append(f"{where}: the nbgrader metadata of {graded_ids[cell['id']]!r} was removed; "
                                "not graded")
            elif cell["id"] and cell["id"] not in ids:
                added.append(cell["index"])
            elif cell["id"] in plain and cell["source"].strip() != plain[cell["id"]].strip():
                edited.append(cell["index"])
            continue
        if not isinstance(gid, str) or not gid:
            problems.append(f"{where}: nbgrader metadata without a grade_id; ignored")
            continue
        where = f"cell {cell['index']} ({gid!r})"
        if gid not in wanted:
            problems.append(f"{where}: grade_id not in the source notebook (an added cell); ignored, worth nothing")
            continue
        src = wanted[gid]
        if gid in seen:
            problems.append(f"{where}: grade_id {gid!r} also used by cell {seen[gid]}; only one counts")
            continue
        if cell["cell_type"] != src["cell_type"]:
            problems.append(f"{where}: cell type changed from {src['cell_type']} to {cell['cell_type']}; "
                            "not graded (the answer counts as missing)")
            continue
        seen[gid] = cell["index"]
        found.add(gid)
        source_meta = nbgrader_meta(src)
        changed = [f"{k} {source_meta.get(k)!r} -> {meta.get(k)!r}" for k in _COMPARED
                   if k in meta or k in source_meta if meta.get(k) != source_meta.get(k)]
        if changed:
            problems.append(f"{where}: nbgrader metadata changed ({', '.join(changed)}); the source's is used")
        if is_solution(src):
            answers[gid] = cell["source"]
        elif cell["source"].strip() != student_source(src).strip():
            what = "test cell" if is_test(src) else "locked cell"
            problems.append(f"{where}: the {what} was edited; the source's version ran")
    for gid, src in wanted.items():
        if gid not in found and not is_solution(src) and not is_graded(src):
            problems.append(f"locked cell {gid!r} is missing; the source's version ran")
    if added:
        problems.append(f"cell(s) {', '.join(map(str, added))} added by the student were not run "
                        "(only the answer cells' code is graded)")
    if edited:
        problems.append(f"cell(s) {', '.join(map(str, edited))} edited outside the answer cells; "
                        "the source's version ran")
    return answers, found, problems


def plan(source_nb, cells):
    """The notebook to run (the source with the student's answers), the rows to score, and the problems.

    rows: [(cell index in the notebook to run, Score template)] for every answer and graded cell.
    """
    import copy
    answers, found, problems = match(source_nb, cells)
    nb = copy.deepcopy(source_nb)
    rows = []
    for index, cell in enumerate(nb["cells"]):
        gid, meta = grade_id(cell), nbgrader_meta(cell)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if not (is_solution(cell) or is_graded(cell)):
            continue
        points = float(meta.get("points", 0)) if is_graded(cell) else 0.0
        kind = ("tests" if is_test(cell) else "written" if cell["cell_type"] != "code"
                else "autograded answer" if is_graded(cell) else "answer")
        status = None
        if gid not in found:
            status = "missing"
            problems.append(f"{'an answer' if is_solution(cell) else 'a test'} cell {gid!r} is missing from the "
                            f"submission: 0 of {points:g} point(s)" + (" (its stub ran in its place)"
                                                                      if cell["cell_type"] == "code" and
                                                                      is_solution(cell) else ""))
        if is_solution(cell):
            stub = student_source(cell)
            text = answers.get(gid, stub)
            cell["source"] = text
            if status is None and _blank(text, stub):
                status = "unanswered"
        rows.append((index, Score(gid, kind, 0.0, points, status or "")))
    return nb, rows, problems


# ------------------------------------------------------------------------------------------ grading
def find_source(submission_path, source) -> Path:
    """The source notebook for a submission: `source` itself if a file, else the file of the same name in it."""
    submission_path, source = Path(submission_path), Path(source)
    path = source / submission_path.name if source.is_dir() else source
    if not path.is_file():
        raise SubmissionError(f"{submission_path}: no source notebook {path} of the same name; rename the file "
                              "as the assignment's notebook, or pass --source")
    return path


def grade(submission_path, source, timeout=600, fast=False, sources=None) -> Report:
    """Grade one submission against the source notebook; see the module's docstring.

    submission_path: the student's .ipynb. source: the source notebook, or the folder holding a notebook of the
    same file name. timeout: seconds allowed per cell. fast=True runs it with VAE_NUMPY_FAST=1. sources: an
    optional {path: notebook} cache for batches. Raises SubmissionError (this file cannot be graded) or
    ConfigError (the source is invalid, or no kernel can be started).
    """
    from ._execute import run_cells
    if isinstance(timeout, bool) or not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise ConfigError(f"timeout={timeout!r}; give the seconds allowed per cell, > 0")
    submission_path = Path(submission_path)
    source_path = find_source(submission_path, source)
    cells = read_submission(submission_path)
    sources = {} if sources is None else sources
    if source_path not in sources:
        sources[source_path] = read_source(source_path)
    nb, rows, problems = plan(sources[source_path], cells)
    report = Report(str(submission_path), str(source_path), problems=problems)
    env = {**os.environ, "VAE_NUMPY_FAST": "1"} if fast else dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    runs = run_cells(nb, submission_path.resolve().parent, env, timeout)
    for index, score in rows:
        if score.kind in ("tests", "autograded answer") and score.status not in ("missing", "unanswered"):
            run = runs[index]
            outcome = {"ok": "passed", "error": f"failed: {run.ename}", "timeout": "timeout",
                       "died": "kernel died"}.get(run.outcome, f"not run: {run.message}")
            score.status = outcome
            score.points = score.max_points if run.outcome == "ok" else 0.0
            if run.outcome in ("timeout", "died", "not run"):
                report.problems.append(f"{score.grade_id}: {run.message}; 0 point(s)")
        elif score.kind == "written" and not score.status:
            score.status = "by hand"
        elif score.kind == "answer" and not score.status:
            score.status = "answered"
        report.scores.append(score)
    return report
