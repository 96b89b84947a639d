"""The decomposition search with a scripted model: pruning, a real tree, rewards, pairs, resumable JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.synthesis import (
    PreferencePair,
    SearchConfig,
    evaluate_step,
    load_pairs,
    read_done,
    search_question,
    synthesize_file,
)

QUESTION = "How many singers are from France?"
GOLD = "SELECT count(*) FROM singer WHERE country = 'France'"
SCHEMA = "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);"

# proposals by depth: index 0 is the greedy one, the others are picked by the sampling seed
PROPOSALS = {
    0: [
        ("Which rows does singer hold?", "SELECT * FROM singer"),
        ("Which concerts are there?", "SELECT * FROM concert"),
        ("Which singers are from France?", "SELECT * FROM singer WHERE country = 'France'"),
    ],
    1: [
        ("Which singers are from France?", "SELECT * FROM singer WHERE country = 'France'"),
        ("Which singers are older than 3?", "SELECT * FROM singer WHERE age > 3"),
        ("How many are they?", GOLD),
    ],
    2: [("How many are they?", GOLD), ("How many are they?", "SELECT count(*) FROM singer"), ("?", "not sql")],
}


def scripted(messages, params) -> str:
    user = messages[-1]["content"]
    depth = user.count("\nSQL: ")
    options = PROPOSALS[min(depth, 2)]
    pick = 0 if params.temperature == 0 else 1 + params.seed % (len(options) - 1)
    sub_q, sql = options[pick]
    return f"Sub-question: {sub_q}\nSQL: {sql}\n\nsome junk"


class Recorder:
    name = "scripted"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def chat(self, messages, params=None):
        from prunekit.decoding.types import ChatResult, Usage

        self.prompts.append(messages[-1]["content"])
        return ChatResult(scripted(messages, params), "stop", Usage(20, 10), self.name)

    def stream(self, messages, params=None):  # pragma: no cover - the search only chats
        raise NotImplementedError


def test_evaluate_step() -> None:
    assert evaluate_step(GOLD, GOLD, 0.3) == (True, True, 1.0)
    assert evaluate_step("select COUNT(*) from SINGER where country = 'France'", GOLD, 0.3) == (True, True, 1.0)
    kept, complete, reward = evaluate_step("SELECT * FROM singer", GOLD, 0.0)
    assert kept and not complete and 0 < reward < 1
    assert evaluate_step("SELECT * FROM concert", GOLD, 0.25) == (False, False, 0.25)  # pruned: parent's reward
    assert evaluate_step("not sql at all", GOLD, 0.1) == (False, False, 0.1)
    assert evaluate_step(None, GOLD, 0.0) == (False, False, 0.0)


def test_search_builds_a_tree_and_finds_the_gold() -> None:
    model = Recorder()
    result = search_question(model, QUESTION, GOLD, SCHEMA, config=SearchConfig(n_children=3, simulations=6, seed=1))
    assert result.complete
    assert result.trajectory[-1][1] == GOLD
    root = result.nodes[0]
    assert len(root.children) >= 2  # a tree, not a chain
    expanded = [n for n in result.nodes if n.expanded]
    assert len(expanded) >= 2
    assert any(not n.valid for n in result.nodes)  # something was pruned
    assert all(n.children == [] for n in result.nodes if not n.valid)  # pruned nodes never grow
    assert result.llm_calls == len(model.prompts) == 3 * len(expanded)
    assert all("Target SQL: " + GOLD in p for p in model.prompts)  # the teacher sees the gold
    # a shallowest complete path: two steps, each a partial subtree of the gold
    assert len(result.trajectory) == 2
    assert result.trajectory[0][1] in ("SELECT * FROM singer", "SELECT * FROM singer WHERE country = 'France'")


def test_pairs_have_positive_margins_and_inference_prompts() -> None:
    result = search_question(
        Recorder(), QUESTION, GOLD, SCHEMA, config=SearchConfig(n_children=3, simulations=6, seed=1)
    )
    assert result.pairs
    for pair in result.pairs:
        assert pair.r_w - pair.r_l >= 0.05
        assert "Target SQL" not in pair.messages[-1]["content"]
        assert pair.chosen != pair.rejected
        assert pair.chosen.startswith("Sub-question: ") and "\nSQL: " in pair.chosen
    # the complete step beats the pruned sibling by its whole margin over the parent
    top = [p for p in result.pairs if p.r_w == 1.0]
    assert top and all(p.r_l < 1.0 for p in top)


def test_search_stops_when_everything_is_pruned() -> None:
    class Junk(Recorder):
        def chat(self, messages, params=None):
            from prunekit.decoding.types import ChatResult, Usage

            self.prompts.append("x")
            return ChatResult("Sub-question: ?\nSQL: SELECT * FROM nowhere", "stop", Usage(1, 1), self.name)

    model = Junk()
    result = search_question(model, QUESTION, GOLD, SCHEMA, config=SearchConfig(n_children=2, simulations=10))
    assert not result.complete and result.trajectory == []
    assert len(model.prompts) == 2  # one expansion, then nothing can grow
    assert result.pairs == []


def test_config_is_checked() -> None:
    with pytest.raises(InvalidRequestError):
        SearchConfig(n_children=0)
    with pytest.raises(InvalidRequestError):
        SearchConfig(min_margin=0)


def test_synthesize_file_appends_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    examples = [(i, "toy", QUESTION, GOLD) for i in range(3)]
    model = Recorder()
    cfg = SearchConfig(n_children=2, simulations=3)
    stats = synthesize_file(model, examples[:2], lambda db: SCHEMA, out, config=cfg, progress=False)
    assert stats["searched"] == 2 and read_done(out) == {0, 1}
    calls = len(model.prompts)
    with out.open("a") as f:
        f.write('{"index": 2, "torn')  # a run killed mid-line
    stats = synthesize_file(model, examples, lambda db: SCHEMA, out, config=cfg, progress=False)
    assert stats["searched"] == 1 and stats["skipped"] == 2
    assert len(model.prompts) > calls
    assert read_done(out) == {0, 1, 2}
    records = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    assert all(r["nodes"] and "pairs" in r for r in records)
    pairs = load_pairs([out])
    assert pairs and all(isinstance(p, PreferencePair) and p.margin > 0 for p in pairs)


def test_tiny_real_search_with_the_embedded_model(embedded_model, tmp_path: Path) -> None:
    from tests.conftest import require_data

    train = json.loads(require_data("spider/train_spider_slim.json").read_text())[:2]
    examples = [(i, e["db_id"], e["question"], e["query"]) for i, e in enumerate(train)]
    out = tmp_path / "real.jsonl"
    cfg = SearchConfig(n_children=2, simulations=2, max_tokens=80)
    stats = synthesize_file(embedded_model, examples, lambda db: SCHEMA, out, config=cfg, progress=False)
    assert stats["searched"] == 2 and stats["llm_calls"] >= 4 and stats["tokens"] > 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["index"] for r in records} == {0, 1}
    assert all(len(r["nodes"]) >= 2 for r in records)
