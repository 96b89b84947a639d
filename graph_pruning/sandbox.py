"""Run untrusted Python (LLM-written code, request-derived tests) inside a bubblewrap OS sandbox, or not at all.

AGP (arXiv 2506.02951) executes candidate code in-process (`exec` under a thread timeout); we never do. A
request's doctests and a model's replies are attacker-controlled text, so every run is confined by the kernel, not
by Python: a monkeypatched `socket` or a process-group kill is no boundary (`import _socket` and `fork(); setsid()`
walk past both). Each run is one `bwrap` process tree with

- its own PID, network, IPC, UTS, mount (and, for an unprivileged caller, user) namespace: it sees only its own
  processes in `/proc`, has no network but an empty loopback, and when its init exits the kernel kills every
  process left in the namespace, so nothing it forks outlives the run;
- a filesystem of read-only system directories and the interpreter's prefix (never the repo, `$HOME` or the
  virtualenv), fresh `/proc` and `/dev`, and size-capped private tmpfs mounts for `/tmp` and its work dir, where
  the candidate file is copied in;
- a cleared environment (no API key of ours can leak) and rlimits on CPU seconds, address space, processes, file
  size and open files, set by a bootstrap inside the sandbox before the code runs (`preexec_fn` is unsafe in a
  threaded parent; LangGraph runs agents in threads);
- a wall-clock timeout enforced here: on expiry the sandbox's init is killed, which takes the whole tree with it.

RLIMIT_NPROC does not bind uid 0, so when the service runs as root the sandbox drops to a throwaway uid (one per
run, so one run's fork bomb cannot starve another). Without a usable `bwrap` every call raises
`SandboxUnavailableError`: there is no fallback to running the code any other way.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prunekit.decoding.cancel import check_cancelled
from prunekit.graph_pruning.errors import SandboxUnavailableError

__all__ = [
    "INSTALL_HINT",
    "SandboxResult",
    "require_sandbox",
    "run_python",
    "run_tests",
    "sandbox_available",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`) "
    "or turn code execution off"
)
MAX_PROCESSES = 16  # processes and threads of one run (RLIMIT_NPROC); total memory is at most this x memory_bytes
MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 4 << 20  # any file the code writes, its stdout/stderr included (RLIMIT_FSIZE)
TMPFS_BYTES = 16 << 20  # each of /tmp and the work dir
WORKDIR = "/sandbox"
_ROOT_UIDS = itertools.count()  # when we are root: run k uses uid _ROOT_UID_BASE + k % _ROOT_UID_SPAN
_ROOT_UID_BASE = 1_500_000_000  # far above ordinary and subordinate (rootless container) uid ranges
_ROOT_UID_SPAN = 1 << 20
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/alternatives")
_SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
_CANCEL_POLL_S = 0.1  # how often a running sandbox looks whether its request was cancelled
_KILL_GRACE_S = 5.0  # after killing the sandbox's init: how long bwrap may take to notice and exit

# Runs inside the sandbox as `python -I -c`: lower the limits (and, under root, drop to the run's uid) before the
# candidate's first line. Hard limits too, so the code cannot raise them back.
_BOOTSTRAP = r"""
import os, resource
def _limit(kind, value):
    hard = resource.getrlimit(kind)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))
_limit(resource.RLIMIT_CPU, {cpu})
_limit(resource.RLIMIT_AS, {memory})
_limit(resource.RLIMIT_NPROC, {nproc})
_limit(resource.RLIMIT_FSIZE, {fsize})
_limit(resource.RLIMIT_NOFILE, {nofile})
_limit(resource.RLIMIT_CORE, 0)
if {uid} >= 0:
    os.setgroups([])
    os.setresgid({uid}, {uid}, {uid})
    os.setresuid({uid}, {uid}, {uid})
del _limit, os, resource
import sys
sys.argv = ["candidate.py"]
with open("candidate.py", encoding="utf-8") as _f:
    _source = _f.read()
del _f
exec(compile(_source, "candidate.py", "exec"), {{"__name__": "__main__", "__file__": "{workdir}/candidate.py"}})
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


# ---------------------------------------------------------------------------------------------- availability
_PROBED: set[str] = set()
_PROBE_LOCK = threading.Lock()


