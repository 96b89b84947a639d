"""Prompt builders (shape, budget) and the parsing of model output (robust to junk)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from prunekit.nl2sql import prompts
from prunekit.nl2sql.decompose import decompose

EXTRACT_CASES = [
    ("SELECT count(*) FROM singer", "SELECT count(*) FROM singer"),
    ("Sure! SELECT count(*) FROM singer;\n\nThe answer is 2.", "SELECT count(*) FROM singer"),
    (
        "```sql\nSELECT name\nFROM singer\nWHERE age > 3\n```\nThis returns names.",
        "SELECT name FROM singer WHERE age > 3",
    ),
    ("SELECT AVG(age) FROM singer The result is 23.5.", "SELECT AVG(age) FROM singer"),
    (
        "SELECT name FROM singer WHERE country = 'The big apple is'",
        "SELECT name FROM singer WHERE country = 'The big apple is'",
    ),
    ("SELECT a FROM t -- the a column\nWHERE b = 1", "SELECT a FROM t WHERE b = 1"),
    (
        "SELECT a FROM t WHERE x IN (SELECT y FROM z) ORDER BY a",
        "SELECT a FROM t WHERE x IN (SELECT y FROM z) ORDER BY a",
    ),
    ("The query is:\nselect Name from singer where age > 3", "select Name from singer where age > 3"),
    ("WITH c AS (SELECT 1 AS x) SELECT x FROM c", "WITH c AS (SELECT 1 AS x) SELECT x FROM c"),
    ("I cannot answer that.", None),
    ("", None),
    ("SELECT FROM WHERE", None),
]


@pytest.mark.parametrize(("text", "sql"), EXTRACT_CASES)
def test_extract_sql(text: str, sql: str | None) -> None:
    assert prompts.extract_sql(text) == sql


def test_extract_sql_first_or_last() -> None:
    text = "SQL: SELECT a FROM t\nFinal SQL: SELECT b FROM t"
    assert prompts.extract_sql(text) == "SELECT a FROM t"
    assert prompts.extract_sql(text, which="last") == "SELECT b FROM t"
    with pytest.raises(ValueError):
        prompts.extract_sql(text, which="middle")


def test_parse_steps_reads_the_render_format_back() -> None:
    steps = [
        ("Which rows?", "SELECT * FROM head"),
        ("How many are older than 56?", "SELECT count(*) FROM head WHERE age > 56"),
    ]
    text = prompts.render_steps(steps, "SELECT count(*) FROM head WHERE age > 56")
    parsed, final = prompts.parse_steps(text)
    assert parsed == steps
    assert final == "SELECT count(*) FROM head WHERE age > 56"


def test_parse_steps_tolerates_missing_labels_and_junk() -> None:
    text = "Sub-question 1: Which rows?\nSELECT * FROM head\nblah blah\nSub-question 2: count them\n"
    parsed, final = prompts.parse_steps(text)
    assert parsed == [("Which rows?", "SELECT * FROM head"), ("count them", None)]
    assert final == "SELECT * FROM head"
    assert prompts.parse_steps("nothing here") == ([], None)


def test_parse_next_step() -> None:
    assert prompts.parse_next_step("Sub-question: How many?\nSQL: SELECT count(*) FROM t\nSub-question: x") == (
        "How many?",
        "SELECT count(*) FROM t",
    )
    assert prompts.parse_next_step("junk") == ("junk", None)


@dataclass
class Demo:
    question: str
    sql: str
    steps: tuple = ()


def test_direct_prompt_puts_demos_as_chat_turns_and_the_schema_last() -> None:
    demos = [Demo("How many heads?", "SELECT  count(*)  FROM head;")]
    msgs = prompts.direct_messages("CREATE TABLE t (a INT);", "How many rows?", demos)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "SELECT count(*) FROM head"  # whitespace collapsed, no semicolon
    assert "CREATE TABLE t" in msgs[-1]["content"] and "Question: How many rows?" in msgs[-1]["content"]
    assert msgs[-1]["content"].endswith(prompts.ASK_SQL)  # or a small model answers instead of writing SQL
    assert "CREATE TABLE" not in msgs[1]["content"]


def test_decompose_prompt_shows_each_demo_decomposition() -> None:
    sql = "SELECT count(*) FROM head WHERE age > 56"
    demo = Demo("How many heads are older than 56?", sql, tuple(decompose(sql)))
    msgs = prompts.decompose_messages("schema", "q", [demo])
    answer = msgs[2]["content"]
    assert answer.count("Sub-question") == len(demo.steps)
    assert answer.endswith(f"Final SQL: {sql}")
    only_questions = prompts.decompose_messages("schema", "q", [demo], with_sql=False)[2]["content"]
    assert "SQL" not in only_questions.replace("Sub-question", "")


def test_budget_drops_demonstrations_before_the_target() -> None:
    demos = [Demo(f"question {i} " + "x" * 200, f"SELECT {i} FROM t") for i in range(10)]
    budget = prompts.PromptBudget(max_prompt_chars=1200)
    msgs = prompts.direct_messages("schema text", "the question", demos, budget=budget)
    assert sum(len(m["content"]) for m in msgs) <= 1200
    assert "Question: the question" in msgs[-1]["content"]
    assert 0 < (len(msgs) - 2) // 2 < 10
    assert msgs[1]["content"].startswith("Question: question 0")  # the best demonstrations stay


def test_long_demo_sql_is_skipped() -> None:
    budget = prompts.PromptBudget(max_demo_sql_chars=20)
    msgs = prompts.direct_messages(
        "s", "q", [Demo("a", "SELECT " + "x, " * 20 + "y FROM t"), Demo("b", "SELECT 1")], budget=budget
    )
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == ["SELECT 1"]


def test_next_step_prompt_hides_the_gold_unless_asked() -> None:
    with_gold = prompts.next_step_messages("s", "q", [("Which rows?", "SELECT * FROM t")], gold_sql="SELECT a FROM t")
    without = prompts.next_step_messages("s", "q", [("Which rows?", "SELECT * FROM t")])
    assert "Target SQL: SELECT a FROM t" in with_gold[-1]["content"]
    assert "Target SQL" not in without[-1]["content"]
    assert "Sub-question: Which rows?\nSQL: SELECT * FROM t" in without[-1]["content"]


def test_repair_prompt_carries_the_error() -> None:
    msgs = prompts.repair_messages("s", "q", "SELECT nme FROM t", "no such column: nme")
    assert "no such column: nme" in msgs[-1]["content"] and "SELECT nme FROM t" in msgs[-1]["content"]
