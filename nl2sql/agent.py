"""The NL2SQL agent as a LangGraph `StateGraph`: LearNAT's decomposed inference around a weak model.

LearNAT (arXiv 2504.02327) answers step by step along the SQL AST, prompted with retrieved
decomposed demonstrations, and retries a query until it executes. The graph:

    link -> retrieve -> draft -> decompose -> write_steps -> compose -> execute -> [repair -> execute]* -> answer

- `link`: schema linking without any oracle (`schema.link_schema`: embeddings, names, values), so the
  prompt holds the linked tables only;
- `retrieve`: the k most similar training examples (`retrieval.DemoIndex`), each with its decomposition;
- `draft`: one direct SQL with the demonstrations (a first candidate); its skeleton re-ranks the
  demonstrations (DAIL-SQL's second signal) for the next steps;
- `decompose`: the model writes sub-questions, guided by the demonstrations' decompositions (in the
  default `joint` mode the same call writes each sub-question's SQL, LearNAT's inference format);
- `write_steps`: in `per_step` mode, the SQL of each sub-question, one call per step, each extending
  the previous step's SQL (in `joint` mode the decomposition call already wrote them: no call);
- `compose`: the final SQL (the last step's, or one call that composes the steps); with the re-ranked
  demonstrations, one more direct candidate (`direct_skeleton`);
- `execute`: every candidate runs through `safe_exec` (read-only, timeout, row cap); the answer is
  the candidate whose result most candidates agree on (self-consistency by execution result), non-empty
  results first, ties to the earlier candidate;
- `repair`: when the chosen query fails or returns nothing, a bounded number of tries: identifiers the
  database does not have are mapped to the nearest real ones, else the model rewrites the query with
  the error message in the prompt;
- `answer`: the SQL, the rows (capped) and one sentence (a template, or the model when asked).

Each LLM call is recorded in the state (`calls`: node, prompt and completion tokens, seconds); greedy
decoding throughout. `NL2SQLAgent` caches per-database schemas and value indexes; `answer_question` is
the one-call convenience.
"""

from __future__ import annotations

import difflib
import logging
import operator
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from prunekit.decoding.errors import BackendError, InvalidRequestError
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams, Message
from prunekit.nl2sql import prompts
from prunekit.nl2sql.errors import DatabaseNotFoundError, SQLError, SQLTimeoutError
from prunekit.nl2sql.retrieval import DemoIndex, Demonstration
from prunekit.nl2sql.safe_exec import SafeDatabase, SafeExecConfig
from prunekit.nl2sql.schema import Schema, ValueIndex, introspect_sqlite, link_schema, render_schema

__all__ = [
    "AgentConfig",
    "Candidate",
    "DatabaseContext",
    "NL2SQLAgent",
    "NL2SQLResult",
    "NL2SQLState",
    "answer_question",
    "build_nl2sql_graph",
    "choose_candidate",
    "fix_identifiers",
    "result_signature",
]

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class AgentConfig:
    """The agent's knobs. Defaults were chosen on a held-out slice of Spider *train* (never dev)."""

    k_demos: int = 3  # demonstrations in each prompt
    skeleton_weight: float = 0.5  # weight of the draft's skeleton when re-ranking demonstrations
    link: bool = True  # prompt with the linked tables only (False: the whole schema)
    top_k_tables: int = 4
    top_k_columns: int = 8
    n_examples: int = 2  # example values per column in the schema text
    step_mode: Literal["joint", "per_step"] = "joint"
    candidates: tuple[str, ...] = ("draft", "decompose", "direct_skeleton")
    max_steps: int = 6  # sub-questions kept from the decomposition
    max_repairs: int = 2  # repair tries after the chosen candidate fails or returns nothing
    repair_empty: bool = True  # an empty result is treated as a failure worth one repair
    max_tokens_sql: int = 120  # a Spider query is rarely longer; a rambling model is cut early
    max_tokens_steps: int = 256
    row_cap: int = 50  # rows kept in the answer
    answer_with_llm: bool = False  # one more call for the sentence; the template needs none
    exec_timeout_s: float = 5.0
    budget: prompts.PromptBudget = field(default_factory=prompts.PromptBudget)

    def __post_init__(self) -> None:
        if self.k_demos < 0 or self.max_repairs < 0 or self.max_steps < 1:
            raise InvalidRequestError("k_demos and max_repairs must be >= 0 and max_steps >= 1")
        if self.step_mode not in ("joint", "per_step"):
            raise InvalidRequestError(f"step_mode must be 'joint' or 'per_step', got {self.step_mode!r}")
        unknown = set(self.candidates) - {"draft", "decompose", "direct_skeleton"}
        if unknown or not self.candidates:
            raise InvalidRequestError(
                f"candidates must be a non-empty subset of draft, decompose, direct_skeleton; got {self.candidates}"
            )


