"""Graded exercises that cannot be passed by calling the library: the library's own versions switched off.

A graded test cell of a tutorial runs the student's function inside :func:`own_work`, naming the functions and
classes of vae_numpy that already compute the answer::

    with exercises.own_work(*exercises.DENSE_BACKWARD, *exercises.MODELS, *exercises.FINITE_DIFFERENCES):
        dx, dW, db = dense_backward(dout, (x, W))

While the block runs, each named function, every method of each named class, and each named Numba kernel
raises :class:`NotYourOwnWork` ("write this yourself: ..."), however the student reached it: through ``vn``,
through ``from vae_numpy.layers import dense_backward``, through a model built earlier or a variable holding
the kernel. A refusal that the student's code catches still fails the block when it ends. Everything is back as
it was when the block ends, also after an error. :func:`graded` wraps a function so that each call runs inside
the block (for ``vn.gradcheck.check_function``'s backward), and also looks for the named kernels in that
function's globals, default arguments and closure.

Names are resolved inside the package: ``"layers.dense_backward"`` (also ``"vn.layers.dense_backward"`` or
``"vae_numpy.layers.dense_backward"``), ``"VAE"``, ``"Adam.step"``, ``"tutorial.LinearGaussian.elbo_grad"``;
``"kernels.adam_update"`` names a kernel of :mod:`vae_numpy._kernels`, both its NumPy twin and its Numba
version. A name that does not exist is a :class:`~vae_numpy.errors.ConfigError`, so that a list that falls
behind the library is found by the tests rather than silently allowing a delegation.

How: a Python function's ``__code__`` is swapped for a refusing one (every alias is the same function object,
so every alias refuses); other callables (Numba dispatchers) are replaced, by identity, in the package's
modules, in the kernel namespaces and in the caller's globals (the notebook's namespace).
"""

from __future__ import annotations

import importlib
import sys
import types

from .errors import ConfigError

# the finite-difference helpers: a backward pass "computed" by differencing the forward is not a backward pass
FINITE_DIFFERENCES = ("gradcheck.numerical_gradient", "gradcheck.numerical_gradient_array",
                      "gradcheck.check_function", "gradcheck.check_model", "nn.check_layer")
# the models, whose forward/backward compute every gradient of a network at once
MODELS = ("VAE", "Autoencoder")
# every backward of a dense layer: the function, the layer classes, and a stack of layers
DENSE_BACKWARD = ("layers.dense_backward", "layers.Dense", "nn.Dense", "nn.Sequential")

_PACKAGE = "vae_numpy"
_KEEP = frozenset({"__repr__", "__str__", "__getattr__", "__getattribute__", "__setattr__", "__del__",
                   "__eq__", "__hash__", "__init_subclass__", "__class_getitem__", "__dir__"})


class NotYourOwnWork(AssertionError):
    """Raised when a graded exercise's answer calls the library's own version of what it must compute."""


_ACTIVE = []          # the own_work blocks now open (innermost last); their refusals are recorded there


def _refuse(name):
    """Called by every switched-off function: record the refusal and raise."""
    for block in _ACTIVE:
        block.refused.append(name)
    raise NotYourOwnWork(
        f"write this yourself: your code called {name}, the library's own version of what this exercise asks "
        "for; it is switched off while the graded test runs your function")


_CODES = {}


def _refusing_code(name, n_free):
    """A code object that calls _refuse(name), taking any arguments, with `n_free` free variables (so that it can
    replace the code of a closure)."""
    key = (name, n_free)
    if key not in _CODES:
        free = [f"_free{i}" for i in range(n_free)]
        src = ("def _outer():\n" + "".join(f"    {v} = None\n" for v in free)
               + "    def refused(*args, **kwargs):\n"
               + (f"        ({', '.join(free)},)\n" if free else "")
               + f"        __import__({_PACKAGE + '.exercises'!r}, fromlist=['_refuse'])._refuse({name!r})\n"
               + "    return refused\n")
        namespace = {}
        exec(compile(src, f"<switched off: {name}>", "exec"), namespace)  # noqa: S102  (our own source)
        _CODES[key] = namespace["_outer"]().__code__
    return _CODES[key]