def require_sandbox() -> str:
    """The path of a `bwrap` that can sandbox here, checked once per path with a trial run.

    Raises `SandboxUnavailableError` (with how to install it) when bwrap is missing or cannot create namespaces.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError(
            f"code execution needs the bubblewrap sandbox (`bwrap` is not on PATH): {INSTALL_HINT}"
        )
    with _PROBE_LOCK:
        if bwrap not in _PROBED:
            result = _run(bwrap, "print('sandbox-ok')", timeout=30.0, memory_bytes=1 << 30, max_output_bytes=4096)
            if result.stdout.strip() != "sandbox-ok":
                reason = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
                raise SandboxUnavailableError(
                    f"bubblewrap ({bwrap}) cannot create a sandbox here ({reason}); it needs user namespaces (or "
                    f"root), which some containers' seccomp profiles forbid: {INSTALL_HINT}"
                )
            _PROBED.add(bwrap)
            logger.info("code runs in the bubblewrap sandbox (%s; a trial run took %.2f s)", bwrap, result.seconds)
    return bwrap


def sandbox_available() -> bool:
    """True when `require_sandbox()` succeeds."""
    try:
        require_sandbox()
    except SandboxUnavailableError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- running
def run_python(
    code: str,
    *,
    timeout: float = 5.0,
    memory_bytes: int = 1 << 30,
    max_output_bytes: int = 1 << 16,
) -> SandboxResult:
    """Run `code` as a script in the sandbox and capture its output (each stream cut to `max_output_bytes`).

    Raises `SandboxUnavailableError` when there is no usable bubblewrap; the code then does not run at all.
    """
    bwrap = require_sandbox()
    return _run(bwrap, code, timeout=timeout, memory_bytes=memory_bytes, max_output_bytes=max_output_bytes)


def _run(bwrap: str, code: str, *, timeout: float, memory_bytes: int, max_output_bytes: int) -> SandboxResult:
    start = time.perf_counter()
    # Output goes to unlinked files, not pipes: RLIMIT_FSIZE caps them, and nothing the code leaves running can
    # keep us waiting for a pipe to close. The source is an unlinked file too, copied into the sandbox by bwrap.
    with _scratch() as source, _scratch() as out, _scratch() as err:
        source.write(code.encode("utf-8", "surrogatepass"))
        source.flush()
        source.seek(0)
        info_read, info_write = os.pipe()
        try:
            argv = _bwrap_argv(bwrap, source.fileno(), info_write, timeout, memory_bytes)
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={},  # bwrap is called by its full path; its init's environment is visible in the sandbox
                pass_fds=(source.fileno(), info_write),
                start_new_session=True,
            )
            os.close(info_write)
            info_write = -1
            timed_out = _wait(proc, timeout, info_read)
        finally:
            for fd in (info_read, info_write):
                if fd >= 0:
                    os.close(fd)
        stdout, stderr = _head(out, max_output_bytes), _head(err, max_output_bytes)
    return SandboxResult(
        ok=proc.returncode == 0 and not timed_out,
        returncode=proc.returncode,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        timed_out=timed_out,
        seconds=time.perf_counter() - start,
    )


@contextlib.contextmanager
def _scratch() -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile(prefix="prunekit-sandbox-") as f:
        yield f


def _wait(proc: subprocess.Popen[bytes], timeout: float, info_fd: int) -> bool:
    """Wait for the run; past `timeout`, kill it (and so every process in its PID namespace). True on timeout.

    The wait is sliced so that a service request whose client hung up (`decoding.cancel`) kills its run at once
    instead of letting it use its whole time budget."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                proc.wait(timeout=min(left, _CANCEL_POLL_S))
                return False
            except subprocess.TimeoutExpired:
                check_cancelled()
    except BaseException:  # cancelled or interrupted (KeyboardInterrupt): the sandbox must not outlive us either
        _kill(proc, info_fd)
        raise
    _kill(proc, info_fd)
    return True


def _kill(proc: subprocess.Popen[bytes], info_fd: int) -> None:
    """SIGKILL the sandbox's init (PID 1 of its namespace: the kernel then kills everything inside and bwrap exits),
    then bwrap's own process group in case it never got that far."""
    child = _sandbox_init_pid(info_fd)
    if child is not None and proc.poll() is None:  # bwrap still running: its init has not been reaped, pid is valid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # --die-with-parent then takes the init down
    proc.wait()