@dataclass
class Candidate:
    """A candidate query and what executing it gave."""

    source: str
    sql: str
    status: str = "pending"  # "ok", "empty", "error", "pending"
    error: str | None = None
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    truncated: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sql": self.sql,
            "status": self.status,
            "error": self.error,
            "rows": len(self.rows),
        }


@dataclass
class NL2SQLResult:
    """What a method answered for one question, and what it cost."""

    question: str
    db_path: str
    sql: str | None
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    answer: str = ""
    error: str | None = None
    steps: list[tuple[str, str | None]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    demos: list[int] = field(default_factory=list)  # training-file indices of the demonstrations
    calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    method: str = "learnat"

    @property
    def llm_calls(self) -> int:
        return len(self.calls)

    @property
    def prompt_tokens(self) -> int:
        return sum(c["prompt_tokens"] for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c["completion_tokens"] for c in self.calls)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [list(r) for r in self.rows]
        out.update(llm_calls=self.llm_calls, tokens=self.tokens)
        return out


class NL2SQLState(TypedDict, total=False):
    question: str
    db_path: str
    schema_text: str
    linked_tables: list[str]
    demos: list[Demonstration]
    steps: list[tuple[str, str | None]]
    candidates: list[Candidate]
    chosen: int
    repairs: int
    sql: str | None
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    error: str | None
    answer: str
    calls: Annotated[list[dict[str, Any]], operator.add]


# ---------------------------------------------------------------------------------------------
# Databases


@dataclass
class DatabaseContext:
    """A database's schema (with example values) and value index, built once and reused."""

    path: Path
    schema: Schema
    values: ValueIndex

    @classmethod
    def open(cls, path: str | Path, n_examples: int = 2) -> DatabaseContext:
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise DatabaseNotFoundError(f"no SQLite database at {p}")
        schema = introspect_sqlite(p, n_examples=n_examples)
        return cls(p, schema, ValueIndex.from_sqlite(p, schema))


class _DatabaseCache:
    """Contexts by (file, modification time): a database edited on disk is read again, once."""

    def __init__(self, n_examples: int) -> None:
        self.n_examples = n_examples
        self._items: dict[tuple[Path, float], DatabaseContext] = {}
        self._lock = threading.Lock()
        self._building: dict[tuple[Path, float], threading.Lock] = {}

    def get(self, path: str | Path) -> DatabaseContext:
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise DatabaseNotFoundError(f"no SQLite database at {p}")
        key = (p, p.stat().st_mtime)
        with self._lock:
            if key in self._items:
                return self._items[key]
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one thread builds a database's context; the others wait for it
            with self._lock:
                if key in self._items:
                    return self._items[key]
            ctx = DatabaseContext.open(p, self.n_examples)
            with self._lock:
                # the database changed on disk: its older contexts (and their build gates) will never be asked for
                for stale in [k for k in self._items if k[0] == p]:
                    del self._items[stale]
                    self._building.pop(stale, None)
                self._items[key] = ctx
            return ctx


class _MemoEmbedder:
    """Remembers the vectors of texts it has embedded: schema linking embeds the same table and column
    names for every question on a database, so only the question is new."""

    def __init__(self, embed: Embedder, max_items: int = 100_000) -> None:
        self.embed = embed
        self.max_items = max_items
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = np.asarray(self.embed(missing), dtype=np.float32)  # (M, D)
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                if len(self._vectors) + len(missing) > self.max_items:
                    self._vectors.clear()
                self._vectors.update(zip(missing, fresh, strict=True))
        return np.stack([known[t] for t in texts])  # (N, D)


# ---------------------------------------------------------------------------------------------
# Execution and choice


def result_signature(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """An order-free signature of a result: the sorted bag of rows, each row's values sorted.

    Two candidates agree when their signatures are equal (row order and column order ignored, as in
    Spider's execution match without ORDER BY).
    """

    def key(v: Any) -> tuple[int, str]:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return (0, repr(v)) if v is None else (1, f"{type(v).__name__}:{v!r}")

    return tuple(sorted(tuple(sorted(key(v) for v in row)) for row in rows))


def choose_candidate(candidates: Sequence[Candidate]) -> int:
    """Index of the candidate to answer with: the largest group of candidates agreeing on a non-empty
    result, then the largest agreeing on an empty result, then the first candidate; ties go to the
    group whose first member comes earliest."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    for status in ("ok", "empty"):
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, c in enumerate(candidates):
            if c.status == status:
                groups.setdefault(result_signature(c.rows), []).append(i)
        if groups:
            best = max(groups.values(), key=lambda members: (len(members), -members[0]))
            return best[0]
    return 0


_NO_SUCH = re.compile(r"no such (column|table): ([\w.]+)", re.IGNORECASE)


def fix_identifiers(sql: str, error: str, schema: Schema) -> str | None:
    """Map an identifier SQLite does not know (from the error message) to the nearest real one.

    Returns the rewritten SQL, or None when the error is not about a missing name or nothing is close.

    >>> from prunekit.nl2sql.schema import Column, Table
    >>> s = Schema("t", (Table("singer", (Column("name"), Column("age"))),))
    >>> fix_identifiers("SELECT nme FROM singer", "no such column: nme", s)
    'SELECT name FROM singer'
    """
    m = _NO_SUCH.search(error or "")
    if not m:
        return None
    kind, name = m.group(1).lower(), m.group(2)
    bare = name.split(".")[-1]
    if kind == "table":
        pool = [t.name for t in schema.tables]
    else:
        pool = sorted({c.name for t in schema.tables for c in t.columns})
    lowered = {p.lower(): p for p in pool}
    # any real name beats one that cannot run: a low similarity cutoff, then shared words
    close = difflib.get_close_matches(bare.lower(), list(lowered), n=1, cutoff=0.4)
    if not close:
        # a column named after its table ("singer_name" for "name") or the reverse
        parts = [p for p in re.split(r"[_\W]+", bare.lower()) if len(p) > 1]
        scored = [(sum(part in key for part in parts), key) for key in lowered]
        scored = [s for s in scored if s[0] > 0]
        close = [max(scored)[1]] if scored else []
    if not close or lowered[close[0]].lower() == bare.lower():
        return None
    replacement = lowered[close[0]]
    pattern = re.compile(r"(?<![\w'])" + re.escape(bare) + r"(?![\w'])", re.IGNORECASE)
    fixed = pattern.sub(replacement, sql)
    return fixed if fixed != sql else None


# ---------------------------------------------------------------------------------------------
# The agent


class NL2SQLAgent:
    """Holds the model, the demonstration index, the encoder and per-database caches; `answer` runs the graph.

    >>> import sqlite3, tempfile
    >>> from prunekit.decoding import ChatResult, Usage
    >>> class Scripted:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
    ...     name = "scripted"
    ...     def chat(self, messages, params=None):
    ...         return ChatResult("SELECT count(*) FROM singer", "stop", Usage(prompt_tokens=90, completion_tokens=8))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> db = Path(tmp.name) / "concert.sqlite"
    >>> with sqlite3.connect(db) as c:
    ...     _ = c.executescript("CREATE TABLE singer (name TEXT); INSERT INTO singer VALUES ('Ann'), ('Bo')")
    >>> agent = NL2SQLAgent(Scripted())  # index=DemoIndex.from_spider(spider_dir, embed): demonstrations
    >>> result = agent.answer("How many singers are there?", db)
    >>> result.sql, result.rows
    ('SELECT count(*) FROM singer', [(2,)])
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        index: DemoIndex | None = None,
        embed: Embedder | None = None,
        config: AgentConfig | None = None,
    ) -> None:
        self.model = model
        self.index = index
        self.config = config or AgentConfig()
        if embed is None:
            from prunekit.decoding.backends.embeddings import load_embedder

            embed = load_embedder()
        self.embed = embed
        self.link_embed = _MemoEmbedder(embed)
        self.databases = _DatabaseCache(self.config.n_examples)
        self.graph = build_nl2sql_graph(self).compile()

    # -- one LLM call ------------------------------------------------------------------------

    def chat(self, node: str, messages: list[Message], max_tokens: int, stop: tuple[str, ...] = ()) -> tuple[str, dict]:
        """Greedy completion; returns the text and the call record (node, tokens, seconds)."""
        start = time.monotonic()
        params = GenerationParams(max_tokens=max_tokens, temperature=0.0, stop=stop)
        try:
            result = self.model.chat(messages, params)
        except (InvalidRequestError, BackendError) as err:
            log.warning("%s: the model refused the call: %s", node, err)
            return "", {"node": node, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "error": str(err)}
        record = {
            "node": node,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "seconds": round(time.monotonic() - start, 3),
        }
        return result.text, record

    def execute(self, db_path: str | Path, candidates: list[Candidate]) -> None:
        """Run the pending candidates (in place)."""
        pending = [c for c in candidates if c.status == "pending"]
        if not pending:
            return
        config = SafeExecConfig(timeout_s=self.config.exec_timeout_s, max_rows=10_000)
        with SafeDatabase(db_path, config) as db:
            for c in pending:
                try:
                    result = db.execute(c.sql)
                except SQLTimeoutError as err:
                    c.status, c.error = "error", f"timeout: {err}"
                except SQLError as err:
                    c.status, c.error = "error", str(err)
                else:
                    c.columns, c.rows, c.truncated = result.columns, list(result.rows), result.truncated
                    c.status = "ok" if result.rows else "empty"

    def answer(self, question: str, db_path: str | Path) -> NL2SQLResult:
        """Run the graph on one question; the result carries the SQL, rows, answer and the calls made."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequestError("the question is empty")
        path = Path(db_path).expanduser().resolve()
        if not path.is_file():
            raise DatabaseNotFoundError(f"no SQLite database at {path}")
        start = time.monotonic()
        state = self.graph.invoke({"question": question.strip(), "db_path": str(path), "calls": []})
        return NL2SQLResult(
            question=question,
            db_path=str(path),
            sql=state.get("sql"),
            columns=tuple(state.get("columns", ())),
            rows=list(state.get("rows", [])),
            answer=state.get("answer", ""),
            error=state.get("error"),
            steps=list(state.get("steps", [])),
            candidates=[c.summary() for c in state.get("candidates", [])],
            demos=[d.index for d in state.get("demos", [])],
            calls=list(state.get("calls", [])),
            seconds=round(time.monotonic() - start, 3),
            method="learnat",
        )

    # -- nodes ---------------------------------------------------------------------------------

    def node_link(self, state: NL2SQLState) -> dict[str, Any]:
        ctx = self.databases.get(state["db_path"])
        schema = ctx.schema
        tables = [t.name for t in schema.tables]
        if self.config.link:
            linked = link_schema(
                state["question"],
                schema,
                self.link_embed,
                values=ctx.values,
                top_k_tables=self.config.top_k_tables,
                top_k_columns=self.config.top_k_columns,
            )
            schema, tables = linked.schema, linked.table_names
        text = render_schema(schema)
        if len(text) > self.config.budget.max_schema_chars:  # a wide schema: its example values go first
            text = render_schema(schema, examples=False)
        return {"schema_text": text, "linked_tables": tables}

    def _retrieve(self, question: str, db_path: str, draft_sql: str | None = None) -> list[Demonstration]:
        if self.index is None or self.config.k_demos == 0:
            return []
        ctx = self.databases.get(db_path)
        return self.index.retrieve(
            question,
            self.config.k_demos,
            schema=ctx.schema,
            draft_sql=draft_sql,
            skeleton_weight=self.config.skeleton_weight,
        )

    def node_retrieve(self, state: NL2SQLState) -> dict[str, Any]:
        return {"demos": self._retrieve(state["question"], state["db_path"])}

    def node_draft(self, state: NL2SQLState) -> dict[str, Any]:
        messages = prompts.direct_messages(
            state["schema_text"], state["question"], state["demos"], budget=self.config.budget
        )
        text, record = self.chat("draft", messages, self.config.max_tokens_sql, stop=("\n\n", ";"))
        sql = prompts.extract_sql(text)
        candidates = [Candidate("draft", sql)] if sql else []
        return {"candidates": candidates, "calls": [record]}

    def node_decompose(self, state: NL2SQLState) -> dict[str, Any]:
        if "decompose" not in self.config.candidates:
            return {"steps": []}
        demos = self._reranked(state)
        joint = self.config.step_mode == "joint"
        messages = prompts.decompose_messages(
            state["schema_text"],
            state["question"],
            demos,
            budget=self.config.budget,
            with_sql=joint,
            max_steps=self.config.max_steps,
        )
        text, record = self.chat("decompose", messages, self.config.max_tokens_steps, stop=("\n\n", "Question:"))
        steps, final = prompts.parse_steps(text)
        steps = [(q, s) for q, s in steps if q or s][: self.config.max_steps]
        if joint and final and (not steps or steps[-1][1] != final):
            steps.append(("What is the final answer?", final))
        if not steps:
            steps = [(state["question"], None)]
        return {"steps": steps, "calls": [record]}

    def _reranked(self, state: NL2SQLState) -> list[Demonstration]:
        drafts = [c.sql for c in state.get("candidates", []) if c.source == "draft"]
        if drafts and self.config.skeleton_weight > 0:
            return self._retrieve(state["question"], state["db_path"], drafts[0])
        return state.get("demos", [])

    def node_write_steps(self, state: NL2SQLState) -> dict[str, Any]:
        steps = list(state.get("steps", []))
        if not steps:
            return {}
        if self.config.step_mode == "joint":
            return {}  # the decomposition call wrote the SQL; compose handles a missing final query
        demos = self._reranked(state)
        records = []
        previous: str | None = None
        for i, (sub_q, sql) in enumerate(steps):
            if sql is None:
                messages = prompts.step_messages(
                    state["schema_text"],
                    state["question"],
                    sub_q or state["question"],
                    previous,
                    demos,
                    budget=self.config.budget,
                )
                text, record = self.chat("write_step", messages, self.config.max_tokens_sql, stop=("\n\n", ";"))
                records.append(record)
                sql = prompts.extract_sql(text)
                steps[i] = (sub_q, sql)
            previous = sql or previous
        return {"steps": steps, "calls": records}

    def node_compose(self, state: NL2SQLState) -> dict[str, Any]:
        candidates = list(state.get("candidates", []))
        records = []
        steps = state.get("steps", [])
        if "decompose" in self.config.candidates and steps:
            final = steps[-1][1]
            if final is None:
                written = [(q, s) for q, s in steps if s]
                if written:
                    messages = prompts.compose_messages(
                        state["schema_text"], state["question"], written, budget=self.config.budget
                    )
                    text, record = self.chat("compose", messages, self.config.max_tokens_sql, stop=("\n\n", ";"))
                    records.append(record)
                    final = prompts.extract_sql(text)
            if final:
                candidates.append(Candidate("decompose", final))
        if "direct_skeleton" in self.config.candidates:
            demos = self._reranked(state)
            if [d.index for d in demos] != [d.index for d in state.get("demos", [])]:
                messages = prompts.direct_messages(
                    state["schema_text"], state["question"], demos, budget=self.config.budget
                )
                text, record = self.chat("direct_skeleton", messages, self.config.max_tokens_sql, stop=("\n\n", ";"))
                records.append(record)
                sql = prompts.extract_sql(text)
                if sql:
                    candidates.append(Candidate("direct_skeleton", sql))
        if "draft" not in self.config.candidates:
            candidates = [c for c in candidates if c.source != "draft"]
        return {"candidates": candidates, "calls": records}

    def node_execute(self, state: NL2SQLState) -> dict[str, Any]:
        candidates = list(state.get("candidates", []))
        self.execute(state["db_path"], candidates)
        if not candidates:
            return {"candidates": [], "chosen": -1}
        return {"candidates": candidates, "chosen": choose_candidate(candidates)}

    def route_after_execute(self, state: NL2SQLState) -> str:
        chosen = state.get("chosen", -1)
        if state.get("repairs", 0) >= self.config.max_repairs:
            return "answer"
        if chosen < 0:
            return "repair"
        status = state["candidates"][chosen].status
        if status == "error" or (status == "empty" and self.config.repair_empty):
            return "repair"
        return "answer"

    def node_repair(self, state: NL2SQLState) -> dict[str, Any]:
        candidates = list(state.get("candidates", []))
        repairs = state.get("repairs", 0) + 1
        chosen = state.get("chosen", -1)
        target = candidates[chosen] if chosen >= 0 else None
        seen = {c.sql for c in candidates}
        if target is not None and target.status == "error":
            ctx = self.databases.get(state["db_path"])
            fixed = target.sql
            # several wrong names: fix them one by one, each against a fresh error
            for _ in range(4):
                attempt = fix_identifiers(fixed, target.error or "", ctx.schema)
                if attempt is None or attempt in seen:
                    break
                probe = Candidate(target.source + "+fix", attempt)
                self.execute(state["db_path"], [probe])
                fixed = attempt
                if probe.status != "error":
                    candidates.append(probe)
                    return {"candidates": candidates, "repairs": repairs}
                target = replace(target, error=probe.error)
        sql = target.sql if target is not None else ""
        error = (
            (target.error or "") if target is not None and target.status == "error" else "the query returned no rows"
        )
        if target is None:
            error = "no SQL query was written"
        messages = prompts.repair_messages(
            state["schema_text"], state["question"], sql, error, budget=self.config.budget
        )
        text, record = self.chat("repair", messages, self.config.max_tokens_sql, stop=("\n\n", ";"))
        new = prompts.extract_sql(text)
        if new and new not in seen:
            candidates.append(Candidate("repair", new))
        return {"candidates": candidates, "repairs": repairs, "calls": [record]}

    def node_answer(self, state: NL2SQLState) -> dict[str, Any]:
        candidates = state.get("candidates", [])
        chosen = state.get("chosen", -1)
        if chosen < 0 or not candidates:
            return {"sql": None, "rows": [], "columns": (), "error": "no SQL query could be written", "answer": ""}
        best = candidates[chosen]
        # a repair that still failed never replaces a candidate that ran
        rows = best.rows[: self.config.row_cap]
        out: dict[str, Any] = {
            "sql": best.sql,
            "columns": best.columns,
            "rows": rows,
            "error": best.error if best.status == "error" else None,
        }
        if best.status == "error":
            out["answer"] = f"The query failed: {best.error}"
        elif self.config.answer_with_llm:
            messages = prompts.answer_messages(state["question"], best.sql, best.columns, rows)
            text, record = self.chat("answer", messages, 60, stop=("\n",))
            out["answer"] = text.strip() or template_answer(best.columns, best.rows)
            out["calls"] = [record]
        else:
            out["answer"] = template_answer(best.columns, best.rows)
        return out


def template_answer(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One sentence from a result, without a model."""
    if not rows:
        return "No rows match the question."
    if len(rows) == 1 and len(rows[0]) == 1:
        return f"The answer is {rows[0][0]}."
    if len(rows) == 1:
        return "The answer is " + ", ".join(f"{c} = {v}" for c, v in zip(columns, rows[0], strict=False)) + "."
    values = [str(r[0]) if len(r) == 1 else "(" + ", ".join(map(str, r)) + ")" for r in rows[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"{len(rows)} rows match: " + ", ".join(values) + more + "."


def build_nl2sql_graph(agent: NL2SQLAgent | ChatModel, **kwargs: Any) -> StateGraph:
    """The agent's `StateGraph` (uncompiled). Pass an `NL2SQLAgent`, or a `ChatModel` plus the agent's
    keyword arguments (`index`, `embed`, `config`)."""
    if not isinstance(agent, NL2SQLAgent):
        return build_nl2sql_graph(NL2SQLAgent(agent, **kwargs))
    graph = StateGraph(NL2SQLState)
    graph.add_node("link", agent.node_link)
    graph.add_node("retrieve", agent.node_retrieve)
    graph.add_node("draft", agent.node_draft)
    graph.add_node("decompose", agent.node_decompose)
    graph.add_node("write_steps", agent.node_write_steps)
    graph.add_node("compose", agent.node_compose)
    graph.add_node("execute", agent.node_execute)
    graph.add_node("repair", agent.node_repair)
    graph.add_node("answer", agent.node_answer)
    graph.add_edge(START, "link")
    graph.add_edge("link", "retrieve")
    graph.add_edge("retrieve", "draft")
    graph.add_edge("draft", "decompose")
    graph.add_edge("decompose", "write_steps")
    graph.add_edge("write_steps", "compose")
    graph.add_edge("compose", "execute")
    graph.add_conditional_edges("execute", agent.route_after_execute, {"repair": "repair", "answer": "answer"})
    graph.add_edge("repair", "execute")
    graph.add_edge("answer", END)
    return graph


_AGENTS: dict[tuple[int, int, int, AgentConfig], NL2SQLAgent] = {}
_AGENTS_LOCK = threading.Lock()


def answer_question(
    question: str,
    db_path: str | Path,
    model: ChatModel,
    *,
    index: DemoIndex | None = None,
    embed: Embedder | None = None,
    config: AgentConfig | None = None,
) -> NL2SQLResult:
    """Answer one question on one SQLite database with the agent (agents are reused across calls).

    Without `index` no demonstrations are used (build one with `DemoIndex.from_spider`).
    """
    config = config or AgentConfig()
    key = (id(model), id(index), id(embed), config)
    with _AGENTS_LOCK:
        agent = _AGENTS.get(key)
        if agent is None:
            agent = _AGENTS[key] = NL2SQLAgent(model, index=index, embed=embed, config=config)
    return agent.answer(question, db_path)
