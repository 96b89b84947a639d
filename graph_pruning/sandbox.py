"""Run untrusted Python (LLM-written code) in a separate process: timeout, resource limits, no network.

AGP (arXiv 2506.02951) executes candidate code in-process (`exec` under a thread timeout); we never do. The child is
`python -I` (isolated: no user site, no PYTHON* variables) in a fresh temporary directory with an almost empty
environment, its own session (so a timeout kills the whole process group), and a bootstrap that, before the code
runs:

- lowers its resource limits (address space, CPU seconds, file size, open files);
- unshares its network namespace when the kernel allows it (root or user namespaces), and in any case replaces the
  socket API with one that raises, so "no network" holds even where namespaces are unavailable.

The limits are set by the bootstrap inside the child rather than by `preexec_fn`: `preexec_fn` is documented as
unsafe when the parent has threads, and LangGraph runs parallel agents in threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxResult", "run_python", "run_tests"]

logger = logging.getLogger(__name__)

_BOOTSTRAP = r"""
import resource, sys
def _limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_AS, {memory})
_limit(resource.RLIMIT_CPU, {cpu})
_limit(resource.RLIMIT_FSIZE, {fsize})
_limit(resource.RLIMIT_NOFILE, 64)
_limit(resource.RLIMIT_CORE, 0)
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).unshare(0x40000000)  # CLONE_NEWNET: an empty network namespace
except Exception:
    pass
import socket
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the prunekit sandbox")
class _NoSocket(socket.socket):  # a subclass, so `class X(socket.socket)` (ssl) still imports
    def __init__(self, *args, **kwargs):
        _no_network()
socket.socket = _NoSocket
for _name in ("create_connection", "create_server", "getaddrinfo", "socketpair", "fromfd"):
    setattr(socket, _name, _no_network)
del _limit, _name, resource
sys.argv = ["candidate.py"]
_source = open("candidate.py", encoding="utf-8").read()
exec(compile(_source, "candidate.py", "exec"), {{"__name__": "__main__"}})
"""


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run. `ok` is True when the process exited 0 before the timeout."""

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def run_python(
    code: str,
    *,
    timeout: float = 5.0,
    memory_bytes: int = 1 << 30,
    max_output_bytes: int = 1 << 16,
) -> SandboxResult:
    """Run `code` as a script in the sandbox and capture its output (each stream cut to `max_output_bytes`).

    >>> run_python("print(6 * 7)").stdout.strip()
    '42'
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prunekit-sandbox-") as workdir:
        Path(workdir, "candidate.py").write_text(code, encoding="utf-8")
        bootstrap = _BOOTSTRAP.format(memory=memory_bytes, cpu=max(1, int(timeout) + 1), fsize=1 << 22)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "PYTHONHASHSEED": "0"}
        # Output goes to files, not pipes: RLIMIT_FSIZE caps their size (a print loop cannot fill our memory), and a
        # process the code detaches from its group cannot keep us waiting for a pipe to close.
        out_path, err_path = Path(workdir, "stdout"), Path(workdir, "stderr")
        with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", bootstrap],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_file,
                stderr=err_file,
                start_new_session=True,  # own process group: a timeout kills whatever the code forked
            )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        # Also after a clean exit: children the code left running in its group go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out, err = _head(out_path, max_output_bytes), _head(err_path, max_output_bytes)
    return SandboxResult(
        ok=proc.returncode == 0 and not timed_out,
        returncode=proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        seconds=time.perf_counter() - start,
    )


def _head(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        return f.read(limit)


def run_tests(code: str, tests: list[str] | tuple[str, ...], *, timeout: float = 5.0) -> tuple[int, list[str]]:
    """Run `code` followed by each test statement (e.g. `assert f(1) == 2`) in ONE sandboxed process.

    Returns (number of passing tests, feedback lines for the failing ones). A candidate that does not even
    define its function fails every test.
    """
    if not tests:
        return 0, []
    harness = [code, "", "import sys as _sys", "_passed = 0"]
    for i, test in enumerate(tests):
        harness += [
            "try:",
            *("    " + line for line in test.splitlines()),
            "    _passed += 1",
            "except BaseException as _e:",
            f"    print('FAIL {i}:', {test.splitlines()[0]!r}, '->', type(_e).__name__, str(_e)[:200])",
        ]
    harness.append("print('PASSED', _passed)")
    result = run_python("\n".join(harness), timeout=timeout)
    passed = 0
    feedback: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("PASSED "):
            passed = int(line.split()[1])
        elif line.startswith("FAIL "):
            feedback.append(line)
    if result.timed_out:
        feedback.append(f"timed out after {timeout:g} s")
    elif not result.stdout.strip().endswith(f"PASSED {passed}") and result.stderr:
        feedback.append(result.stderr.strip().splitlines()[-1][:300])
    return passed, feedback
