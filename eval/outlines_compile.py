"""outlines-core alone on a JSON Schema, under the same time budget as prunekit: `build_regex_from_schema`, then
outlines-core's token `Index` of that regex over the model's vocabulary, in a child process killed at the deadline.

Why a child: outlines-core compiles a schema to one regex and indexes it eagerly over the whole vocabulary; on
JSONSchemaBench some schemas with a regex of a few kB take minutes (two seen on the shared machine: 105 s and
113 s), and Rust code in a Python thread cannot be stopped. The child is spawned (never forked from a process
running llama.cpp's threads), caps its address space, builds outlines-core's `Vocabulary` once, and is replaced
after a kill. The module imports neither torch nor the model, so a fresh child starts in well under a second.
`eval.outlines_mask.SchemaRegexMask` then masks decoding with a regex accepted here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import resource
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not imported at run time: the child imports this module, and should start fast
    from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["WHITESPACE", "OutlinesCompiler", "OutlinesVerdict"]

# Compact JSON, as prunekit's grammars (`decoding.structured.json_output.GRAMMAR_OPTIONS`): with free whitespace
# a small model can pad until its token budget ends, which would measure the model, not the library.
WHITESPACE = ""
STARTUP_TIMEOUT_S = 120.0  # spawning a child and building outlines-core's Vocabulary of 49k tokens takes ~2 s
DEFAULT_MEMORY_MB = 4096


@dataclass(frozen=True)
class OutlinesVerdict:
    """What outlines-core made of one schema: `regex` when it compiled and indexed within the deadline, else
    `error` (the library's words, or "timeout")."""

    seconds: float
    regex: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.regex is not None


class OutlinesCompiler:
    """Compiles schemas with outlines-core in one long-lived child process, each within `timeout_s`.

    Use as a context manager (the child is ended on exit)."""

    def __init__(self, vocab: TokenVocabulary, timeout_s: float, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._vocab = vocab
        self._vocab_file: str | None = None  # outlines-core's vocabulary, pickled once for every child to read
        self._process: Any = None
        self._conn: Connection | None = None

    def __enter__(self) -> OutlinesCompiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._vocab_file is not None:
            os.unlink(self._vocab_file)
            self._vocab_file = None

    def compile(self, schema: Any) -> OutlinesVerdict:
        """The schema's regex if outlines-core builds it and its index within the deadline."""
        conn = self._ready()
        started = time.perf_counter()
        try:
            conn.send(json.dumps(schema))
        except OSError:  # the child is gone: the schema gets a fresh one
            self.close()
            conn = self._ready()
            started = time.perf_counter()
            conn.send(json.dumps(schema))
        if not conn.poll(self.timeout_s):
            self.close()  # the child is still compiling: kill it; the next schema gets a fresh one
            return OutlinesVerdict(time.perf_counter() - started, error="timeout")
        try:
            kind, payload, seconds = conn.recv()
        except (EOFError, OSError):  # the child died (its memory cap, a crash in the library)
            self.close()
            return OutlinesVerdict(time.perf_counter() - started, error="the outlines-core process died")
        return OutlinesVerdict(seconds, regex=payload) if kind == "ok" else OutlinesVerdict(seconds, error=payload)

    def close(self) -> None:
        """End the child (a later `compile` starts a fresh one)."""
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _vocabulary_file(self) -> str:
        """The vocabulary goes to the child through a file: a large argument is written into a pipe the child may
        never read (one that dies while starting), and that write would block the parent forever."""
        if self._vocab_file is None:
            with tempfile.NamedTemporaryFile("wb", prefix="prunekit-outlines-vocab-", delete=False) as f:
                pickle.dump((self._vocab.eos_token_ids[0], _vocabulary_map(self._vocab)), f)
            self._vocab_file = f.name
        return self._vocab_file

    def _ready(self) -> Connection:
        if self._conn is not None:
            return self._conn
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self._vocabulary_file(), self.memory_mb), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        try:
            if not parent.poll(STARTUP_TIMEOUT_S):
                raise EOFError
            parent.recv()  # "ready": the vocabulary is built, outside every schema's deadline
        except (EOFError, OSError):
            self.close()
            raise RuntimeError(
                "the outlines-core child did not start (a script that runs an evaluation needs "
                "`if __name__ == '__main__':`, as multiprocessing's spawn imports the main module again)"
            ) from None
        return parent


def _vocabulary_map(vocab: TokenVocabulary) -> dict[bytes, list[int]]:
    """outlines-core's view of `vocab` as `outlines_ref` builds it: token bytes -> ids, special and EOS tokens
    left out."""
    by_bytes: dict[bytes, list[int]] = defaultdict(list)
    for token_id, data in enumerate(vocab.token_bytes):
        if data and token_id not in vocab.eos_token_ids:
            by_bytes[data].append(token_id)
    return dict(by_bytes)


def _serve(conn: Connection, vocab_file: str, memory_mb: int) -> None:
    """The child: build the vocabulary, then answer ("ok", regex, s) or ("error", message, s) per schema."""
    from outlines_core import Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with open(vocab_file, "rb") as f:
        eos, tokens = pickle.load(f)
    vocabulary = Vocabulary(eos, tokens)
    conn.send("ready")
    while True:
        try:
            text = conn.recv()
        except EOFError:
            return
        started = time.perf_counter()
        try:
            regex = build_regex_from_schema(text, whitespace_pattern=WHITESPACE)
            Index(regex, vocabulary)
            conn.send(("ok", regex, time.perf_counter() - started))
        except (ValueError, RuntimeError, TypeError, MemoryError) as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - started))
