"""The baselines LearNAT's agent is judged against, through the agent's own code path.

LearNAT (arXiv 2504.02327) compares decomposed inference with direct prompting on the same model.
Both baselines make exactly one greedy call with the prompt builders, the SQL parsing and the safe
execution of the agent (`NL2SQLAgent.chat_sql` / `.execute`), and return the same `NL2SQLResult`:

- `single_shot`: the whole schema (with example values) and the question -> one SQL;
- `single_shot_demos`: the same, after the k most similar training examples as chat turns
  (question -> SQL, no decomposition), retrieved by masked-question similarity.

Neither links the schema, decomposes or repairs: those are what the agent adds.
"""

from __future__ import annotations

import time
from pathlib import Path

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql import prompts
from prunekit.nl2sql.agent import NL2SQLAgent
from prunekit.nl2sql.caches import resolve_database
from prunekit.nl2sql.candidates import Candidate
from prunekit.nl2sql.result import NL2SQLResult, template_answer
from prunekit.nl2sql.schema import render_schema

__all__ = ["BASELINES", "run_baseline", "single_shot", "single_shot_demos"]

BASELINES = ("single_shot", "single_shot_demos")


def run_baseline(agent: NL2SQLAgent, method: str, question: str, db_path: str | Path) -> NL2SQLResult:
    """One baseline (`single_shot` or `single_shot_demos`) with the agent's model, index and caches."""
    if method not in BASELINES:
        raise InvalidRequestError(f"unknown baseline {method!r}; choose one of {BASELINES}")
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequestError("the question is empty")
    path = resolve_database(db_path)
    start = time.monotonic()
    ctx = agent.databases.get(path)
    demos = []
    if method == "single_shot_demos":
        if agent.index is None:
            raise InvalidRequestError("single_shot_demos needs a demonstration index (DemoIndex.from_spider)")
        demos = agent.index.retrieve(question, agent.config.k_demos, schema=ctx.schema)
    messages = prompts.direct_messages(render_schema(ctx.schema), question.strip(), demos, budget=agent.config.budget)
    sql, record = agent.chat_sql(method, messages)
    result = NL2SQLResult(question=question, db_path=str(path), sql=sql, calls=[record], method=method)
    result.demos = [d.index for d in demos]
    if sql is None:
        result.error = "the model wrote no SQL query"
    else:
        candidate = Candidate(method, sql)
        agent.execute(path, [candidate])
        result.candidates = [candidate.summary()]
        result.columns = candidate.columns
        result.rows = candidate.rows[: agent.config.row_cap]
        result.error = candidate.error
        result.truncated_reason = candidate.truncated_reason or None
        result.answer = template_answer(candidate.columns, candidate.rows) if candidate.status != "error" else ""
    result.seconds = round(time.monotonic() - start, 3)
    return result


def single_shot(question: str, db_path: str | Path, agent: NL2SQLAgent) -> NL2SQLResult:
    """Schema + question -> SQL in one call."""
    return run_baseline(agent, "single_shot", question, db_path)


def single_shot_demos(question: str, db_path: str | Path, agent: NL2SQLAgent) -> NL2SQLResult:
    """Schema + retrieved demonstrations + question -> SQL in one call."""
    return run_baseline(agent, "single_shot_demos", question, db_path)
