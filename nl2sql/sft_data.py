"""Supervised data of LearNAT's first stage: the agent's own prompts on Spider *train*, answered with the gold.

LearNAT (arXiv 2504.02327) first fine-tunes the model on decomposed examples: a question, its sub-questions
with their sub-SQL, and the final SQL. We build those examples in exactly the prompts the agent sends at
inference (`nl2sql.prompts`), so the adapter learns the answer shapes the agent parses:

- `direct`: schema + question -> the gold SQL on one line (the agent's `draft` and `direct_skeleton` calls,
  and the single-shot baselines);
- `decompose`: schema + question -> `Sub-question i: ... / SQL: ...` per step of the gold SQL's AST
  decomposition (`nl2sql.decompose`), then `Final SQL: ...` (the agent's `decompose` call).

The schema is the agent's linked schema, plus any table or column the gold query needs that linking missed
(otherwise the target would name things the prompt never shows, teaching the model to invent names).
Demonstrations are retrieved as at inference, from *other* databases only (dev databases are never in train).

A slice of train databases is held out (`heldout_databases`) for choosing steps and learning rate; their
questions never become training examples. Dev is never read.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from prunekit.decoding.types import Message
from prunekit.nl2sql import prompts
from prunekit.nl2sql.decompose import decompose
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.jsonl_runs import read_records
from prunekit.nl2sql.retrieval import DemoIndex, TrainExample, load_train_examples
from prunekit.nl2sql.schema import Schema, link_schema, render_schema
from prunekit.nl2sql.sqlast import parse_sql

__all__ = ["FORMATS", "SFTExample", "build_sft_examples", "heldout_databases", "read_sft_examples"]

log = logging.getLogger(__name__)

FORMATS = ("direct", "decompose")


@dataclass(frozen=True)
class SFTExample:
    index: int  # the question's position in the training file
    db_id: str
    format: str  # one of FORMATS
    messages: list[Message]  # the prompt, as the agent sends it
    target: str  # the answer the model learns to write

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "db_id": self.db_id,
            "format": self.format,
            "messages": self.messages,
            "target": self.target,
        }


def heldout_databases(db_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A seeded `fraction` of the distinct databases (at least one), sorted: their questions are for choices only."""
    distinct = sorted(set(db_ids))
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = max(1, round(fraction * len(distinct)))
    return sorted(random.Random(seed).sample(distinct, n))


def _gold_names(sql: str) -> tuple[set[str], set[str]]:
    """Lower-case table and column names the gold query mentions."""
    tree = parse_sql(sql, spider_strings=True)
    tables = {t.name.lower() for t in tree.find_all(exp.Table) if t.name}
    columns = {c.name.lower() for c in tree.find_all(exp.Column) if c.name}
    return tables, columns


def training_schema(schema: Schema, linked: Schema, gold_sql: str) -> Schema:
    """The linked schema widened by the tables and columns the gold query uses (order: linked first)."""
    tables, columns = _gold_names(gold_sql)
    keep = [t.name for t in linked.tables]
    keep += [
        t.name for t in schema.tables if t.name.lower() in tables and t.name.lower() not in {k.lower() for k in keep}
    ]
    per_table: dict[str, list[str]] = {}
    for name in keep:
        full = schema.table(name)
        assert full is not None
        shown = linked.table(name)
        shown_cols = {c.name.lower() for c in shown.columns} if shown is not None else set(full.primary_keys)
        per_table[name.lower()] = [c.name for c in full.columns if c.name.lower() in shown_cols | columns]
    return schema.subset(keep, per_table)


def _examples_for(
    ex: TrainExample, schema_text: str, demos: Sequence[Any], formats: Sequence[str], budget: prompts.PromptBudget
) -> Iterator[SFTExample]:
    gold = prompts.demo_sql(ex.query)
    if "direct" in formats:
        messages = prompts.direct_messages(schema_text, ex.question, demos, budget=budget)
        yield SFTExample(ex.index, ex.db_id, "direct", messages, gold)
    if "decompose" in formats:
        try:
            steps = [(s.question, s.sql) for s in decompose(ex.query, spider_strings=True)][-6:]
        except (SQLError, ValueError, RecursionError):
            steps = []
        steps = steps or [("What does the question ask for?", ex.query)]  # as `prompts.demo_steps` shows such a demo
        messages = prompts.decompose_messages(schema_text, ex.question, demos, budget=budget)
        yield SFTExample(ex.index, ex.db_id, "decompose", messages, prompts.render_steps(steps, ex.query))


def build_sft_examples(
    data_dir: str | Path,
    out_path: str | Path,
    *,
    heldout: Sequence[str],
    index: DemoIndex,
    embed: Any,
    formats: Sequence[str] = FORMATS,
    k_demos: int = 3,
    n_examples: int = 2,
    progress: bool = True,
) -> dict[str, int]:
    """Write the supervised examples of every training question outside `heldout` to `out_path` (JSONL).

    Resumable: questions already in the file are skipped. Returns counts (written, skipped, unparsable gold).
    """
    from prunekit.nl2sql.caches import DatabaseCache

    data_dir, out_path = Path(data_dir), Path(out_path)
    held = set(heldout)
    examples = [e for e in load_train_examples(data_dir / "train_spider_slim.json") if e.db_id not in held]
    done = {e.index for e in read_sft_examples(out_path)} if out_path.is_file() else set()
    # a seeded shuffle: a file cut short (a stopped run) still covers every database
    todo = [e for e in examples if e.index not in done]
    random.Random(0).shuffle(todo)
    databases = DatabaseCache(n_examples)
    budget = prompts.PromptBudget()
    counts = {"questions": len(examples), "already_done": len(done), "written": 0, "bad_gold": 0, "no_database": 0}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="supervised examples", unit="question")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("a") as out:
        for ex in todo:
            if bar is not None:
                bar.update(1)
            db_path = data_dir / "database" / ex.db_id / f"{ex.db_id}.sqlite"
            if not db_path.is_file():  # the slim Spider copy lacks a few train databases
                counts["no_database"] += 1
                continue
            ctx = databases.get(db_path)
            linked = link_schema(ex.question, ctx.schema, embed, values=ctx.values).schema
            try:
                schema = training_schema(ctx.schema, linked, ex.query)
            except SQLError as err:
                counts["bad_gold"] += 1
                log.debug("skipping train question %d: %s", ex.index, err)
                continue
            text = render_schema(schema)
            if len(text) > budget.max_schema_chars:
                text = render_schema(schema, examples=False)
            demos = index.retrieve(ex.question, k_demos, schema=ctx.schema, exclude_db=ex.db_id)
            for item in _examples_for(ex, text, demos, formats, budget):
                out.write(json.dumps(item.to_dict()) + "\n")
                counts["written"] += 1
            out.flush()
    if bar is not None:
        bar.close()
    return counts


def read_sft_examples(path: str | Path) -> list[SFTExample]:
    """The examples of a JSONL file written by `build_sft_examples` (a torn last line is ignored)."""
    return [SFTExample(**data) for data in read_records(path)]
