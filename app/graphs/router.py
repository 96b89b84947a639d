"""The chat router: one LangGraph graph behind /v1/chat/completions for every prunekit model.

    START -> route -> chat | rag | sql | agents -> END

The request's `model` picks the route (`prunekit-chat`, `prunekit-rag`, `prunekit-sql`, `prunekit-agents`);
`prunekit-auto` lets `AutoRouter` pick among the routes the request can use. Every route streams
through LangGraph's custom stream: `{"delta": text}` for the final answer's tokens and
`{"progress": {"stage": ..., ...}}` for the steps before it. Every route ends with the same keys:
`answer`, `finish_reason`, `usage` (LLM tokens of the whole request), `savings` (what the pruning
stages saved: context tokens removed, agent calls avoided, SQL repair calls) and `details` (route
specific, bounded views from `app.graphs.details`: citations and every retrieved passage with its sentences
marked kept or dropped, the SQL and its result table, the agent team as a graph). `messages` is a thread
(`app.threads.ThreadMessages`): with a checkpointer and a `thread_id` every route keeps the conversation, and
a turn is stored only when its route answers (a failed run leaves the thread as it was). Only the chat route
sends the history to the model, fitted to its context (`details["history_dropped_turns"]`); the others answer
the last user message.

The heavy parts (vector store, context pruner, NL2SQL agent, agent pruners, encoder) load on first
use through `RouterResources`, so a service that only chats never loads them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from langgraph.channels.untracked_value import UntrackedValue
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from prunekit.app.backends import build_sql_model
from prunekit.app.databases import DatabaseRegistry
from prunekit.app.graphs.auto import AutoRouter
from prunekit.app.graphs.chat import answer_in_context
from prunekit.app.graphs.common import last_user_text, usage_state
from prunekit.app.graphs.details import agent_team, sql_table
from prunekit.app.threads import ThreadMessages, commit
from prunekit.decoding import ChatModel, InvalidRequestError, Usage

if TYPE_CHECKING:
    from prunekit.app.settings import Settings

__all__ = ["MODEL_ROUTES", "ROUTES", "RouterNodes", "RouterResources", "RouterState", "build_router_graph"]

ROUTES = ("chat", "rag", "sql", "agents")
MODEL_ROUTES = {
    "prunekit-chat": "chat",
    "prunekit-rag": "rag",
    "prunekit-sql": "sql",
    "prunekit-agents": "agents",
    "prunekit-auto": "auto",
}


class RouterState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], ThreadMessages()]  # history + this run's messages; answers commit
    # The request's settings live for one run (UntrackedValue): a thread stores only its answered turns.
    params: Annotated[dict[str, Any], UntrackedValue(dict)]  # app.graphs.params' plain data
    route: Annotated[str, UntrackedValue(str)]  # requested route (a MODEL_ROUTES value); after `route`, the one taken
    collection: Annotated[str | None, UntrackedValue(object)]  # rag
    database: Annotated[str | None, UntrackedValue(object)]  # sql: a name on the allow-list
    domain: Annotated[str | None, UntrackedValue(object)]  # agents: math | general | code
    # app.graphs.params.OutputConstraint.output: what to do with a constrained answer (JSON check, tool calls)
    output: Annotated[dict[str, Any] | None, UntrackedValue(object)]
    tool_calls: Annotated[list[dict[str, Any]] | None, UntrackedValue(object)]  # OpenAI's, when the answer calls
    logprobs: Annotated[list[dict[str, Any]] | None, UntrackedValue(object)]  # decoding.TokenLogprob's, as asked
    answer: str
    finish_reason: str
    usage: dict[str, int]
    savings: dict[str, int]
    details: dict[str, Any]


@dataclass
class RouterResources:
    """What the routes need besides the chat model, created on first use (thread-safe)."""

    model: ChatModel
    databases: DatabaseRegistry = field(default_factory=DatabaseRegistry)
    vector_store: Any = None  # app.rag.store.VectorStore (or a factory's result)
    store_factory: Any = None  # () -> VectorStore, called once when the rag route first runs
    pruner_factory: Any = None  # () -> ContextPruner
    sql_demos: Any = None  # a Spider folder with train_spider_slim.json: demonstrations for the SQL agent
    default_collection: str = "default"
    embed: Any = None  # texts -> normalised vectors; default: the shared MiniLM encoder
    code_execution: str = "off"  # agents: "sandbox" runs their tests and programs in bubblewrap (see settings)
    sql_model_factory: Any = None  # () -> the SQL agent's model (the SQL-tuned embedded one); None: `model`
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # guards `_key_locks`
    _key_locks: dict[str, threading.RLock] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, model: ChatModel, *, tuned_sql: bool = True) -> RouterResources:
        """The resources the `PRUNEKIT_*` settings describe, around `model`: what the service and LangGraph Studio
        run. The vector store opens when the rag route first runs. `tuned_sql`: the SQL route runs the embedded
        model with the SQL adapter (`PRUNEKIT_SQL_ADAPTER`, loaded on first use); False: `model` serves it too."""
        return cls(
            model,
            databases=settings.database_registry(),
            store_factory=partial(_open_vector_store, settings),
            sql_demos=settings.sql_demos,
            sql_model_factory=partial(build_sql_model, settings, model) if tuned_sql else None,
            default_collection=settings.rag_collection,
            code_execution=settings.code_execution,
        )

    def _once(self, key: str, make: Any) -> Any:
        """`make()` once per key. A lock per key: a slow first build (the SQL demonstrations index) holds back
        only the requests that need that object, and a built one is read without any lock."""
        if key in self._cache:
            return self._cache[key]
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.RLock())  # re-entrant: factories nest
        with key_lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def close(self) -> None:
        """Close what was opened on first use (the vector store this object built; a given one is the caller's)."""
        store = self._cache.pop("store", None)
        if store is not None:
            store.close()
        sql_model = self._cache.pop("sql_model", None)
        if sql_model is not None and sql_model is not self.model and hasattr(sql_model, "close"):
            sql_model.close()

    def encoder(self) -> Any:
        if self.embed is not None:
            return self.embed

        def make() -> Any:
            from prunekit.decoding.backends.embeddings import load_embedder

            return load_embedder()

        return self._once("embed", make)

    def store(self) -> Any:
        if self.vector_store is not None:
            return self.vector_store

        def make() -> Any:
            if self.store_factory is None:
                raise InvalidRequestError("prunekit-rag is not configured on this server (no vector store)")
            return self.store_factory()

        return self._once("store", make)

    def pruner(self) -> Any:
        def make() -> Any:
            if self.pruner_factory is not None:
                return self.pruner_factory()
            from prunekit.context_pruner import default_pruner

            return default_pruner()

        return self._once("pruner", make)

    def rag_graph(self) -> Any:
        def make() -> Any:
            from prunekit.app.graphs.rag import build_rag_graph

            return build_rag_graph(self.model, self.store(), self.pruner())

        return self._once("rag", make)

    def sql_agent(self) -> Any:
        def make() -> Any:
            from prunekit.nl2sql import NL2SQLAgent, demonstration_index

            # a small model needs examples: the Spider folder's when one is set, else the ones prunekit ships
            index = demonstration_index(self.sql_demos or None, self.encoder())
            return NL2SQLAgent(self.sql_model(), index=index, embed=self.encoder())

        return self._once("sql", make)

    def sql_model(self) -> ChatModel:
        """The SQL agent's model: the factory's (loaded on first use), else the chat model."""
        if self.sql_model_factory is None:
            return self.model
        return self._once("sql_model", self.sql_model_factory)

    def auto_router(self) -> AutoRouter:
        return self._once("auto", lambda: AutoRouter(self.encoder()))

    def has_collection(self, name: str) -> bool:
        try:
            return name in self.store().collections()
        except InvalidRequestError:
            return False


def _open_vector_store(settings: Settings) -> Any:
    from prunekit.app.rag.store import VectorStore
    from prunekit.decoding.backends.embeddings import load_embedder

    return VectorStore(load_embedder(), **settings.vector_store_location())


def build_router_graph(resources: RouterResources, checkpointer: Any = None) -> Any:
    """Compile the router graph (with a checkpointer, invoke it with a `thread_id`).

    >>> from langgraph.checkpoint.memory import InMemorySaver
    >>> from prunekit.decoding import ChatChunk, Usage
    >>> class Hello:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
    ...     name = "hello"
    ...     def stream(self, messages, params=None):
    ...         yield ChatChunk("Hello!", "stop", Usage(prompt_tokens=9, completion_tokens=2))
    >>> graph = build_router_graph(RouterResources(Hello()), checkpointer=InMemorySaver())
    >>> thread = {"configurable": {"thread_id": "t1"}}
    >>> state = {"messages": [{"role": "user", "content": "Hi"}], "params": {}, "route": "chat"}
    >>> graph.invoke(state, thread)["answer"]
    'Hello!'
    >>> len(graph.get_state(thread).values["messages"])  # the thread keeps the answered turn
    2
    """
    nodes = RouterNodes(resources)
    graph = StateGraph(RouterState)
    graph.add_node("route", nodes.route)
    for name, node in (("chat", nodes.chat), ("rag", nodes.rag), ("sql", nodes.sql), ("agents", nodes.agents)):
        graph.add_node(name, node)
        graph.add_edge(name, END)
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", lambda s: s["route"], {r: r for r in ROUTES})
    return graph.compile(checkpointer=checkpointer)


class RouterNodes:
    """The router graph's steps: `route` picks a route, each route answers and ends the run (`_finish`)."""

    def __init__(self, resources: RouterResources) -> None:
        self.resources = resources

    def route(self, state: RouterState) -> dict[str, Any]:
        """The requested route, or for `auto` the one `AutoRouter` picks among those this request can use."""
        requested = state.get("route") or "chat"
        if requested not in (*ROUTES, "auto"):
            raise InvalidRequestError(f"unknown route {requested!r}")
        if requested != "auto":
            return {"route": requested}
        candidates = ["chat", "agents"]
        collection = state.get("collection") or self.resources.default_collection
        if self.resources.has_collection(collection):
            candidates.append("rag")
        if state.get("database"):
            candidates.append("sql")
        chosen = self.resources.auto_router().choose(last_user_text(state["messages"]), candidates)
        get_stream_writer()({"progress": {"stage": "route", "route": chosen, "candidates": candidates}})
        return {"route": chosen}

    def chat(self, state: RouterState) -> dict[str, Any]:
        """The conversation, fitted to the model's context, answered by the model alone."""
        return {**answer_in_context(self.resources.model, state), "savings": {}}

    def rag(self, state: RouterState) -> dict[str, Any]:
        """The RAG graph on the request's collection; its events pass straight through."""
        write = get_stream_writer()
        sub_state = {
            "messages": state["messages"],
            "params": state.get("params", {}),
            "collection": state.get("collection") or self.resources.default_collection,
        }
        final: dict[str, Any] = {}
        for mode, payload in self.resources.rag_graph().stream(sub_state, stream_mode=["custom", "values"]):
            if mode == "custom":
                write(payload)  # answer deltas and progress events pass straight through
            else:
                final = payload
        answer, finish = final.get("answer", ""), final.get("finish_reason", "stop")
        usage, savings = Usage(**final.get("usage", {})), dict(final.get("savings", {}))
        details = {"citations": final.get("citations", []), "passages": final.get("marked", [])}
        return _finish(state, answer, usage, savings, details, finish=finish)

    def sql(self, state: RouterState) -> dict[str, Any]:
        """The NL2SQL agent on a database of the allow-list: the answer, the query and its first rows."""
        write = get_stream_writer()
        path = self.resources.databases.path(state.get("database"))
        question = last_user_text(state["messages"])
        write({"progress": {"stage": "sql", "database": state.get("database")}})
        result = self.resources.sql_agent().answer(question, path)
        repairs = sum(1 for c in result.calls if c.get("node") == "repair")
        write({"progress": {"stage": "executed", "sql": result.sql, "rows": len(result.rows), "error": result.error}})
        answer = result.answer or (f"The query failed: {result.error}" if result.error else "No answer.")
        if result.sql:
            answer += f"\n\n```sql\n{result.sql}\n```"
        write({"delta": answer})
        savings = {"sql_llm_calls": result.usage.calls, "sql_repair_calls": repairs}
        # columns, rows (the first 50, JSON-safe), rows_total, columns_total, rows_truncated
        details = {"sql": result.sql, **sql_table(result.columns, result.rows, result.truncated_reason)}
        details["error"] = result.error
        return _finish(state, answer, result.usage, savings, details)

    def agents(self, state: RouterState) -> dict[str, Any]:
        """The AGP-pruned agent team of the request's domain; savings: the agents and calls the pruner left out."""
        from prunekit.graph_pruning import get_pool, make_task, solve

        write = get_stream_writer()
        domain = state.get("domain") or "math"
        task = make_task(domain, last_user_text(state["messages"]))
        write({"progress": {"stage": "agents", "domain": domain}})
        run = solve(self.resources.model, task, domain, code_execution=self.resources.code_execution)
        write({"progress": {"stage": "team", "agents_kept": run["agents_kept"], "agents_total": run["agents_total"]}})
        answer = str(run["answer"])
        write({"delta": answer})
        usage = Usage(run["prompt_tokens"], run["completion_tokens"], run["llm_calls"])
        savings = {
            "agent_calls_avoided": run["agent_calls_avoided"],
            "agents_kept": run["agents_kept"],
            "agents_total": run["agents_total"],
        }
        details = {
            "graph": run["graph"],
            "team": agent_team(run, get_pool(domain).role_names),  # who ran, who was pruned, who reads whom
            "turns": run["turns"],
            "llm_calls": run["llm_calls"],
            "code_executed": run["code_executed"],
            "notes": run["notes"],
        }
        return _finish(state, answer, usage, savings, details)


def _finish(
    state: RouterState,
    answer: str,
    usage: Usage,
    savings: dict[str, int],
    details: dict[str, Any],
    *,
    finish: str = "stop",
) -> dict[str, Any]:
    """A route's final write; the thread stores the turn now, question and answer together."""
    return {
        "messages": commit(state.get("messages", []), [{"role": "assistant", "content": answer}]),
        "answer": answer,
        "finish_reason": finish,
        "usage": usage_state(usage),
        "savings": savings,
        "details": details,
    }