def _resolve(name):
    """'layers.dense_backward' -> (qualified name, list of objects to switch off)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"own_work takes names of vae_numpy functions or classes as strings; got {name!r}")
    path = name.removeprefix("vn.").removeprefix(f"{_PACKAGE}.")
    if path.startswith("kernels."):
        kernels = importlib.import_module(f"{_PACKAGE}._kernels")
        kernel = path.removeprefix("kernels.")
        found = [getattr(ns, kernel) for ns in (kernels.NUMPY, kernels.NUMBA) if ns is not None
                 and hasattr(ns, kernel)]
        found += [f.py_func for f in found if isinstance(getattr(f, "py_func", None), types.FunctionType)]
        if not found:
            raise ConfigError(f"{name!r}: vae_numpy._kernels has no kernel {kernel!r}; "
                              f"choose from {', '.join(kernels.KERNEL_NAMES)}")
        return f"{_PACKAGE}._kernels.{kernel}", found
    parts = path.split(".")
    obj, where = importlib.import_module(_PACKAGE), _PACKAGE
    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(f"{where}.{part}")
            except ImportError:
                raise ConfigError(f"{name!r}: {where} has no {part!r}; own_work names what vae_numpy defines "
                                  "(update the exercise's list when the library changes)") from None
        where = f"{where}.{part}"
    if isinstance(obj, types.ModuleType):
        raise ConfigError(f"{name!r} is a module; name its functions or classes")
    return where, [obj]


def _targets(qualname, obj):
    """(label, function) pairs whose code is swapped, and other callables to replace by identity."""
    if isinstance(obj, types.FunctionType):
        return [(qualname, obj)], []
    if isinstance(obj, types.MethodType):
        return [(qualname, obj.__func__)], []
    if isinstance(obj, type):
        functions = []
        for cls in obj.__mro__:
            if not cls.__module__.startswith(_PACKAGE):
                continue
            for attr, value in vars(cls).items():
                fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if isinstance(fn, types.FunctionType) and attr not in _KEEP:
                    functions.append((f"{cls.__module__}.{cls.__qualname__}.{attr}", fn))
        return functions, []
    if callable(obj):
        return [], [(qualname, obj)]
    raise ConfigError(f"{qualname} is not a function, a class or a kernel; own_work cannot switch it off")


class own_work:  # noqa: N801  (used as a context manager, like contextlib's)
    """``with own_work(*names):`` the named vae_numpy functions, classes and kernels refuse to run.

    names: strings as in the module docstring (``"layers.dense_backward"``, ``"VAE"``, ``"kernels.adam_update"``).
    Raises :class:`NotYourOwnWork` from the call, and again when the block ends if the code caught it.
    """

    def __init__(self, *names, student=None, _resolved=None):
        self.names, self.student = names, student
        # a stale name fails here, before anything changes
        self._resolved = [_resolve(n) for n in names] if _resolved is None else _resolved
        self.refused = []
        self._swapped, self._replaced = [], []

    def __enter__(self):
        caller = sys._getframe(1).f_globals
        try:
            for qualname, objs in self._resolved:
                for obj in objs:
                    functions, others = _targets(qualname, obj)
                    for label, fn in functions:
                        code = fn.__code__
                        self._swapped.append((fn, code))
                        fn.__code__ = _refusing_code(label, len(code.co_freevars))
                    for label, other in others:
                        self._replace(other, label, caller)
        except BaseException:
            self._restore()
            raise
        _ACTIVE.append(self)
        return self

    def _replace(self, target, label, caller):
        stand_in = types.FunctionType(_refusing_code(label, 0), {}, label)
        namespaces = [vars(m) for n, m in list(sys.modules.items()) if n.split(".")[0] == _PACKAGE and m]
        namespaces += [vars(v) for ns in namespaces[:] for v in list(ns.values())
                       if isinstance(v, types.SimpleNamespace)]
        namespaces.append(caller)
        student = self.student if isinstance(self.student, types.FunctionType) else None
        if student is not None:
            namespaces.append(student.__globals__)
        for ns in namespaces:
            for key, value in list(ns.items()):
                if value is target:
                    self._replaced.append((ns.__setitem__, key, value))
                    ns[key] = stand_in
        if student is not None:                    # held in a default argument or a closure of the answer
            for cell in student.__closure__ or ():
                if cell.cell_contents is target:
                    self._replaced.append((lambda _, v, c=cell: setattr(c, "cell_contents", v), None, target))
                    cell.cell_contents = stand_in
            if student.__defaults__ and any(d is target for d in student.__defaults__):
                old = student.__defaults__
                self._replaced.append((lambda _, v, f=student: setattr(f, "__defaults__", v), None, old))
                student.__defaults__ = tuple(stand_in if d is target else d for d in old)
            kw = student.__kwdefaults__ or {}
            for key, value in list(kw.items()):
                if value is target:
                    self._replaced.append((kw.__setitem__, key, value))
                    kw[key] = stand_in

    def _restore(self):
        for fn, code in reversed(self._swapped):
            fn.__code__ = code
        for put, key, value in reversed(self._replaced):
            put(key, value)
        self._swapped, self._replaced = [], []

    def __exit__(self, exc_type, exc, tb):
        _ACTIVE.remove(self)
        self._restore()
        if exc_type is None and self.refused:
            raise NotYourOwnWork(f"write this yourself: your code called {self.refused[0]} (and caught the "
                                 "error); the library's own version is not an answer to this exercise")
        return False


def graded(function, *names):
    """`function` wrapped so that every call runs inside ``own_work(*names)``."""
    resolved = own_work(*names)._resolved                  # check the names, and find the objects, now

    def run(*args, **kwargs):
        with own_work(*names, student=function, _resolved=resolved):
            return function(*args, **kwargs)

    run.__name__ = getattr(function, "__name__", "graded")
    return run
