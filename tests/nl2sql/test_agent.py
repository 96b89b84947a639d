"""The LangGraph agent with a scripted model on a generated database: routing, voting, repair, records."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql import prompts
from prunekit.nl2sql.agent import NL2SQLAgent, answer_question, build_nl2sql_graph
from prunekit.nl2sql.agent_config import AgentConfig
from prunekit.nl2sql.errors import DatabaseNotFoundError
from prunekit.nl2sql.retrieval import DemoIndex, TrainExample
from tests.nl2sql.fakes import ScriptedModel, bag_of_words
from tests.nl2sql.toydb import make_toy_db

QUESTION = "How many singers are from France?"
GOOD = "SELECT count(*) FROM singer WHERE country = 'France'"
STEPS = (
    "Sub-question 1: Which singers are from France?\nSQL: SELECT * FROM singer WHERE country = 'France'\n"
    f"Sub-question 2: How many are they?\nSQL: {GOOD}\nFinal SQL: {GOOD}"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_db(tmp_path_factory.mktemp("agent") / "toy.sqlite")


def responder(direct: str = GOOD, steps: str = STEPS, repair: str = GOOD):
    def respond(messages, params):
        system = messages[0]["content"]
        if system == prompts.SYSTEM_STEPS:
            return steps
        if system == prompts.SYSTEM_REPAIR:
            return repair
        return direct + "\n\nThe answer is 4."

    return respond


def agent_for(model, **config) -> NL2SQLAgent:
    return NL2SQLAgent(model, embed=bag_of_words, config=AgentConfig(**config))


def test_happy_path_records_calls_and_answers(db: Path) -> None:
    model = ScriptedModel(responder())
    result = agent_for(model).answer(QUESTION, db)
    assert result.sql == GOOD
    assert result.rows == [(4,)]
    assert result.answer == "The answer is 4."
    assert result.error is None
    assert [c["node"] for c in result.calls] == ["draft", "decompose"]  # no index: no re-ranked candidate
    assert result.usage.calls == len(model.calls) == 2
    assert result.usage.total_tokens == sum(c["prompt_tokens"] + c["completion_tokens"] for c in result.calls) > 0
    assert [s for _, s in result.steps][-1] == GOOD
    assert {c["source"] for c in result.candidates} == {"draft", "decompose"}
    assert result.truncated_reason is None and "truncated_reason" not in result.to_dict()


def test_prompt_holds_linked_tables_only(db: Path) -> None:
    model = ScriptedModel(responder())
    agent_for(model).answer(QUESTION, db)
    draft_prompt = model.calls[0][0][-1]["content"]
    assert "CREATE TABLE singer" in draft_prompt
    assert "CREATE TABLE score" not in draft_prompt  # an unrelated table is not linked
    model = ScriptedModel(responder())
    agent_for(model, link=False).answer(QUESTION, db)
    assert "CREATE TABLE score" in model.calls[0][0][-1]["content"]


def test_a_schema_over_its_budget_is_shown_without_example_values(db: Path) -> None:
    model = ScriptedModel(responder())
    agent_for(model, link=False).answer(QUESTION, db)
    assert "-- e.g." in model.calls[0][0][-1]["content"]
    model = ScriptedModel(responder())
    agent_for(model, link=False, budget=prompts.PromptBudget(max_schema_chars=50)).answer(QUESTION, db)
    prompt = model.calls[0][0][-1]["content"]
    assert "CREATE TABLE singer" in prompt and "-- e.g." not in prompt


def test_two_agreeing_candidates_outvote_the_draft(db: Path) -> None:
    examples = [
        TrainExample(0, "x", "How many students are from Spain?", "SELECT count(*) FROM student WHERE c = 'S'"),
        TrainExample(1, "y", "List all teachers", "SELECT count(*) FROM teacher"),
    ]
    index = DemoIndex.build(examples, bag_of_words)
    wrong = "SELECT count(*) FROM singer"  # its skeleton re-ranks example 1 first

    def respond(messages, params):
        if messages[0]["content"] == prompts.SYSTEM_STEPS:
            return STEPS
        shown = " ".join(m["content"] for m in messages)
        return GOOD if "List all teachers" in shown else wrong

    model = ScriptedModel(respond)
    cfg = AgentConfig(k_demos=1, skeleton_weight=5.0)
    result = NL2SQLAgent(model, index=index, embed=bag_of_words, config=cfg).answer(QUESTION, db)
    assert [c["node"] for c in result.calls] == ["draft", "decompose", "direct_skeleton"]
    assert [(c["source"], c["rows"]) for c in result.candidates] == [
        ("draft", 1),
        ("decompose", 1),
        ("direct_skeleton", 1),
    ]
    assert result.sql == GOOD and result.rows == [(4,)]
    assert result.demos == [0]


def test_demonstrations_are_ranked_once_per_question_and_reused(db: Path) -> None:
    examples = [
        TrainExample(0, "x", "How many students are from Spain?", "SELECT count(*) FROM student WHERE c = 'S'"),
        TrainExample(1, "y", "List all teachers", "SELECT count(*) FROM teacher"),
    ]
    index = DemoIndex.build(examples, bag_of_words)
    rankings: list[str | None] = []
    retrieve = index.retrieve

    def counting_retrieve(question, k=3, **kwargs):
        rankings.append(kwargs.get("draft_sql"))
        return retrieve(question, k, **kwargs)

    index.retrieve = counting_retrieve  # type: ignore[method-assign]
    only_questions = "Sub-question 1: Which singers are from France?\nSub-question 2: How many are they?"

    def respond(messages, params):
        system = messages[0]["content"]
        return only_questions if system == prompts.SYSTEM_STEPS else "SELECT count(*) FROM singer"

    model = ScriptedModel(respond)
    cfg = AgentConfig(k_demos=1, skeleton_weight=5.0, step_mode="per_step")
    NL2SQLAgent(model, index=index, embed=bag_of_words, config=cfg).answer(QUESTION, db)
    assert rankings == [None, "SELECT count(*) FROM singer"]  # by the question, then once by the draft's skeleton
    names = ["draft", "decompose", "write_step", "write_step2", "direct_skeleton"]
    assert len(model.calls) == len(names)
    shown = {
        name: " ".join(m["content"] for m in messages) for name, (messages, _) in zip(names, model.calls, strict=True)
    }
    assert "teacher" not in shown["draft"] and "student" in shown["draft"]
    for name in ("decompose", "write_step", "write_step2", "direct_skeleton"):  # the re-ranked demonstration
        assert "teacher" in shown[name] and "student" not in shown[name], name


def test_a_truncated_result_says_why(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "big.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE big (x INTEGER);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001) "
            "INSERT INTO big SELECT i FROM n"
        )
    model = ScriptedModel(lambda messages, params: "SELECT x FROM big")
    result = agent_for(model, candidates=("draft",), link=False).answer("List every x.", db)
    assert len(result.rows) == 50 and result.truncated_reason == "the row cap of 10000 rows"
    assert result.to_dict()["truncated_reason"] == result.truncated_reason


def test_unknown_identifier_is_repaired_without_a_call(db: Path) -> None:
    model = ScriptedModel(responder(direct="SELECT count(*) FROM singers WHERE contry = 'France'"))
    result = agent_for(model, candidates=("draft",)).answer(QUESTION, db)
    assert result.sql == GOOD
    assert result.rows == [(4,)]
    assert [c["node"] for c in result.calls] == ["draft"]
    assert any(c["source"].endswith("+fix") for c in result.candidates)


def test_failing_sql_goes_to_the_model_with_the_error(db: Path) -> None:
    model = ScriptedModel(responder(direct="SELECT count(*) FROM singer WHERE qqq_zzz > 1"))
    result = agent_for(model, candidates=("draft",)).answer(QUESTION, db)
    assert result.sql == GOOD
    repair_prompts = [m for m, _ in model.calls if m[0]["content"] == prompts.SYSTEM_REPAIR]
    assert len(repair_prompts) == 1 and "no such column: qqq_zzz" in repair_prompts[0][-1]["content"]


def test_repairs_are_bounded(db: Path) -> None:
    bad = "SELECT count(*) FROM singer WHERE qqq_zzz > 1"
    model = ScriptedModel(responder(direct=bad, repair="SELECT * FROM nowhere_at_all_xyz"))
    result = agent_for(model, candidates=("draft",), max_repairs=2).answer(QUESTION, db)
    assert result.error is not None and result.rows == []
    assert [c["node"] for c in result.calls] == ["draft", "repair", "repair"]


def test_an_empty_result_gets_one_repair_that_must_do_better(db: Path) -> None:
    empty = "SELECT name FROM singer WHERE country = 'Mars'"
    model = ScriptedModel(responder(direct=empty, repair=empty + " AND age > 1"))
    result = agent_for(model, candidates=("draft",), max_repairs=1).answer(QUESTION, db)
    assert result.sql == empty and result.rows == []  # the repair was no better: the first stays
    assert result.answer == "No rows match the question."


def test_per_step_mode_writes_each_step(db: Path) -> None:
    only_questions = "Sub-question 1: Which singers are from France?\nSub-question 2: How many are they?"

    def respond(messages, params):
        system = messages[0]["content"]
        if system == prompts.SYSTEM_STEPS:
            return only_questions
        if system == prompts.SYSTEM_STEP:
            last = messages[-1]["content"]
            return GOOD if "Previous SQL" in last else "SELECT * FROM singer WHERE country = 'France'"
        return GOOD

    model = ScriptedModel(respond)
    result = agent_for(model, step_mode="per_step").answer(QUESTION, db)
    assert [c["node"] for c in result.calls] == ["draft", "decompose", "write_step", "write_step"]
    assert result.steps[-1] == ("How many are they?", GOOD)
    assert result.sql == GOOD


def test_model_errors_do_not_crash_the_graph(db: Path) -> None:
    def respond(messages, params):
        raise InvalidRequestError("prompt too long")

    result = agent_for(ScriptedModel(respond), max_repairs=1).answer(QUESTION, db)
    assert result.sql is None and result.error
    assert all("error" in c for c in result.calls)


def test_bad_inputs_are_refused(db: Path, tmp_path: Path) -> None:
    agent = agent_for(ScriptedModel(responder()))
    with pytest.raises(InvalidRequestError):
        agent.answer("  ", db)
    with pytest.raises(DatabaseNotFoundError):
        agent.answer(QUESTION, tmp_path / "missing.sqlite")
    with pytest.raises(InvalidRequestError):
        AgentConfig(step_mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        AgentConfig(candidates=("oracle",))


def test_graph_shape_and_convenience(db: Path) -> None:
    graph = build_nl2sql_graph(ScriptedModel(responder()), embed=bag_of_words)
    assert {"link", "retrieve", "draft", "decompose", "write_steps", "compose", "execute", "repair", "answer"} <= set(
        graph.nodes
    )
    model = ScriptedModel(responder())
    first = answer_question(QUESTION, db, model, embed=bag_of_words)
    second = answer_question(QUESTION, db, model, embed=bag_of_words)
    assert first.sql == second.sql == GOOD


def test_answer_with_llm_adds_one_call(db: Path) -> None:
    model = ScriptedModel(
        lambda m, p: "There are 4." if m[0]["content"] == prompts.SYSTEM_ANSWER else responder()(m, p)
    )
    result = agent_for(model, answer_with_llm=True).answer(QUESTION, db)
    assert result.answer == "There are 4." and result.calls[-1]["node"] == "answer"


def test_real_embedded_model_runs_the_graph(embedded_model, db: Path) -> None:
    result = agent_for(embedded_model, max_repairs=1, max_tokens_steps=200).answer(QUESTION, db)
    assert result.usage.calls >= 2 and result.usage.total_tokens > 0
    assert all(c["prompt_tokens"] > 0 for c in result.calls)
    assert result.sql is None or result.sql.lower().startswith(("select", "with"))


def test_linking_embeds_schema_names_once_per_database(db: Path) -> None:
    from tests.nl2sql.fakes import CountingEmbedder

    embed = CountingEmbedder()
    agent = NL2SQLAgent(ScriptedModel(responder()), embed=embed, config=AgentConfig(candidates=("draft",)))
    agent.answer(QUESTION, db)
    first = embed.n_texts
    agent.answer("How many stadiums are there?", db)
    assert first > 10 and embed.n_texts == first + 1  # only the new question
