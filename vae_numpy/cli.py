"""The command line: ``vae-numpy <command>`` (also ``python -m vae_numpy``).

Commands: train, evaluate, sample, explore, compare, gradcheck, datasets, bench, assignments.
Each is a pair ``_add_<name>(subparsers)`` / ``_cmd_<name>(args) -> exit code``. A user error (any
:class:`VAENumpyError`, a bad flag, a missing file) prints one line on stderr and exits 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import VAENumpyError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


# ------------------------------------------------------------------------------------ gradcheck
def _add_gradcheck(sub):
    p = sub.add_parser("gradcheck", help="finite-difference checks of every layer, loss and model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="print only the summary line")


def _cmd_gradcheck(args):
    from .gradcheck import check_all
    reports = check_all(seed=args.seed, verbose=not args.quiet)
    failed = [r for r in reports if not r.passed]
    worst = max(r.max_error for r in reports)
    print(f"{len(reports) - len(failed)} passed, {len(failed)} failed (largest relative error {worst:.1e})")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------- datasets
def _add_datasets(sub):
    p = sub.add_parser("datasets", help="list the datasets, where each was found, and its size")
    p.add_argument("--data-dir", default=None, help="a folder to look in first")


def _cmd_datasets(args):
    from .datasets import format_status
    for line in format_status(args.data_dir):
        print(line)
    return 0


COMMANDS = ["gradcheck", "datasets"]


def build_parser():
    parser = _Parser(prog="vae-numpy", description="A Variational Autoencoder from scratch in NumPy.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"vae-numpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        globals()[f"_add_{name}"](sub)
    return parser


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return globals()[f"_cmd_{args.command}"](args)
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (VAENumpyError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"vae-numpy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vae-numpy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
