"""Preference pairs mined from the tuned model's own answers (LearNAT's second stage, training time).

LearNAT (arXiv 2504.02327) follows its supervised stage with margin-aware DPO on the model's own good and
bad answers, each scored by its AST distance to the gold. Here the prompts are the supervised stage's
(`nl2sql.sft_data`: the agent's own direct and decomposition prompts on Spider train), and the answers are
sampled from the model that stage produced:

- each prompt gets `samples` answers at `temperature`;
- an answer's reward is 1.0 when its final SQL returns the gold's rows on the database (as a bag, read-only,
  `nl2sql.candidates`), else LearNAT's AST step reward against the gold (`ast_margin.step_reward`) scaled
  by `wrong_scale`, so that a wrong query never ties a right one; an answer that writes no query gets 0;
- chosen is the first right answer the model wrote itself, else the gold answer (the supervised target);
  rejected are up to `pairs_per_prompt` distinct wrong answers, each one pair; a prompt the model always
  answers right gives no pair.

One JSON line per prompt (its samples with their rewards, and its pairs) goes to the output file, which a
rerun continues; `synthesis.load_pairs` reads the pairs back.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.protocol import ChatModel
from prunekit.decoding.types import GenerationParams
from prunekit.nl2sql import prompts
from prunekit.nl2sql.ast_margin import step_reward
from prunekit.nl2sql.candidates import Candidate, execute_candidates, result_signature
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.jsonl_runs import append_records, drop_torn_tail, read_records
from prunekit.nl2sql.sft_data import SFTExample
from prunekit.nl2sql.synthesis import PreferencePair

__all__ = [
    "MiningConfig",
    "answer_sql",
    "choose_prompts",
    "mine_file",
    "mine_prompt",
    "mined_prompts",
    "reward_answer",
    "summarize_file",
]


@dataclass(frozen=True)
class MiningConfig:
    """How many answers to sample per prompt, and how they become pairs."""

    samples: int = 4
    temperature: float = 0.8
    max_tokens_direct: int = 120  # the agent's own limits (`AgentConfig.max_tokens_sql` / `_steps`)
    max_tokens_decompose: int = 256
    pairs_per_prompt: int = 2
    wrong_scale: float = 0.9  # a wrong query's AST reward is scaled below a right query's 1.0
    exec_timeout_s: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.pairs_per_prompt < 1:
            raise InvalidRequestError("samples and pairs_per_prompt must be >= 1")
        if not 0.0 < self.wrong_scale < 1.0:
            raise InvalidRequestError(f"wrong_scale must be in (0, 1), got {self.wrong_scale}")


def answer_sql(text: str, fmt: str) -> str | None:
    """The final query of an answer: the first query of a direct answer, `Final SQL` of a decomposition."""
    if fmt == "direct":
        return prompts.extract_sql(text)
    _, final = prompts.parse_steps(text)
    return final or prompts.extract_sql(text, which="last")


def reward_answer(
    sql: str | None, gold_sql: str, gold_signature: tuple[Any, ...] | None, db_path: Path, config: MiningConfig
) -> float:
    """1.0 when `sql` returns the gold's result, else `wrong_scale` times its AST step reward (0 without SQL)."""
    if sql is None:
        return 0.0
    candidate = Candidate("sample", sql)
    execute_candidates(db_path, [candidate], config.exec_timeout_s)
    if (
        candidate.status != "error"
        and gold_signature is not None
        and result_signature(candidate.rows) == gold_signature
    ):
        return 1.0
    try:
        return config.wrong_scale * float(step_reward(sql, gold_sql))
    except (SQLError, ValueError, RecursionError):  # parses for SQLite but not for the AST reward
        return 0.0


def _gold_signature(gold_sql: str, db_path: Path, config: MiningConfig) -> tuple[Any, ...] | None:
    gold = Candidate("gold", gold_sql)
    execute_candidates(db_path, [gold], config.exec_timeout_s)
    return None if gold.status == "error" else result_signature(gold.rows)


