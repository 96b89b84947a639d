"""The NL2SQL agent as a LangGraph `StateGraph`: LearNAT's decomposed inference around a weak model.

LearNAT (arXiv 2504.02327) answers step by step along the SQL AST, prompted with retrieved
decomposed demonstrations, and retries a query until it executes. The graph:

    link -> retrieve -> draft -> decompose -> write_steps -> compose -> execute -> [repair -> execute]* -> answer

- `link`: schema linking without any oracle (`schema.link_schema`: embeddings, names, values), so the
  prompt holds the linked tables only;
- `retrieve`: the k most similar training examples (`retrieval.DemoIndex`), each with its decomposition;
- `draft`: one direct SQL with the demonstrations (a first candidate); its skeleton re-ranks the
  demonstrations (DAIL-SQL's second signal) once, and the state keeps them (`reranked_demos`) for the
  next steps;
- `decompose`: the model writes sub-questions, guided by the demonstrations' decompositions (in the
  default `joint` mode the same call writes each sub-question's SQL, LearNAT's inference format);
- `write_steps`: in `per_step` mode, the SQL of each sub-question, one call per step, each extending
  the previous step's SQL (in `joint` mode the decomposition call already wrote them: no call);
- `compose`: the final SQL (the last step's, or one call that composes the steps); with the re-ranked
  demonstrations, one more direct candidate (`direct_skeleton`);
- `execute`: every candidate runs through `safe_exec` and the answer is chosen by agreement of results
  (`nl2sql.candidates`);
- `repair`: when the chosen query fails or returns nothing, a bounded number of tries: identifiers the
  database does not have are mapped to the nearest real ones (`nl2sql.identifiers`), else the model
  rewrites the query with the error message in the prompt;
- `answer`: the SQL, the rows (capped) and one sentence (a template, or the model when asked).

Each LLM call is recorded in the state (`calls`: node, prompt and completion tokens, seconds); greedy
decoding throughout. `NL2SQLAgent` caches per-database schemas and value indexes (`nl2sql.caches`);
`answer_question` is the one-call convenience. The knobs are `AgentConfig` (`nl2sql.agent_config`), the
answer an `NL2SQLResult` (`nl2sql.result`).
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from prunekit.decoding.errors import BackendError, InvalidRequestError
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams, Message
from prunekit.nl2sql import prompts
from prunekit.nl2sql.agent_config import AgentConfig
from prunekit.nl2sql.caches import DatabaseCache, MemoEmbedder, resolve_database
from prunekit.nl2sql.candidates import Candidate, choose_candidate, execute_candidates
from prunekit.nl2sql.identifiers import repair_identifiers
from prunekit.nl2sql.result import NL2SQLResult, template_answer
from prunekit.nl2sql.retrieval import DemoIndex, Demonstration, Embedder
from prunekit.nl2sql.schema import link_schema, render_schema

__all__ = [
    "AgentConfig",
    "NL2SQLAgent",
    "NL2SQLResult",
    "NL2SQLState",
    "answer_question",
    "build_nl2sql_graph",
]

log = logging.getLogger(__name__)

SQL_STOPS = ("\n\n", ";")  # one query, then stop: a small model goes on with prose or a second query


class NL2SQLState(TypedDict, total=False):
    question: str
    db_path: str
    schema_text: str
    linked_tables: list[str]
    demos: list[Demonstration]  # retrieved by the question
    reranked_demos: list[Demonstration]  # the same index ranked again with the draft's skeleton, once
    steps: list[tuple[str, str | None]]
    candidates: list[Candidate]
    chosen: int
    repairs: int
    sql: str | None
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    error: str | None
    truncated_reason: str | None
    answer: str
    calls: Annotated[list[dict[str, Any]], operator.add]


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
    >>> agent = NL2SQLAgent(Scripted())  # index=demonstration_index(spider_dir): demonstrations
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
        self.link_embed = MemoEmbedder(embed)
        self.databases = DatabaseCache(self.config.n_examples)
        self.graph = build_nl2sql_graph(self).compile()

    # -- what every node and baseline does -------------------------------------------------------

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

    def chat_sql(self, node: str, messages: list[Message]) -> tuple[str | None, dict]:
        """One greedy call that writes a query; returns the query found in the reply (or None) and the record."""
        text, record = self.chat(node, messages, self.config.max_tokens_sql, stop=SQL_STOPS)
        return prompts.extract_sql(text), record

    def execute(self, db_path: str | Path, candidates: list[Candidate]) -> None:
        """Run the pending candidates (in place)."""
        execute_candidates(db_path, candidates, timeout_s=self.config.exec_timeout_s)

    def answer(self, question: str, db_path: str | Path) -> NL2SQLResult:
        """Run the graph on one question; the result carries the SQL, rows, answer and the calls made."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequestError("the question is empty")
        path = resolve_database(db_path)
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
            truncated_reason=state.get("truncated_reason"),
        )

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

    # -- nodes, in graph order ----------------------------------------------------------------------

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

    def node_retrieve(self, state: NL2SQLState) -> dict[str, Any]:
        return {"demos": self._retrieve(state["question"], state["db_path"])}

    def node_draft(self, state: NL2SQLState) -> dict[str, Any]:
        messages = prompts.direct_messages(
            state["schema_text"], state["question"], state["demos"], budget=self.config.budget
        )
        sql, record = self.chat_sql("draft", messages)
        candidates = [Candidate("draft", sql)] if sql else []
        return {"candidates": candidates, "reranked_demos": self._rerank(state, sql), "calls": [record]}

    def _rerank(self, state: NL2SQLState, draft_sql: str | None) -> list[Demonstration]:
        """The demonstrations ranked again with the draft's skeleton, for the nodes after the draft (decompose,
        write_steps, compose); the question's own ranking when there is no draft, no skeleton weight, or no
        node that would use them."""
        used = {"decompose", "direct_skeleton"} & set(self.config.candidates)
        if draft_sql and self.config.skeleton_weight > 0 and used:
            return self._retrieve(state["question"], state["db_path"], draft_sql)
        return state["demos"]

    def node_decompose(self, state: NL2SQLState) -> dict[str, Any]:
        if "decompose" not in self.config.candidates:
            return {"steps": []}
        joint = self.config.step_mode == "joint"
        messages = prompts.decompose_messages(
            state["schema_text"],
            state["question"],
            state["reranked_demos"],
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

    def node_write_steps(self, state: NL2SQLState) -> dict[str, Any]:
        steps = list(state.get("steps", []))
        if not steps or self.config.step_mode == "joint":
            return {}  # in joint mode the decomposition call wrote the SQL; compose handles a missing final query
        records = []
        previous: str | None = None
        for i, (sub_q, sql) in enumerate(steps):
            if sql is None:
                messages = prompts.step_messages(
                    state["schema_text"],
                    state["question"],
                    sub_q or state["question"],
                    previous,
                    state["reranked_demos"],
                    budget=self.config.budget,
                )
                sql, record = self.chat_sql("write_step", messages)
                records.append(record)
                steps[i] = (sub_q, sql)
            previous = sql or previous
        return {"steps": steps, "calls": records}

    def node_compose(self, state: NL2SQLState) -> dict[str, Any]:
        candidates = list(state.get("candidates", []))
        records: list[dict[str, Any]] = []
        if "decompose" in self.config.candidates and state.get("steps"):
            final = self._final_step_sql(state, records)
            if final:
                candidates.append(Candidate("decompose", final))
        if "direct_skeleton" in self.config.candidates:
            sql = self._skeleton_sql(state, records)
            if sql:
                candidates.append(Candidate("direct_skeleton", sql))
        if "draft" not in self.config.candidates:
            candidates = [c for c in candidates if c.source != "draft"]
        return {"candidates": candidates, "calls": records}

    def _final_step_sql(self, state: NL2SQLState, records: list[dict[str, Any]]) -> str | None:
        """The last step's SQL; when it has none, one call composes the steps that have SQL (recorded in
        `records`)."""
        steps = state["steps"]
        final = steps[-1][1]
        written = [(q, s) for q, s in steps if s]
        if final is None and written:
            messages = prompts.compose_messages(
                state["schema_text"], state["question"], written, budget=self.config.budget
            )
            final, record = self.chat_sql("compose", messages)
            records.append(record)
        return final

    def _skeleton_sql(self, state: NL2SQLState, records: list[dict[str, Any]]) -> str | None:
        """A second direct query, prompted with the re-ranked demonstrations (its call recorded in `records`);
        none when the re-ranking changed nothing, since the prompt would be the draft's."""
        demos = state["reranked_demos"]
        if [d.index for d in demos] == [d.index for d in state["demos"]]:
            return None
        messages = prompts.direct_messages(state["schema_text"], state["question"], demos, budget=self.config.budget)
        sql, record = self.chat_sql("direct_skeleton", messages)
        records.append(record)
        return sql

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
        if target is None:
            sql, error = "", "no SQL query was written"
        elif target.status == "error":
            schema = self.databases.get(state["db_path"]).schema
            fixed, error = repair_identifiers(target, schema, seen, lambda c: self.execute(state["db_path"], c))
            if fixed is not None:  # a fixed name made the query run: no call needed
                return {"candidates": [*candidates, fixed], "repairs": repairs}
            sql = target.sql
        else:
            sql, error = target.sql, "the query returned no rows"
        messages = prompts.repair_messages(
            state["schema_text"], state["question"], sql, error, budget=self.config.budget
        )
        new, record = self.chat_sql("repair", messages)
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
            "truncated_reason": best.truncated_reason or None,
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

    Without `index` no demonstrations are used (`nl2sql.demonstration_index` picks one).
    """
    config = config or AgentConfig()
    key = (id(model), id(index), id(embed), config)
    with _AGENTS_LOCK:
        agent = _AGENTS.get(key)
        if agent is None:
            agent = _AGENTS[key] = NL2SQLAgent(model, index=index, embed=embed, config=config)
    return agent.answer(question, db_path)
