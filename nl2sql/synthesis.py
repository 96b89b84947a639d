"""Decomposition synthesis (training time): a Monte Carlo tree search over sub-question/sub-SQL steps.

LearNAT (arXiv 2504.02327) synthesises step-by-step decompositions of training questions with a tree
search: an LLM proposes the next (sub-question, sub-SQL); a step whose AST is not a partial subtree of
the gold AST is pruned (`decompose.is_partial_subtree`); a kept step is rewarded by its AST closeness
to the gold (`ast_margin.step_reward`). Unlike the released code, whose MCTS expands each node once
into a single child (a chain), every expansion here asks for `n_children` proposals (one greedy, the
rest sampled, duplicates merged), so siblings exist to compare:

1. selection: from the root, the child with the best UCB score `Q + c * sqrt(ln N / n)` among the
   children that can still grow (unvisited first);
2. expansion: `n_children` proposals for the next step, conditioned on the question, the schema, the
   steps so far and (as LearNAT's teacher is) the gold SQL;
3. evaluation: each child is pruned (invalid: unparsable or not a partial subtree; value = its parent's
   reward, LearNAT's convention), complete (equal to the gold up to normalisation; reward 1), or kept
   with `step_reward(step, gold)`; the expansion's value is its best child's;
4. backpropagation of that value along the path.

Outputs per question (`search_question`): the nodes, the best trajectory (the shallowest complete
path, else the path to the best-rewarded node) and the preference pairs: at every expanded node,
a kept child (chosen) against a sibling (rejected) whose reward is lower by at least `min_margin`,
with `r_w`, `r_l` and the prompt *without* the gold SQL (what the model sees at inference). `synthesize`
runs the search over a training file, appends one JSON line per question and resumes where a previous
run stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunekit.decoding.errors import BackendError, InvalidRequestError
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams, Message
from prunekit.nl2sql import prompts
from prunekit.nl2sql.ast_margin import step_reward
from prunekit.nl2sql.decompose import is_partial_subtree
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.jsonl_runs import append_records, drop_torn_tail, read_records
from prunekit.nl2sql.schema import Schema, render_schema
from prunekit.nl2sql.sqlast import canonical_sql

__all__ = [
    "PreferencePair",
    "SearchConfig",
    "SearchNode",
    "SearchResult",
    "evaluate_step",
    "load_pairs",
    "read_done",
    "search_question",
    "synthesize_file",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """Search budget and scoring. LearNAT: UCB c = 1.41, depth 5, 50 simulations."""

    n_children: int = 3  # proposals per expansion (1 greedy + n-1 sampled)
    simulations: int = 12  # selection-expansion-backpropagation rounds per question
    max_depth: int = 6
    c_ucb: float = 1.41
    temperature: float = 0.8  # sampling temperature of the non-greedy proposals
    max_tokens: int = 160
    min_margin: float = 0.05  # smallest r_w - r_l kept as a preference pair
    show_gold: bool = True  # condition proposals on the gold SQL (the prompt stored for DPO never has it)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_children < 1 or self.simulations < 1 or self.max_depth < 1:
            raise InvalidRequestError("n_children, simulations and max_depth must be >= 1")
        if not 0 < self.min_margin <= 1:
            raise InvalidRequestError(f"min_margin must be in (0, 1], got {self.min_margin}")


@dataclass
class SearchNode:
    id: int
    parent: int | None
    depth: int
    sub_question: str = ""
    sql: str | None = None
    valid: bool = True  # kept: a partial subtree of the gold
    complete: bool = False  # equal to the gold up to normalisation
    reward: float = 0.0  # step_reward if kept, 1 if complete, the parent's reward if pruned
    visits: int = 0
    value_sum: float = 0.0
    children: list[int] = field(default_factory=list)
    expanded: bool = False

    @property
    def terminal(self) -> bool:
        return (not self.valid) or self.complete

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


@dataclass(frozen=True)
class PreferencePair:
    """A chosen and a rejected next step for the same prompt, with their rewards (r_w > r_l)."""

    messages: list[Message]
    chosen: str
    rejected: str
    r_w: float
    r_l: float

    @property
    def margin(self) -> float:
        return self.r_w - self.r_l

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "margin": round(self.margin, 6)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreferencePair:
        return cls(list(data["messages"]), data["chosen"], data["rejected"], float(data["r_w"]), float(data["r_l"]))


@dataclass
class SearchResult:
    index: int
    db_id: str
    question: str
    gold: str
    nodes: list[SearchNode]
    trajectory: list[tuple[str, str]]
    complete: bool
    pairs: list[PreferencePair]
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "db_id": self.db_id,
            "question": self.question,
            "gold": self.gold,
            "complete": self.complete,
            "trajectory": [list(t) for t in self.trajectory],
            "pairs": [p.to_dict() for p in self.pairs],
            "nodes": [asdict(n) for n in self.nodes],
            "llm_calls": self.llm_calls,
            "tokens": self.tokens,
            "seconds": self.seconds,
        }


def evaluate_step(sql: str | None, gold: str, parent_reward: float) -> tuple[bool, bool, float]:
    """(kept, complete, reward) of a proposed step SQL against the gold (see the module doc)."""
    if not sql:
        return False, False, parent_reward
    try:
        if canonical_sql(sql) == canonical_sql(gold):
            return True, True, 1.0
        if not is_partial_subtree(sql, gold):
            return False, False, parent_reward
        return True, False, float(step_reward(sql, gold))
    except (SQLError, ValueError, RecursionError):
        return False, False, parent_reward


class _Search:
    def __init__(
        self,
        model: ChatModel,
        question: str,
        gold: str,
        schema_text: str,
        config: SearchConfig,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.model, self.question, self.gold, self.schema_text = model, question, gold, schema_text
        self.config, self.pool = config, pool
        self.nodes = [SearchNode(0, None, 0)]
        self.calls = 0
        self.tokens = 0

    def path(self, node: SearchNode) -> list[SearchNode]:
        out = []
        while node.parent is not None:
            out.append(node)
            node = self.nodes[node.parent]
        return out[::-1]

    def history(self, node: SearchNode) -> list[tuple[str, str]]:
        return [(n.sub_question, n.sql or "") for n in self.path(node)]

    def can_grow(self, node: SearchNode) -> bool:
        if node.terminal or node.depth >= self.config.max_depth:
            return False
        return not node.expanded or any(self.can_grow(self.nodes[c]) for c in node.children)

    def select(self) -> list[SearchNode]:
        node, trail = self.nodes[0], [self.nodes[0]]
        while node.expanded:
            growable = [self.nodes[c] for c in node.children if self.can_grow(self.nodes[c])]
            if not growable:
                break
            unvisited = [c for c in growable if c.visits == 0]
            if unvisited:
                node = unvisited[0]
            else:
                log_n = math.log(max(node.visits, 1))
                node = max(growable, key=lambda c: c.q + self.config.c_ucb * math.sqrt(log_n / c.visits))
            trail.append(node)
        return trail

    def propose(self, node: SearchNode) -> list[tuple[str, str | None]]:
        gold = self.gold if self.config.show_gold else None
        messages = prompts.next_step_messages(self.schema_text, self.question, self.history(node), gold_sql=gold)

        def one(i: int) -> tuple[str, str | None, int]:
            params = GenerationParams(
                max_tokens=self.config.max_tokens,
                temperature=0.0 if i == 0 else self.config.temperature,
                seed=self.config.seed * 1_000_003 + node.id * 101 + i,
                stop=("\n\n", "Sub-question:\nSub"),
            )
            try:
                result = self.model.chat(messages, params)
            except (InvalidRequestError, BackendError) as err:
                log.warning("a proposal failed: %s", err)
                return "", None, 0
            sub_q, sql = prompts.parse_next_step(result.text)
            return sub_q, sql, result.usage.total_tokens

        outs = list(self.pool.map(one, range(self.config.n_children)))
        self.calls += len(outs)
        self.tokens += sum(t for _, _, t in outs)
        return [(q, s) for q, s, _ in outs]

    def expand(self, node: SearchNode) -> float:
        node.expanded = True
        seen: set[str] = set()
        best = 0.0
        for sub_q, sql in self.propose(node):
            key = sql or ""
            with contextlib.suppress(SQLError, ValueError, RecursionError):
                key = canonical_sql(sql) if sql else ""
            if key in seen:
                continue  # the same step twice is one child
            seen.add(key)
            valid, complete, reward = evaluate_step(sql, self.gold, node.reward)
            child = SearchNode(len(self.nodes), node.id, node.depth + 1, sub_q, sql, valid, complete, reward)
            self.nodes.append(child)
            node.children.append(child.id)
            if valid:
                best = max(best, reward)
        return best

    def run(self) -> None:
        for _ in range(self.config.simulations):
            trail = self.select()
            leaf = trail[-1]
            if not self.can_grow(leaf):
                break  # the whole tree is pruned, complete or at the depth limit
            value = self.expand(leaf)
            for n in trail:
                n.visits += 1
                n.value_sum += value

    def trajectory(self) -> tuple[list[SearchNode], bool]:
        complete = [n for n in self.nodes if n.complete]
        if complete:
            best = min(complete, key=lambda n: (n.depth, n.id))
            return self.path(best), True
        kept = [n for n in self.nodes[1:] if n.valid]
        if not kept:
            return [], False
        best = max(kept, key=lambda n: (n.reward, -n.depth, -n.id))
        return self.path(best), False

    def pairs(self) -> list[PreferencePair]:
        out: list[PreferencePair] = []
        for parent in self.nodes:
            children = [self.nodes[c] for c in parent.children if self.nodes[c].sql]
            if len(children) < 2:
                continue
            messages = prompts.next_step_messages(self.schema_text, self.question, self.history(parent))
            for w in children:
                if not w.valid:
                    continue
                for lose in children:
                    if lose is w or w.reward - lose.reward < self.config.min_margin:
                        continue
                    out.append(
                        PreferencePair(
                            messages,
                            prompts.render_step(w.sub_question or self.question, w.sql or ""),
                            prompts.render_step(lose.sub_question or self.question, lose.sql or ""),
                            round(w.reward, 6),
                            round(lose.reward, 6),
                        )
                    )
        return out


def search_question(
    model: ChatModel,
    question: str,
    gold_sql: str,
    schema: Schema | str,
    *,
    config: SearchConfig | None = None,
    index: int = -1,
    db_id: str = "",
    pool: ThreadPoolExecutor | None = None,
) -> SearchResult:
    """Run the tree search on one training question (see the module doc)."""
    config = config or SearchConfig()
    schema_text = schema if isinstance(schema, str) else render_schema(schema)
    start = time.monotonic()
    own = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=config.n_children)
    try:
        search = _Search(model, question, gold_sql, schema_text, config, pool)
        search.run()
    finally:
        if own:
            pool.shutdown()
    path, complete = search.trajectory()
    return SearchResult(
        index=index,
        db_id=db_id,
        question=question,
        gold=gold_sql,
        nodes=search.nodes,
        trajectory=[(n.sub_question, n.sql or "") for n in path],
        complete=complete,
        pairs=search.pairs(),
        llm_calls=search.calls,
        tokens=search.tokens,
        seconds=round(time.monotonic() - start, 3),
    )


def read_done(path: str | Path) -> set[int]:
    """Indices already searched in a trajectories file (a torn last line is ignored)."""
    done: set[int] = set()
    for record in read_records(path):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            done.add(int(record["index"]))
    return done


def synthesize_file(
    model: ChatModel,
    examples: Iterable[tuple[int, str, str, str]],
    schema_of: Callable[[str], Schema | str],
    out_path: str | Path,
    *,
    config: SearchConfig | None = None,
    concurrency: int = 2,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Search every `(index, db_id, question, gold_sql)` and append one JSON line each to `out_path`.

    With `resume`, indices already in the file are skipped (a run can stop at any time). Returns
    counts: searched, skipped, complete, pairs, llm_calls, tokens.
    """
    config = config or SearchConfig()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume and out.exists():
        out.unlink()
    drop_torn_tail(out)
    done = read_done(out)
    todo = [e for e in examples if e[0] not in done]
    stats = {"searched": 0, "skipped": len(done), "complete": 0, "pairs": 0, "llm_calls": 0, "tokens": 0}
    proposal_pool = ThreadPoolExecutor(max_workers=max(1, concurrency) * config.n_children)

    def work(example: tuple[int, str, str, str]) -> dict[str, Any]:
        idx, db_id, question, gold = example
        result = search_question(
            model, question, gold, schema_of(db_id), config=config, index=idx, db_id=db_id, pool=proposal_pool
        )
        return result.to_dict()

    def count(record: dict[str, Any]) -> None:
        stats["searched"] += 1
        stats["complete"] += int(record["complete"])
        stats["pairs"] += len(record["pairs"])
        stats["llm_calls"] += record["llm_calls"]
        stats["tokens"] += record["tokens"]

    try:
        append_records(
            todo,
            work,
            out,
            on_record=count,
            concurrency=concurrency,
            desc="synthesising decompositions",
            unit="question",
            progress=progress,
        )
    finally:
        proposal_pool.shutdown()
    return stats


def load_pairs(paths: Sequence[str | Path]) -> list[PreferencePair]:
    """Every preference pair of one or more trajectories files."""
    return [
        PreferencePair.from_dict(p) for path in paths for record in read_records(path) for p in record.get("pairs", [])
    ]
