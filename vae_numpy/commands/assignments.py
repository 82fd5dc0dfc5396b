"""``vae-numpy assignments``: write the student versions of the tutorial notebooks, or grade submissions.

    vae-numpy assignments --source tutorials --out release/          # student versions of every notebook
    vae-numpy assignments --source tutorials --grade alice/02_*.ipynb  # score submissions with the hidden tests

See vae_numpy/assignments.py and tutorials/README.md.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--source", default="tutorials", help="folder of the source (solution) notebooks [tutorials]")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="folder to write the student versions into")
    what.add_argument("--grade", nargs="+", metavar="NOTEBOOK",
                      help="students' notebooks to score, each against the source notebook of the same name")
    p.add_argument("--pattern", default="*.ipynb", help="which source notebooks, as a glob [*.ipynb]")
    p.add_argument("--force", action="store_true", help="replace student notebooks that already exist")
    p.add_argument("--fast", action="store_true", help="grade with VAE_NUMPY_FAST=1 (less data, fewer epochs)")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell when grading [600]")


def run(args) -> int:
    if args.grade:
        return _grade(args)
    import nbformat

    from ..assignments import nbgrader_meta, summary, write_assignments
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


def _grade(args) -> int:
    from ..assignments import grade
    for path in args.grade:
        scores = grade(path, args.source, timeout=args.timeout, fast=args.fast)
        print(path)
        for s in scores:
            print(f"  {s.grade_id:<32} {s.points:4g} / {s.max_points:<4g} {s.status}")
        auto = [s for s in scores if s.status != "by hand"]
        manual = sum(s.max_points for s in scores if s.status == "by hand")
        print(f"  total {sum(s.points for s in auto):g} / {sum(s.max_points for s in auto):g} autograded"
              + (f", {manual:g} more to grade by hand" if manual else ""))
    return 0
