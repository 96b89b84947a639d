"""Preference pairs from a model's own sampled answers, scored by execution and AST margin on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.pair_mining import (
    MiningConfig,
    answer_sql,
    choose_prompts,
    mine_file,
    mine_prompt,
    reward_answer,
    summarize_file,
)
from prunekit.nl2sql.sft_data import SFTExample
from prunekit.nl2sql.synthesis import load_pairs

from .fakes import ScriptedModel
from .toydb import make_toy_db

GOLD = "SELECT count(*) FROM singer WHERE age > 30"
PROMPT = [{"role": "user", "content": "Question: How many singers are older than 30?\nWrite the SQLite query."}]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_db(tmp_path_factory.mktemp("db") / "concert.sqlite")


def example(index: int = 0, fmt: str = "direct") -> SFTExample:
    target = (
        GOLD if fmt == "direct" else f"Sub-question 1: Which singers?\nSQL: SELECT * FROM singer\nFinal SQL: {GOLD}"
    )
    return SFTExample(index, "concert", fmt, PROMPT, target)


def cycling(answers: list[str]) -> ScriptedModel:
    """A model that answers with the sample's seed: sample i of a prompt gets answers[i]."""
    return ScriptedModel(lambda messages, params: answers[params.seed % 1000])


def test_rewards_rank_right_above_near_above_nothing(db: Path) -> None:
    config = MiningConfig()
    from prunekit.nl2sql.candidates import Candidate, execute_candidates, result_signature

    gold = Candidate("gold", GOLD)
    execute_candidates(db, [gold], 5.0)
    signature = result_signature(gold.rows)
    # another query with the same result is right: execution, not text, decides
    right = reward_answer("SELECT count(*) FROM singer WHERE 30 < age", GOLD, signature, db, config)
    near = reward_answer("SELECT count(*) FROM singer WHERE age > 40", GOLD, signature, db, config)
    far = reward_answer("SELECT name FROM stadium", GOLD, signature, db, config)
    broken = reward_answer("SELECT count(*) FROM singer WHERE height > 30", GOLD, signature, db, config)
    assert right == 1.0
    assert 0.0 < far < near < config.wrong_scale
    assert 0.0 < broken < 1.0  # a query that fails still scores its AST closeness below every right one
    assert reward_answer(None, GOLD, signature, db, config) == 0.0


def test_the_final_query_of_each_answer_shape() -> None:
    assert answer_sql("SELECT a FROM t;\nThat is all.", "direct") == "SELECT a FROM t"
    steps = "Sub-question 1: x\nSQL: SELECT a FROM t\nFinal SQL: SELECT b FROM t"
    assert answer_sql(steps, "decompose") == "SELECT b FROM t"


def test_a_right_sample_is_chosen_over_the_gold_and_wrong_ones_are_rejected(db: Path) -> None:
    answers = ["SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE 30 < age", "no idea", "no idea"]
    record = mine_prompt(cycling(answers), example(), GOLD, db, MiningConfig(samples=4), seed=0)
    assert [s["reward"] == 1.0 for s in record["samples"]] == [False, True, False, False]
    assert len(record["pairs"]) == 2  # two distinct wrong answers ("no idea" once)
    assert {p["chosen"] for p in record["pairs"]} == {answers[1]}
    assert {p["rejected"] for p in record["pairs"]} == {answers[0], "no idea"}
    assert all(p["r_w"] == 1.0 and p["margin"] > 0 for p in record["pairs"])


def test_without_a_right_sample_the_gold_answer_is_chosen(db: Path) -> None:
    record = mine_prompt(
        cycling(["SELECT name FROM singer"] * 2), example(fmt="decompose"), GOLD, db, MiningConfig(samples=2), seed=0
    )
    assert [p["chosen"] for p in record["pairs"]] == [example(fmt="decompose").target]


def test_a_prompt_always_answered_right_gives_no_pair(db: Path) -> None:
    record = mine_prompt(cycling([GOLD] * 3), example(), GOLD, db, MiningConfig(samples=3), seed=0)
    assert record["pairs"] == []


def test_mining_appends_resumes_and_survives_a_torn_line(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    model = cycling(["SELECT name FROM stadium", GOLD])
    examples = [example(i) for i in range(3)]
    config = MiningConfig(samples=2, seed=0)

    def run() -> dict[str, int]:
        return mine_file(model, examples, lambda i: GOLD, lambda db_id: db, out, config=config, progress=False)

    first = run()
    assert first["mined"] == 3 and first["pairs"] == 3 and first["self_chosen"] == 3
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # killed while writing the third
    again = run()
    assert again["mined"] == 1 and again["skipped"] == 2
    assert sorted(json.loads(line)["index"] for line in out.read_text().splitlines()) == [0, 1, 2]
    assert len(load_pairs([out])) == 3
    assert summarize_file(out) == {
        "prompts": 3,
        "pairs": 3,
        "some_sample_right": 3,
        "every_sample_right": 0,
        "samples": 6,
    }


def test_prompts_are_a_seeded_draw_in_the_formats_weights() -> None:
    examples = [example(i, fmt) for i in range(200) for fmt in ("direct", "decompose")]
    picked = choose_prompts(examples, 100, ("direct", "decompose"), (1.0, 1.0), seed=3)
    assert picked == choose_prompts(examples, 100, ("direct", "decompose"), (1.0, 1.0), seed=3)
    assert len(picked) == 100 and len({e.index for e in picked}) == 100  # one format per question
    assert 30 < sum(e.format == "direct" for e in picked) < 70
    only_direct = choose_prompts(examples, 10, ("direct",), (1.0,), seed=3)
    assert {e.format for e in only_direct} == {"direct"}
    with pytest.raises(InvalidRequestError):
        choose_prompts(examples, 10, ("direct",), (1.0, 2.0), seed=0)
    with pytest.raises(InvalidRequestError):
        MiningConfig(wrong_scale=1.0)