def mine_prompt(
    model: ChatModel, example: SFTExample, gold_sql: str, db_path: Path, config: MiningConfig, seed: int
) -> dict[str, Any]:
    """Sample, score and pair the answers to one prompt; the JSON record written for it."""
    max_tokens = config.max_tokens_direct if example.format == "direct" else config.max_tokens_decompose
    gold_signature = _gold_signature(gold_sql, db_path, config)
    samples: list[dict[str, Any]] = []
    for i in range(config.samples):
        params = GenerationParams(max_tokens=max_tokens, temperature=config.temperature, seed=seed + i)
        text = model.chat(example.messages, params).text.strip()
        sql = answer_sql(text, example.format)
        reward = reward_answer(sql, gold_sql, gold_signature, db_path, config)
        samples.append({"text": text, "sql": sql, "reward": round(reward, 6)})
    right = [s for s in samples if s["reward"] >= 1.0]
    chosen = right[0]["text"] if right else example.target
    wrong: list[dict[str, Any]] = []
    for s in samples:
        if s["reward"] < 1.0 and s["text"] and s["text"] not in (w["text"] for w in wrong):
            wrong.append(s)
    pairs = [
        PreferencePair(example.messages, chosen, w["text"], 1.0, w["reward"]) for w in wrong[: config.pairs_per_prompt]
    ]
    return {
        "index": example.index,
        "db_id": example.db_id,
        "format": example.format,
        "gold": gold_sql,
        "gold_executes": gold_signature is not None,
        "samples": samples,
        "pairs": [p.to_dict() for p in pairs],
    }


def choose_prompts(
    examples: Sequence[SFTExample], n: int, formats: Sequence[str], weights: Sequence[float], seed: int
) -> list[SFTExample]:
    """A seeded sample of `n` prompts drawn across `formats` in proportion to `weights`, one format per question."""
    if len(formats) != len(weights) or not formats:
        raise InvalidRequestError("formats and weights must be non-empty and of the same length")
    rng = random.Random(seed)
    by_question: dict[tuple[int, str], SFTExample] = {(e.index, e.format): e for e in examples}
    questions = sorted({e.index for e in examples})
    rng.shuffle(questions)
    chosen: list[SFTExample] = []
    for index in questions:
        fmt = rng.choices(list(formats), weights=list(weights))[0]
        if (index, fmt) in by_question:
            chosen.append(by_question[(index, fmt)])
        if len(chosen) == n:
            break
    return chosen


def mined_prompts(path: str | Path) -> set[tuple[int, str]]:
    """(question index, format) of the prompts already in a pairs file."""
    done: set[tuple[int, str]] = set()
    for record in read_records(path):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            done.add((int(record["index"]), str(record["format"])))
    return done


def summarize_file(path: str | Path) -> dict[str, Any]:
    """What a pairs file holds: prompts, pairs, prompts with a right sample, prompts always answered right."""
    records = read_records(path)
    return {
        "prompts": len(records),
        "pairs": sum(len(r["pairs"]) for r in records),
        "some_sample_right": sum(any(s["reward"] >= 1.0 for s in r["samples"]) for r in records),
        "every_sample_right": sum(all(s["reward"] >= 1.0 for s in r["samples"]) for r in records),
        "samples": sum(len(r["samples"]) for r in records),
    }


def mine_file(
    model: ChatModel,
    examples: Sequence[SFTExample],
    gold_of: Callable[[int], str],
    db_path_of: Callable[[str], Path],
    out_path: str | Path,
    *,
    config: MiningConfig | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> dict[str, int]:
    """Mine every prompt of `examples` not yet in `out_path` (JSONL, appended); returns the counts."""
    config = config or MiningConfig()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(out)
    done = mined_prompts(out)
    todo = [e for e in examples if (e.index, e.format) not in done]
    stats = {"mined": 0, "skipped": len(examples) - len(todo), "pairs": 0, "self_chosen": 0, "all_right": 0}
    began = time.monotonic()

    def work(example: SFTExample) -> dict[str, Any]:
        seed = config.seed + 1000 * example.index
        return mine_prompt(model, example, gold_of(example.index), db_path_of(example.db_id), config, seed)

    def count(record: dict[str, Any]) -> None:
        right = [s["reward"] >= 1.0 for s in record["samples"]]
        stats["mined"] += 1
        stats["pairs"] += len(record["pairs"])
        stats["self_chosen"] += int(any(right) and bool(record["pairs"]))
        stats["all_right"] += int(all(right))

    append_records(
        todo,
        work,
        out,
        on_record=count,
        concurrency=concurrency,
        desc="mining preference pairs",
        unit="prompt",
        progress=progress,
    )
    stats["seconds"] = round(time.monotonic() - began)
    return stats
