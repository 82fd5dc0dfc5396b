"""The command line: ``vae-numpy <command>`` (also ``python -m vae_numpy``).

Commands: train, evaluate, sample, explore, compare, gradcheck, datasets, bench, assignments.
``COMMANDS`` maps each name to the module that holds its pair ``add_arguments(parser)`` /
``run(args) -> exit code`` (small ones live here as ``_add_<name>`` / ``_cmd_<name>``). A user error (any
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
def _add_gradcheck(p):
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
def _add_datasets(p):
    p.add_argument("--data-dir", default=None, help="a folder to look in first")


def _cmd_datasets(args):
    from .datasets import format_status
    for line in format_status(args.data_dir):
        print(line)
    return 0


# name -> (help, module holding add_arguments/run, or None for the functions in this file)
COMMANDS = {
    "train": ("train a VAE (default: MNIST, else the embedded digits) and write a run folder", ".commands.train"),
    "evaluate": ("test metrics of a saved model: negative ELBO, IWAE log p(x), active units", ".commands.evaluate"),
    "sample": ("decode samples from the prior of a saved model into a PNG grid", ".commands.sample"),
    "explore": ("latent-space figures of a saved model: traversal, interpolation, map, manifold", ".commands.explore"),
    "compare": ("samples of an autoencoder beside a VAE's at one latent size (AE vs VAE)", ".commands.compare"),
    "gradcheck": ("finite-difference checks of every layer, loss and model", None),
    "datasets": ("list the datasets, where each was found, and its size", None),
    "assignments": ("write student versions of the tutorial notebooks", ".commands.assignments"),
}


def _command(name):
    import importlib
    module = COMMANDS[name][1]
    if module is None:
        return globals()[f"_add_{name}"], globals()[f"_cmd_{name}"]
    mod = importlib.import_module(module, __package__)
    return mod.add_arguments, mod.run


def build_parser():
    parser = _Parser(prog="vae-numpy", description="A Variational Autoencoder from scratch in NumPy.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"vae-numpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_, _) in COMMANDS.items():
        _command(name)[0](sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv=None):
    """Entry point of the console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return _command(args.command)[1](args)
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