def _sandbox_init_pid(info_fd: int) -> int | None:
    """The host pid of the sandbox's init, from what bwrap wrote to `--info-fd` (None when it wrote nothing)."""
    os.set_blocking(info_fd, False)
    try:
        data = os.read(info_fd, 4096)
    except BlockingIOError:
        return None
    try:
        pid = json.loads(data.decode()).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 1 else None


def _head(f: IO[bytes], limit: int) -> bytes:
    f.seek(0)
    return f.read(limit)


# ---------------------------------------------------------------------------------------------- the bwrap command
def _bwrap_argv(bwrap: str, source_fd: int, info_fd: int, timeout: float, memory_bytes: int) -> list[str]:
    """The whole `bwrap ... -- python -I -c BOOTSTRAP` command line of one run."""
    as_root = os.geteuid() == 0
    uid = _ROOT_UID_BASE + next(_ROOT_UIDS) % _ROOT_UID_SPAN if as_root else -1
    bootstrap = _BOOTSTRAP.format(
        cpu=max(1, int(timeout) + 1),
        memory=memory_bytes,
        nproc=MAX_PROCESSES,
        fsize=MAX_FILE_BYTES,
        nofile=MAX_OPEN_FILES,
        uid=uid,
        workdir=WORKDIR,
    )
    env = [arg for name, value in _SANDBOX_ENV.items() for arg in ("--setenv", name, value)]
    return [
        bwrap,
        *_namespace_args(as_root),
        "--die-with-parent",
        "--new-session",
        "--info-fd", str(info_fd),
        *_filesystem_args(),
        "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
        "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", WORKDIR,
        "--perms", "0444", "--ro-bind-data", str(source_fd), f"{WORKDIR}/candidate.py",
        "--chdir", WORKDIR,
        "--hostname", "sandbox",
        "--clearenv", *env,
        "--",
        _interpreter(), "-I", "-c", bootstrap,
    ]  # fmt: skip


def _namespace_args(as_root: bool) -> list[str]:
    """Every namespace bwrap offers. An unprivileged caller gets a user namespace (and the code cannot make more).

    As root a user namespace would map the code to uid 0, which RLIMIT_NPROC exempts; instead the bootstrap keeps
    just the capability to switch to the run's own uid and drops it with that switch.
    """
    if not as_root:
        return ["--unshare-all", "--unshare-user", "--disable-userns"]
    return [
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-add", "CAP_SETUID",
        "--cap-add", "CAP_SETGID",
    ]  # fmt: skip


def _filesystem_args() -> list[str]:
    """Read-only system directories (merged-/usr symlinks kept as symlinks), ld.so's config and the interpreter's
    prefix when it lives outside them; then a fresh /proc and /dev."""
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    prefix = os.path.realpath(sys.base_prefix)
    if not any(prefix == d or prefix.startswith(d + "/") for d in _SYSTEM_DIRS):
        # bwrap would copy the modes of the host's parents (pyenv under a 0700 /root): open them for the run's uid
        parents = [str(p) for p in reversed(Path(prefix).parents) if str(p) != "/"]
        args += [arg for parent in parents for arg in ("--perms", "0755", "--dir", parent)]
        args += ["--ro-bind", prefix, prefix]
    return [*args, "--proc", "/proc", "--dev", "/dev"]


def _interpreter() -> str:
    """The base interpreter (not the virtualenv's): the sandbox sees its prefix and nothing of the venv."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix, "bin", version)
    return str(base.resolve()) if base.exists() else os.path.realpath(sys.executable)


# ---------------------------------------------------------------------------------------------- tests
def run_tests(code: str, tests: list[str] | tuple[str, ...], *, timeout: float = 5.0) -> tuple[int, list[str]]:
    """Run `code` followed by each test statement (e.g. `assert f(1) == 2`) in ONE sandboxed process.

    Returns (number of passing tests, feedback lines for the failing ones). A candidate that does not even
    define its function fails every test. Raises `SandboxUnavailableError` without a usable sandbox.
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
