"""Run a notebook's code cells one at a time in a Jupyter kernel, each with its own time limit (for grading).

:func:`run_cells` executes every code cell of a notebook in order (nbclient, one ``python3`` kernel) and returns
one :class:`CellRun` per cell. A cell may fail in three ways without stopping the others:

- it raises: its outcome is ``"error"`` (the kernel's execute reply says so, and so does an error output);
- it runs past ``timeout`` seconds: ``"timeout"``;
- it kills the kernel (``os._exit``, a segfault, the memory killer): ``"died"``.

After a timeout or a death the kernel is replaced by a new one, which first re-runs the code cells before the
failed one (their outcomes are not recorded again; cells that timed out or killed a kernel are skipped), so that
the cells after it find the state they expect. A notebook that needs more than ``max_restarts`` new kernels gets
``"not run"`` for the cells that are left. So a cell that hangs or kills the kernel costs only its own outcome,
at the price of running the cells before it once more.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .errors import ConfigError

MAX_RESTARTS = 3


@dataclass
class CellRun:
    """The outcome of one cell: "ok", "error", "timeout", "died", "not run" or "skipped" (not code)."""

    outcome: str
    ename: str = ""
    message: str = ""


def _client(nb, cwd, timeout):
    try:
        from nbclient import NotebookClient
    except ImportError:
        raise ConfigError("grading runs notebooks with nbclient: pip install nbclient ipykernel") from None
    return NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=False,
                          shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})


def _start(client, env):
    try:
        client.km = client.create_kernel_manager()
        client.start_new_kernel(env=env, stderr=subprocess.DEVNULL)   # the kernel's own log lines
        client.start_new_kernel_client()
    except Exception as exc:  # noqa: BLE001 - no kernel spec, ipykernel missing, a port clash: one message
        _stop(client)
        raise ConfigError(f"could not start a python3 Jupyter kernel ({type(exc).__name__}: {exc}); "
                          "pip install ipykernel") from None


def _stop(client):
    try:
        if client.km is not None:
            client._cleanup_kernel()
    except Exception:  # noqa: BLE001 - the kernel is being thrown away; nothing to report
        pass
    client.km = client.kc = None


def run_cells(nb, cwd, env, timeout, max_restarts=MAX_RESTARTS) -> list[CellRun]:
    """Execute the code cells of `nb` in order; one CellRun per cell of `nb` (outputs are written into `nb`).

    cwd: the kernel's working folder. env: its environment. timeout: seconds allowed per cell (> 0).
    Raises ConfigError only when no kernel can be started at all.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    runs = [CellRun("skipped") for _ in nb.cells]
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    for i in code:
        runs[i] = CellRun("not run", message="not reached")
    replies = {}

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = (execute_reply or {}).get("content", {})

    client = _client(nb, cwd, timeout)
    client.on_cell_executed = on_executed
    poisoned = set()          # cells that timed out or killed a kernel: never run again
    restarts = 0

    def execute(i):
        replies.pop(i, None)
        try:
            client.execute_cell(nb.cells[i], i)
        except CellTimeoutError:
            return CellRun("timeout", "Timeout", f"ran past the {timeout:g} s limit for one cell")
        except DeadKernelError:
            return CellRun("died", "DeadKernel", "the kernel died while running this cell")
        reply = replies.get(i, {})
        errors = [o for o in nb.cells[i].get("outputs", []) if o.get("output_type") == "error"]
        if reply.get("status", "error") != "ok" or errors:
            ename = reply.get("ename") or (errors[0].get("ename") if errors else "") or "error"
            evalue = reply.get("evalue") or (errors[0].get("evalue") if errors else "") or ""
            return CellRun("error", str(ename), str(evalue))
        return CellRun("ok")

    _start(client, env)
    try:
        k = 0
        while k < len(code):
            i = code[k]
            run = execute(i)
            runs[i] = run
            k += 1
            if run.outcome not in ("timeout", "died"):
                continue
            poisoned.add(i)
            while True:       # a new kernel, brought up to the state the next cell expects
                _stop(client)
                if restarts == max_restarts:
                    for j in code[k:]:
                        runs[j] = CellRun("not run", "Restarts",
                                          f"not run: the kernel was replaced {max_restarts} times already")
                    return runs
                restarts += 1
                _start(client, env)
                replay = [j for j in code[:k] if j not in poisoned]
                for j in replay:
                    again = execute(j)
                    if again.outcome in ("timeout", "died"):
                        poisoned.add(j)
                        break
                else:
                    break
    finally:
        _stop(client)
    return runs
