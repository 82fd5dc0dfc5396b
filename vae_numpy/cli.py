"""The command line: ``vae-numpy <command>`` (also ``python -m vae_numpy``).

Commands: train, evaluate, sample, explore, compare, gradcheck, datasets, bench, assignments.
``COMMANDS`` maps each name to the module that holds its pair ``add_arguments(parser)`` /
``run(args) -> exit code`` (small ones live here as ``_add_<name>`` / ``_cmd_<name>``). A user error (any
:class:`VAENumpyError`, a bad flag, an OSError such as a missing file or a full disk, not enough memory) prints
one line on stderr and exits 2; an unexpected exception is a bug: one line, exit 1, the traceback with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import VAENumpyError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


# ------------------------------------------------------------------------------------ gradcheck
def _add_gradcheck(p):
    from .commands import nonnegative_int
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the random test inputs, default 0")
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
    p.add_argument("--data-dir", default=None, help="the folder to look in (only there: it is used, or it is an error)")


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
    "assignments": ("write student versions of the tutorial notebooks, or grade submissions", ".commands.assignments"),
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
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also VAE_NUMPY_DEBUG=1; any position)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_, _) in COMMANDS.items():
        _command(name)[0](sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv=None):
    """Entry point of the console script; returns the exit code.

    Exit 2 with one line for a user error (a bad flag, any VAENumpyError, an OSError such as a missing or
    read-only file, not enough memory); exit 1 with one line for an unexpected exception, which is a bug:
    ``--debug`` (anywhere on the line) or VAE_NUMPY_DEBUG=1 prints its traceback too. Ctrl-C exits 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VAE_NUMPY_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        return _command(args.command)[1](args)
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vae-numpy: interrupted", file=sys.stderr)
        return 130
    except (VAENumpyError, OSError) as exc:
        _traceback(debug)
        print(f"vae-numpy: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        _traceback(debug)
        print("vae-numpy: error: not enough memory; choose smaller sizes (--hidden, --latent-dim, --batch-size, "
              "--k, -n)", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else is a bug: one line, and the traceback on request
        _traceback(debug)
        print(f"vae-numpy: internal error, a bug in vae-numpy: {type(exc).__name__}: {_one_line(exc)} (rerun "
              "with --debug or VAE_NUMPY_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(exc) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, VAENumpyError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _traceback(debug):
    if debug:
        import traceback
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
