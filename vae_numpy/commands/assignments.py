"""``vae-numpy assignments``: write the student versions of the tutorial notebooks, or grade submissions.

    vae-numpy assignments --source tutorials --out release/               # student versions of every notebook
    vae-numpy assignments --source tutorials --grade alice/02_*.ipynb bob/02_*.ipynb --csv grades.csv

Grading goes through every file given: one that cannot be graded (unreadable, not a notebook, no source notebook
of the same name, an invalid source) costs one line on stderr and the others are graded; the exit status is then
2 (0 when every file was graded). A summary table per student ends the output; ``--csv PATH`` also writes it
as CSV (refused over an existing file without --force; checked before grading starts; written atomically).
See vae_numpy/grading.py and tutorials/README.md.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

from ..errors import ConfigError, VAENumpyError

CSV_FIELDS = ("submission", "source", "points", "max_points", "to_grade_by_hand", "unanswered", "problems",
              "cells", "problem_details")


def add_arguments(p):
    p.add_argument("--source", default="tutorials", help="folder of the source (solution) notebooks [tutorials]")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="folder to write the student versions into")
    what.add_argument("--grade", nargs="+", metavar="NOTEBOOK",
                      help="students' notebooks to score, each against the source notebook of the same name")
    p.add_argument("--pattern", default="*.ipynb", help="which source notebooks, as a glob [*.ipynb]")
    p.add_argument("--force", action="store_true", help="replace student notebooks (or the --csv file) that exist")
    p.add_argument("--fast", action="store_true", help="grade with VAE_NUMPY_FAST=1 (less data, fewer epochs)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds allowed per cell when grading; a cell past it scores 0 [600]")
    p.add_argument("--csv", metavar="PATH", help="also write the grades as CSV, one row per submission")


def run(args) -> int:
    if args.grade:
        return _grade(args)
    import nbformat

    from .._validate import check_out_dir
    from ..assignments import nbgrader_meta, summary, write_assignments
    check_out_dir(args.out, "--out", create=False)
    written = write_assignments(args.source, args.out, pattern=args.pattern, overwrite=args.force)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        rows = summary(nb)
        points = sum(p for _, kind, p in rows if kind != "solution")
        todo = sum(kind != "tests" for _, kind, _ in rows)
        locked = sum(bool(nbgrader_meta(c).get("locked")) for c in nb.cells)
        print(f"{path}: {todo} exercise cell(s) to fill, {points:g} points, {locked} locked cell(s)")
    print(f"wrote {len(written)} student notebook(s) into {args.out}")
    return 0


def _check_csv(path, force):
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--csv {path} is a folder; give a file name such as {path / 'grades.csv'}")
    if path.exists() and not force:
        raise ConfigError(f"--csv {path} already exists; pass --force to replace it, or choose another name")
    if not path.parent.is_dir():
        raise ConfigError(f"--csv {path}: the folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--csv {path}: the folder {path.parent} is not writable; choose another place")


def _write_csv(path, reports):
    """All rows into a temporary file beside `path`, then renamed over it: never a half-written CSV."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in reports:
        writer.writerow({"submission": r.submission, "source": r.source, "points": f"{r.points:g}",
                         "max_points": f"{r.max_points:g}", "to_grade_by_hand": f"{r.by_hand:g}",
                         "unanswered": len(r.unanswered), "problems": len(r.problems),
                         "cells": "; ".join(f"{s.grade_id}={s.points:g}/{s.max_points:g} {s.status}" for s in r.scores),
                         "problem_details": " | ".join(r.problems)})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"--csv {path}: could not write it ({exc.strerror or exc}); free space or choose "
                          "another place (the grades above are complete)") from None


def _print_report(r):
    print(f"{r.submission}  (source {r.source})")
    for s in r.scores:
        pts = f"{s.points:g} / {s.max_points:g}" if s.max_points or s.kind != "answer" else "-"
        print(f"  {s.grade_id:<32} {pts:>9}  {s.status}")
    by_hand = f" ({r.by_hand:g} point(s) still to grade by hand)" if r.by_hand else ""
    print(f"  total {r.points:g} / {r.max_points:g}{by_hand}")
    for p in r.problems:
        print(f"  problem: {p}")


def _grade(args) -> int:
    from ..grading import grade
    if args.csv:
        _check_csv(args.csv, args.force)
    if not (0 < args.timeout < float("inf")):
        raise ConfigError(f"--timeout {args.timeout:g}; give the seconds allowed per cell, > 0")
    if not Path(args.source).exists():
        raise ConfigError(f"--source {args.source} does not exist; pass the folder of the source notebooks")
    reports, failed, sources = [], [], {}
    for path in args.grade:
        try:
            report = grade(path, args.source, timeout=args.timeout, fast=args.fast, sources=sources)
        except VAENumpyError as exc:
            print(f"vae-numpy: not graded: {exc}", file=sys.stderr)
            failed.append(path)
            continue
        _print_report(report)
        reports.append(report)
    if reports:
        width = max(len("student file"), *(len(r.submission) for r in reports))
        print(f"\n{'student file':<{width}}  {'points':>7}  {'max':>5}  {'by hand':>7}  {'unanswered':>10}  problems")
        for r in reports:
            print(f"{r.submission:<{width}}  {r.points:>7g}  {r.max_points:>5g}  {r.by_hand:>7g}  "
                  f"{len(r.unanswered):>10}  {len(r.problems)}")
    if args.csv:
        _write_csv(args.csv, reports)
        print(f"wrote {args.csv} ({len(reports)} row(s))")
    if failed:
        print(f"{len(failed)} of {len(args.grade)} file(s) could not be graded: {', '.join(failed)}")
        return 2
    return 0
