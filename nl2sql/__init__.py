"""nl2sql: LearNAT's LLM-free core: safe SQL execution, schemas and linking, AST decomposition and margins.

- `safe_exec`: run untrusted SQL on SQLite read-only, one SELECT, under a timeout and a row cap.
- `schema`: introspect SQLite / read Spider's tables.json, render schema text, link a question to it.
- `decompose`: a query as ordered, runnable subtasks; `is_partial_subtree` for LearNAT's pruning.
- `ast_margin`: normalised tree edit distance (zss), `ast_similarity`, LearNAT's `step_reward`.
- `sqlast`: the sqlglot helpers (parsing, Spider strings, normalisation) the others share.
"""

from __future__ import annotations

from nl2sql.ast_margin import ast_similarity, step_reward, tree_edit_distance
from nl2sql.decompose import Subtask, decompose, is_partial_subtree
from nl2sql.errors import (
    DatabaseNotFoundError,
    NL2SQLError,
    SQLError,
    SQLExecutionError,
    SQLParseError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from nl2sql.safe_exec import QueryResult, SafeDatabase, SafeExecConfig, check_sql, execute_sql
from nl2sql.schema import (
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
from nl2sql.sqlast import canonical_sql, normalize, parse_sql

__all__ = [
    "Column",
    "DatabaseNotFoundError",
    "ForeignKey",
    "LinkedSchema",
    "NL2SQLError",
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
    "ast_similarity",
    "canonical_sql",
    "check_sql",
    "decompose",
    "execute_sql",
    "introspect_sqlite",
    "is_partial_subtree",
    "link_schema",
    "load_spider_tables",
    "normalize",
    "parse_sql",
    "render_schema",
    "step_reward",
    "tree_edit_distance",
    "with_examples",
]
