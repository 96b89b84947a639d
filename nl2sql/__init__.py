"""nl2sql: LearNAT's LLM-free core: safe SQL execution, schemas and linking, AST decomposition and margins.

- `safe_exec`: run untrusted SQL on SQLite read-only, one SELECT, under a timeout and a row cap.
- `schema`: introspect SQLite / read Spider's tables.json, render schema text, link a question to it.
- `decompose`: a query as ordered, runnable subtasks; `is_partial_subtree` for LearNAT's pruning.
- `ast_margin`: normalised tree edit distance (zss), `ast_similarity`, LearNAT's `step_reward`.
- `sqlast`: the sqlglot helpers (parsing, Spider strings, normalisation) the others share.

LearNAT's LLM side (arXiv 2504.02327), imported on first use (LangGraph is heavy to import):

- `retrieval`: `DemoIndex` of decomposed training demonstrations (masked question + SQL skeleton);
  `demonstration_index` (`builtin_demos`) picks the one to use: a Spider folder's, else the builtin examples.
- `prompts`: compact prompts for small models, and robust SQL parsing of their output.
- `agent`: the LangGraph agent (`build_nl2sql_graph`, `NL2SQLAgent`, `answer_question`), configured by
  `AgentConfig` (`agent_config`), answering an `NL2SQLResult` (`result`); its parts: `candidates` (safe
  execution and choice by agreement), `identifiers` (repair of unknown names), `caches` (per-database contexts).
- `baselines`: `single_shot` and `single_shot_demos` through the agent's code path.

Training (`sft_data`, `sft`, `pair_mining`, `synthesis`, `dpo`, `train`) is never imported from here: import those
modules directly.
"""

from __future__ import annotations

from typing import Any

from prunekit.nl2sql.ast_margin import ast_similarity, step_reward, tree_edit_distance
from prunekit.nl2sql.decompose import Subtask, decompose, is_partial_subtree
from prunekit.nl2sql.errors import (
    DatabaseNotFoundError,
    NL2SQLError,
    SQLError,
    SQLExecutionError,
    SQLParseError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from prunekit.nl2sql.safe_exec import QueryResult, SafeDatabase, SafeExecConfig, check_sql, execute_sql
from prunekit.nl2sql.schema import (
    Column,
    ForeignKey,
    LinkedSchema,
    Schema,
    Table,
    ValueIndex,
    introspect_sqlite,
    link_schema,
    load_spider_tables,
    render_schema,
    with_examples,
)
from prunekit.nl2sql.sqlast import canonical_sql, normalize, parse_sql

# name -> module, loaded on first attribute access (PEP 562)
_LAZY = {
    "AgentConfig": "prunekit.nl2sql.agent_config",
    "NL2SQLAgent": "prunekit.nl2sql.agent",
    "NL2SQLResult": "prunekit.nl2sql.result",
    "answer_question": "prunekit.nl2sql.agent",
    "build_nl2sql_graph": "prunekit.nl2sql.agent",
    "DemoIndex": "prunekit.nl2sql.retrieval",
    "demonstration_index": "prunekit.nl2sql.builtin_demos",
    "Demonstration": "prunekit.nl2sql.retrieval",
    "mask_question": "prunekit.nl2sql.retrieval",
    "sql_skeleton": "prunekit.nl2sql.retrieval",
    "extract_sql": "prunekit.nl2sql.prompts",
    "run_baseline": "prunekit.nl2sql.baselines",
    "single_shot": "prunekit.nl2sql.baselines",
    "single_shot_demos": "prunekit.nl2sql.baselines",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nl2sql' has no attribute {name!r}")


__all__ = [
    "AgentConfig",
    "Column",
    "DatabaseNotFoundError",
    "DemoIndex",
    "Demonstration",
    "ForeignKey",
    "LinkedSchema",
    "NL2SQLAgent",
    "NL2SQLError",
    "NL2SQLResult",
    "QueryResult",
    "SQLError",
    "SQLExecutionError",
    "SQLParseError",
    "SQLTimeoutError",
    "SafeDatabase",
    "SafeExecConfig",
    "Schema",
    "Subtask",
    "Table",
    "UnsafeSQLError",
    "ValueIndex",
    "answer_question",
    "ast_similarity",
    "build_nl2sql_graph",
    "canonical_sql",
    "check_sql",
    "decompose",
    "demonstration_index",
    "execute_sql",
    "extract_sql",
    "introspect_sqlite",
    "is_partial_subtree",
    "link_schema",
    "load_spider_tables",
    "mask_question",
    "normalize",
    "parse_sql",
    "render_schema",
    "run_baseline",
    "single_shot",
    "single_shot_demos",
    "sql_skeleton",
    "step_reward",
    "tree_edit_distance",
    "with_examples",
]
