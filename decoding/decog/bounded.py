"""Compiling a request's format: refused early when too large, built under a hard deadline, cached.

Why: interegular builds a regex's whole automaton before any state cap can be checked, and a Python thread cannot
be stopped from outside, so one format bomb held a service worker at 100 % CPU for minutes and SIGTERM could not
end the server. Three layers keep every format's cost bounded:

1. `parse_format` checks the spec against static limits (`limits.py`), linear in its length, building nothing.
2. The costly step, format -> character automaton (interegular), runs in a child process with its address space
   capped (RLIMIT_AS); the parent waits on a pipe and kills the child at the deadline (`CompileBudget`), which
   becomes a `FormatCompileTimeoutError` (HTTP 400). Children come from a forkserver, never from fork() of the
   threaded server (a lock another thread held at fork time would stay locked in the child). The forkserver
   preloads this module, so a compile costs ~40 ms over the work itself (the first one also starts the server,
   ~1 s, outside the deadline).
3. The character automaton comes back pickled (3 kB for a 4-key JSON object, 27 kB at 250 states); the token DFA
   is built here from it. With at most 256 token states that step is bounded (under 1 s over SmolLM2's 49k
   tokens), and shipping its (S, V) table back would cost more than building it.

Caches, since clients repeat their formats: the token DFA by (format, vocabulary, state cap) in `token_dfa`'s LRU;
the verdict on a refused spec, a deadline overrun included, in a bounded LRU here (a client repeating a bomb costs a
dict lookup); and concurrent compiles of one format share one child.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from prunekit.decoding.decog.automaton import CharAutomaton
from prunekit.decoding.decog.errors import FormatCompileTimeoutError, FormatSpecError, FormatTooLargeError
from prunekit.decoding.decog.formats import Format, check_format, compile_format, parse_format
from prunekit.decoding.decog.token_dfa import DEFAULT_MAX_STATES, TokenDFA, compile_token_dfa
from prunekit.decoding.decog.vocab import TokenVocabulary
from prunekit.decoding.errors import ServiceBusyError

__all__ = ["CompileBudget", "compile_char_automaton_bounded", "compile_token_dfa_bounded"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0  # normal formats compile in 5-50 ms; the slowest that pass `limits.py` take under 1 s
DEFAULT_MEMORY_MB = 1024  # address space a compile may add to the child's (interegular's FSMs are dicts of dicts)
STARTUP_TIMEOUT_S = 60.0  # a child that is not even running after this is a broken host, not a slow format
MAX_RESULT_BYTES = 64 << 20  # a pickled char automaton is kB; this only stops a pathological one
_REFUSALS_SIZE = 256
# The forkserver imports these once; "__main__" too, or every child would re-run the main script's imports
# (multiprocessing's rule: the main module must be safe to import, its work behind `if __name__ == "__main__"`).
_PRELOAD = ["__main__", "interegular", "prunekit.decoding.decog.bounded"]

T = TypeVar("T")


@dataclass(frozen=True)
class CompileBudget:
    """How long and how much memory one format's compilation may take.

    `from_env` reads `PRUNEKIT_FORMAT_COMPILE_TIMEOUT_S` and `PRUNEKIT_FORMAT_COMPILE_MEMORY_MB`.
    """

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB

    @classmethod
    def from_env(cls) -> CompileBudget:
        timeout = os.environ.get("PRUNEKIT_FORMAT_COMPILE_TIMEOUT_S")
        memory = os.environ.get("PRUNEKIT_FORMAT_COMPILE_MEMORY_MB")
        return cls(float(timeout) if timeout else DEFAULT_TIMEOUT_S, int(memory) if memory else DEFAULT_MEMORY_MB)


# --------------------------------------------------------------------------- the service's entry point
def compile_token_dfa_bounded(
    spec: str | Format,
    vocab: TokenVocabulary,
    *,
    budget: CompileBudget | None = None,
    max_states: int = DEFAULT_MAX_STATES,
) -> TokenDFA:
    """`compile_token_dfa` for untrusted specs: static limits, the char automaton in a deadline-bound child, caches.

    Raises a `FormatSpecError` (HTTP 400) for a bad or too large format, `FormatCompileTimeoutError` past the
    deadline; a refusal is remembered, so a repeated bomb is refused at once.
    """
    budget = budget or CompileBudget.from_env()
    text = spec if isinstance(spec, str) else spec.key
    # a digest, not the spec: a refused spec may be a megabyte, and 256 of them stay remembered
    verdict_key = (
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(),
        vocab.fingerprint,
        max_states,
        budget,
    )
    _raise_if_refused(verdict_key)
    try:
        fmt = parse_format(spec)  # the static limits of limits.py
        if not isinstance(spec, str):
            check_format(fmt)  # a Format built in code skipped the parser's check
        return _single_flight(
            (fmt.key, vocab.fingerprint, max_states, budget),
            lambda: compile_token_dfa(
                fmt,
                vocab,
                max_states=max_states,
                compile_chars=lambda f: compile_char_automaton_bounded(
                    f, budget, max_char_states=4 * max_states, name=spec if isinstance(spec, str) else None
                ),
            ),
        )
    except FormatSpecError as e:
        _remember_refusal(verdict_key, e)
        raise


# --------------------------------------------------------------------------- the child process
def compile_char_automaton_bounded(
    fmt: Format,
    budget: CompileBudget | None = None,
    *,
    max_char_states: int = 4 * DEFAULT_MAX_STATES,
    name: str | None = None,
) -> CharAutomaton:
    """`compile_format(fmt)` in a child process killed at `budget.timeout_s`, with `budget.memory_mb` to spend.

    `max_char_states`: a larger automaton is refused in the child (with a byte-level vocabulary every character
    state is a token state, so past the token DFA's cap it cannot fit; 4x leaves room for other vocabularies).
    `name`: the spec as the client wrote it, for messages (default: the format's key).
    """
    budget = budget or CompileBudget.from_env()
    shown = _show(name or fmt.key)
    if not _SLOTS.acquire(timeout=budget.timeout_s):
        raise ServiceBusyError(
            f"the format {shown} could not start compiling within {budget.timeout_s:g} s: the server is "
            "busy compiling other formats; retry shortly"
        )
    try:
        return _compile_in_child(fmt, budget, max_char_states, shown)
    finally:
        _SLOTS.release()


def _compile_in_child(fmt: Format, budget: CompileBudget, max_char_states: int, shown: str) -> CharAutomaton:
    ctx = _mp_context()
    t0 = time.perf_counter()
    receiver, sender = ctx.Pipe(duplex=False)
    finished = False
    proc = ctx.Process(
        target=_child_main,
        args=(sender, fmt, budget.memory_mb << 20, max_char_states, shown),
        name="prunekit-format-compile",
        daemon=True,
    )
    try:
        proc.start()
        sender.close()  # the child holds the only writer: its death is an EOF here
        if not receiver.poll(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the format compiler did not start within {STARTUP_TIMEOUT_S:.0f} s")
        receiver.recv_bytes()  # "ready": the deadline counts from here, start-up is not the format's doing
        started = time.perf_counter()
        if not receiver.poll(budget.timeout_s):
            raise FormatCompileTimeoutError(
                f"the format {shown} took longer than {budget.timeout_s:g} s to compile: simplify it "
                "(fewer or shorter repeats, alternatives and JSON keys)"
            )
        data = receiver.recv_bytes(MAX_RESULT_BYTES + 4096)
        finished = True
    except EOFError:
        proc.join(1.0)
        raise FormatTooLargeError(
            f"the format {shown} stopped its compiler (exit code {proc.exitcode}): simplify it"
        ) from None
    finally:
        receiver.close()
        _reap(proc, grace_s=1.0 if finished else 0.0)
    status, value = pickle.loads(data)
    log.debug(
        "format %s: char automaton in %.3f s (%.3f s with the child process)",
        shown,
        time.perf_counter() - started,
        time.perf_counter() - t0,
    )
    if status == "ok":
        return value
    if status == "error":
        raise value
    if status == "memory":
        raise FormatTooLargeError(
            f"the format {shown} needs more than {budget.memory_mb:,} MiB to compile: simplify it"
        )
    raise RuntimeError(f"the format compiler failed on {shown}: {value}")


def _child_main(conn: Connection, fmt: Format, memory_bytes: int, max_char_states: int, shown: str) -> None:
    """Entry point of the compile child: cap memory, say ready, send back (status, automaton or error), pickled."""
    import interegular  # noqa: F401  (preloaded by the forkserver; imported before "ready" under spawn)

    _cap_address_space(memory_bytes)
    conn.send_bytes(b"ready")
    payload: tuple[str, Any]
    try:
        automaton = compile_format(fmt)
        if automaton.num_states > max_char_states:
            raise FormatTooLargeError(
                f"the format {shown} needs {automaton.num_states:,} character states, above the limit of "
                f"{max_char_states:,}: shorten bounded repeats (<free:N>, {{n,m}}), choices or JSON keys"
            )
        payload = ("ok", automaton)
    except FormatSpecError as e:
        payload = ("error", e)
    except MemoryError:
        payload = ("memory", None)
    except RecursionError:
        payload = ("error", FormatTooLargeError(f"the format {shown} nests too deeply to compile: simplify it"))
    except Exception as e:  # a bug, not the format's fault: the parent raises it as one
        payload = ("crash", f"{type(e).__name__}: {e}")
    try:
        data = pickle.dumps(payload)
    except MemoryError:
        data = pickle.dumps(("memory", None))
    if len(data) > MAX_RESULT_BYTES:
        data = pickle.dumps(("error", FormatTooLargeError(f"the format {shown} compiles too large: simplify it")))
    try:
        conn.send_bytes(data)
        conn.close()
    except OSError:  # the parent gave up (its deadline passed) and closed the pipe: nobody to tell
        pass


def _cap_address_space(extra_bytes: int) -> None:
    """Let this process grow by at most `extra_bytes` of address space (Linux; elsewhere best effort)."""
    try:
        import resource

        current = _vm_size()
        if current is None:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + extra_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or limit < soft:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        log.debug("could not cap the format compiler's memory", exc_info=True)


def _vm_size() -> int | None:
    """This process's virtual memory size in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reap(proc: Any, grace_s: float) -> None:
    """Make sure the child is gone: given `grace_s` to exit, then killed, waited for, its resources released."""
    if proc.pid is None:
        return  # never started
    if grace_s:
        proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join(5.0)
    if not proc.is_alive():
        proc.close()
    else:  # pragma: no cover - SIGKILL ignored: nothing more a parent can do
        log.error("format compiler %d did not die after SIGKILL", proc.pid)


_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
# Compiles are CPU-bound: more children than cores only slow each other down past their deadlines.
_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def _mp_context() -> Any:
    """A forkserver context that preloads this module (spawn where forkserver does not exist, e.g. Windows)."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(_PRELOAD)  # process-wide; takes effect if the server is not yet running
            else:
                ctx = multiprocessing.get_context("spawn")
            _CONTEXT = ctx
        return _CONTEXT


# --------------------------------------------------------------------------- caches
_LOCK = threading.Lock()
_REFUSALS: OrderedDict[tuple[Any, ...], tuple[type[FormatSpecError], str]] = OrderedDict()
_INFLIGHT: dict[tuple[Any, ...], Future[Any]] = {}


def _raise_if_refused(key: tuple[Any, ...]) -> None:
    with _LOCK:
        verdict = _REFUSALS.get(key)
        if verdict is not None:
            _REFUSALS.move_to_end(key)
    if verdict is not None:
        cls, message = verdict
        raise cls(message)


def _remember_refusal(key: tuple[Any, ...], error: FormatSpecError) -> None:
    with _LOCK:
        _REFUSALS[key] = (type(error), str(error))
        _REFUSALS.move_to_end(key)
        while len(_REFUSALS) > _REFUSALS_SIZE:
            _REFUSALS.popitem(last=False)


def _single_flight(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """`build()`, run once for concurrent callers with one key: the others wait for its result or its error."""
    with _LOCK:
        future = _INFLIGHT.get(key)
        owner = future is None
        if owner:
            future = _INFLIGHT[key] = Future()
    assert future is not None
    if not owner:
        try:
            return future.result()
        except FormatSpecError as e:
            raise type(e)(str(e)) from None  # a fresh exception per thread: tracebacks are not shared
    try:
        result = build()
        future.set_result(result)
        return result
    except BaseException as e:
        future.set_exception(e)
        raise
    finally:
        with _LOCK:
            _INFLIGHT.pop(key, None)


def _show(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")
