"""The installed package: a read-only install still imports and JIT-compiles; the console script and
python -m vae_numpy run the gradient checks; a user error exits 2 with one line."""

import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels, cli

PACKAGE = Path(vn.__file__).parent
SUMMARY = re.compile(r"^\d+ passed, 0 failed \(largest relative error \d\.\de-\d+\)$")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("VAE_NUMPY_JIT", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME",
                                                             "NUMBA_DISABLE_JIT")}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------- read-only install
def _read_only_copy(root: Path) -> Path:
    """A copy of the package where no cache folder can be created, even by root.

    Tests run as root, for whom chmod a-w blocks nothing, so "read-only" is built from paths that cannot be
    directories: every __pycache__ is a regular file (numba's in-tree locator, and Python's .pyc writer, fail
    to create their folder), and HOME is a regular file (numba's user-wide locator cannot create
    ~/.cache/numba). With NUMBA_CACHE_DIR and XDG_CACHE_HOME unset, numba has no locator left and
    njit(cache=True) raises "no locator available" at decoration time -- exactly the read-only site-packages
    case that _kernels._jit must survive.
    """
    site = root / "site"
    shutil.copytree(PACKAGE, site / "vae_numpy", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder in [site, *(p for p in site.rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder\n")
    (root / "home").write_text("not a folder either\n")
    return site


READ_ONLY_SCRIPT = textwrap.dedent("""
    import sys
    import numba
    import numpy as np
    import vae_numpy as vn
    import vae_numpy._kernels as k
    from numba.core.caching import NullCache

    assert vn.__file__.startswith(sys.argv[1]), vn.__file__        # the copy, not the editable install
    try:                                                            # the environment really is read-only:
        numba.njit(cache=True)(k._sgd_update_nb)
        raise SystemExit("numba found a writable cache folder; the test does not exercise the fallback")
    except RuntimeError as exc:
        assert "no locator available" in str(exc), exc
    assert k.K is k.NUMBA                                           # JIT on, with per-process compilation
    assert isinstance(k.NUMBA.adam_update._cache, NullCache)
    # tanh and a Gaussian decoder: the forward and backward still run jitted kernels (the fused sampler and
    # KL), but only two of them need compiling in this cache-less process (each costs ~1 s)
    m = vn.VAE(10, (5,), 2, activation="tanh", likelihood="gaussian")
    m.forward(np.random.default_rng(0).random((3, 10)))
    m.backward()
    assert all(np.isfinite(g).all() for g in m.grads.values())
    print("read-only ok")
""")


def test_read_only_install_imports_and_jits(tmp_path):
    site = _read_only_copy(tmp_path)
    env = _env(PYTHONPATH=str(site), HOME=str(tmp_path / "home"), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", READ_ONLY_SCRIPT, str(site)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("read-only ok")
    assert not list(site.rglob("*.nbi")) and not list(site.rglob("*.nbc"))   # nothing was cached


def test_jit_falls_back_when_numba_cannot_cache(monkeypatch):
    """In process: an njit(cache=True) that raises as on a read-only install gives an uncached dispatcher."""
    numba = pytest.importorskip("numba")
    real_njit = numba.njit
    calls = []

    def njit(*args, **kwargs):
        calls.append(kwargs.get("cache"))
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file '/usr/lib/f.py'")
        return real_njit(*args, **kwargs)

    def add_twice(a, out):
        for i in range(a.size):
            out[i] = a[i] + a[i]
        return out

    monkeypatch.setattr(numba, "njit", njit)
    fn = _kernels._jit(add_twice)
    assert calls == [True, False]
    np.testing.assert_array_equal(fn(np.arange(3.0), np.empty(3)), [0.0, 2.0, 4.0])
    assert hasattr(fn, "py_func") and fn.py_func is add_twice        # a real numba dispatcher


def test_jit_without_numba_returns_the_python_function(monkeypatch):
    monkeypatch.setattr(_kernels, "numba", None)

    def f(a):
        return a

    assert _kernels._jit(f) is f


# -------------------------------------------------------------------------------------- command line
def _console_script():
    here = Path(sys.executable).parent / "vae-numpy"
    return str(here) if here.exists() else shutil.which("vae-numpy")


def _check_gradcheck_output(r):
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and SUMMARY.match(lines[0]), r.stdout
    assert int(lines[0].split()[0]) >= 30   # the pieces and every model configuration


def test_console_script_gradcheck_quiet(tmp_path):
    exe = _console_script()
    if exe is None:
        pytest.skip("the vae-numpy console script is not installed")
    # the NumPy twins here (no compilation in a fresh process); the in-process run below uses the JIT kernels
    r = subprocess.run([exe, "gradcheck", "--quiet"], cwd=tmp_path, env=_env(VAE_NUMPY_JIT="0"),
                       capture_output=True, text=True, timeout=300)
    _check_gradcheck_output(r)


def _run_python_m(monkeypatch, *argv):
    """python -m vae_numpy <argv>, in process (runpy runs vae_numpy/__main__.py as the interpreter would)."""
    monkeypatch.setattr(sys, "argv", ["vae_numpy", *argv])
    monkeypatch.delitem(sys.modules, "vae_numpy.__main__", raising=False)
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("vae_numpy", run_name="__main__", alter_sys=True)
    return exc.value.code


def test_python_m_gradcheck_quiet(monkeypatch, capsys):
    with _kernels.use_jit(True):
        assert _run_python_m(monkeypatch, "gradcheck", "--quiet") == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1 and SUMMARY.match(lines[0]), out
    assert err == ""


def test_python_m_unknown_command_exits_2_with_one_line(monkeypatch, capsys):
    assert _run_python_m(monkeypatch, "frobnicate") == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "frobnicate" in lines[0] and "Traceback" not in err, err
    assert lines[0].startswith("vae-numpy: ")


def test_cli_main_in_process(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'frobnicate'" in err and "--help" in err
    assert cli.main(["gradcheck", "--seed", "x"]) == 2
    assert "'x' is not a non-negative integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and vn.__version__ in capsys.readouterr().out


# ---------------------------------------------------------------------------------- import cost
def test_import_leaves_matplotlib_and_tqdm_for_later():
    """`import vae_numpy` stays light (no matplotlib, tqdm, urllib); vn.plots and vn.explore load on first use."""
    code = textwrap.dedent("""
        import sys
        import vae_numpy as vn
        before = sorted(m for m in ("matplotlib", "tqdm", "urllib.request", "http.client", "ssl") if m in sys.modules)
        assert "plots" in dir(vn) and "explore" in vn.__all__
        from vae_numpy import plots
        assert plots is vn.plots and vn.explore.__name__ == "vae_numpy.explore"
        print(before, "matplotlib" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'plotz'"):
        vn.plotz  # noqa: B018
