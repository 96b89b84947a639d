"""Prompts of the NL2SQL agent and baselines, and the parsing of what the model answers.

LearNAT (arXiv 2504.02327) prompts with decomposed demonstrations: a question, its sub-questions each
followed by a sub-SQL, and the final SQL. Our prompts follow that shape but are written for a small
model (the embedded SmolLM2-135M has an 8k context and little instruction following):

- task only: one short system line, no rules, no persona;
- demonstrations as chat turns (user question, assistant answer), which a small instruct model copies
  far more faithfully than demonstrations pasted into one long message; they carry no schema (DAIL-SQL's
  "SQL only" organisation), so each costs a few dozen tokens;
- the schema of the linked tables only, as compact CREATE TABLE text with a few example values, in the
  last user turn, next to the question;
- a character budget (`PromptBudget`): a linked schema past `max_schema_chars` loses its example values,
  and demonstrations are dropped (last first) until the prompt fits `max_prompt_chars`. A schema too large
  even then makes the model refuse the call; the agent records the refusal as the call's `error`.

Parsing (`extract_sql`, `parse_steps`) is robust to junk: code fences, prose before or after, a
trailing sentence after the query, several queries (the first or the last is taken).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prunekit.decoding.types import Message
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.sqlast import parse_sql

__all__ = [
    "PromptBudget",
    "answer_messages",
    "compose_messages",
    "decompose_messages",
    "demo_sql",
    "direct_messages",
    "extract_sql",
    "format_rows",
    "next_step_messages",
    "parse_next_step",
    "parse_steps",
    "render_step",
    "repair_messages",
    "step_messages",
]

SYSTEM_SQL = "You translate questions about a database into one SQLite query."
SYSTEM_STEPS = (
    "You translate questions about a database into SQLite. Split the question into sub-questions, "
    "write the SQL of each, and end with the final SQL."
)
SYSTEM_STEP = "You extend a SQLite query by one step to answer a sub-question."
SYSTEM_REPAIR = "You fix SQLite queries."
SYSTEM_NEXT = (
    "You solve a database question step by step. Write the next sub-question and its SQLite query; "
    "the last step's query answers the question."
)
ASK_SQL = "Write the SQLite query."
ASK_STEPS = "Write the sub-questions with their SQL, then the final SQL."
ASK_SUBQUESTIONS = "Write the sub-questions."
SYSTEM_ANSWER = "You answer questions in one short sentence from query results."


@dataclass(frozen=True)
class PromptBudget:
    """Limits in characters (about 3.5 characters a token for SmolLM2's tokenizer on SQL and English)."""

    max_prompt_chars: int = 12_000  # ~3.4k tokens: leaves room in an 8k context shared by batched requests
    max_schema_chars: int = 8_000  # past this, the schema is shown without its example values
    max_demo_sql_chars: int = 600  # a longer gold SQL teaches little and costs much


def demo_sql(sql: str) -> str:
    """A gold SQL as shown in a prompt: whitespace collapsed, no trailing semicolon."""
    return re.sub(r"\s+", " ", sql).strip().rstrip(";").strip()


def _fit(messages: list[Message], budget: PromptBudget, n_fixed_tail: int, first_demo: int) -> list[Message]:
    """Drop demonstration turns (pairs after `first_demo`, last first) until the prompt fits the budget."""
    while (
        sum(len(m["content"]) for m in messages) > budget.max_prompt_chars and len(messages) - n_fixed_tail > first_demo
    ):
        del messages[len(messages) - n_fixed_tail - 2 : len(messages) - n_fixed_tail]
    return messages


_TABLE = re.compile(r"^CREATE TABLE (\S+) \(", re.MULTILINE)


def _target(schema_text: str, question: str, tail: str = "") -> str:
    # the table names again, last: a small model otherwise copies the demonstrations' tables
    tables = _TABLE.findall(schema_text)
    listing = f"\nUse only the tables {', '.join(tables)}." if tables else ""
    return f"Database:\n{schema_text}\n\nQuestion: {question}{listing}" + (f"\n{tail}" if tail else "")


def _demo_pairs(demos: Sequence[Any], budget: PromptBudget) -> list[tuple[str, str]]:
    return [(d.question, demo_sql(d.sql)) for d in demos if len(demo_sql(d.sql)) <= budget.max_demo_sql_chars]


def direct_messages(
    schema_text: str, question: str, demos: Sequence[Any] = (), *, budget: PromptBudget | None = None
) -> list[Message]:
    """Schema + question -> one SQL; with `demos` (objects with `.question` and `.sql`) as chat turns first."""
    budget = budget or PromptBudget()
    messages: list[Message] = [{"role": "system", "content": SYSTEM_SQL}]
    for q, sql in _demo_pairs(demos, budget):
        messages += [{"role": "user", "content": f"Question: {q}"}, {"role": "assistant", "content": sql}]
    # without the closing request a small model answers the question itself instead of writing SQL
    messages.append({"role": "user", "content": _target(schema_text, question, ASK_SQL)})
    return _fit(messages, budget, 1, 1)


def render_steps(steps: Sequence[tuple[str, str]], final_sql: str | None = None) -> str:
    """LearNAT's answer shape: `Sub-question i: ...` / `SQL: ...` per step, then `Final SQL: ...`."""
    lines: list[str] = []
    for i, (sub_q, sql) in enumerate(steps, 1):
        lines.append(f"Sub-question {i}: {sub_q}")
        lines.append(f"SQL: {demo_sql(sql)}")
    if final_sql is not None:
        lines.append(f"Final SQL: {demo_sql(final_sql)}")
    return "\n".join(lines)


def demo_steps(demo: Any, max_steps: int = 6) -> list[tuple[str, str]]:
    """(sub-question, sub-SQL) of a demonstration's decomposition, capped to its last `max_steps` steps."""
    steps = [(s.question, s.sql) for s in getattr(demo, "steps", ())]
    if not steps:
        return [("What does the question ask for?", demo.sql)]
    return steps[-max_steps:]


def decompose_messages(
    schema_text: str,
    question: str,
    demos: Sequence[Any],
    *,
    budget: PromptBudget | None = None,
    with_sql: bool = True,
    max_steps: int = 6,
) -> list[Message]:
    """The decomposition prompt: demonstrations answered step by step, then the question.

    `with_sql=True` asks for sub-questions each followed by its SQL and the final SQL (LearNAT's
    inference format); `with_sql=False` asks for the sub-questions only (the per-step mode writes the
    SQL of each in a separate call).
    """
    budget = budget or PromptBudget()
    messages: list[Message] = [{"role": "system", "content": SYSTEM_STEPS}]
    for demo in demos:
        if len(demo_sql(demo.sql)) > budget.max_demo_sql_chars:
            continue
        steps = demo_steps(demo, max_steps)
        if with_sql:
            answer = render_steps(steps, demo.sql)
        else:
            answer = "\n".join(f"Sub-question {i}: {q}" for i, (q, _) in enumerate(steps, 1))
        messages += [
            {"role": "user", "content": f"Question: {demo.question}"},
            {"role": "assistant", "content": answer},
        ]
    ask = ASK_STEPS if with_sql else ASK_SUBQUESTIONS
    messages.append({"role": "user", "content": _target(schema_text, question, ask)})
    return _fit(messages, budget, 1, 1)


def step_messages(
    schema_text: str,
    question: str,
    sub_question: str,
    previous_sql: str | None,
    demos: Sequence[Any],
    *,
    budget: PromptBudget | None = None,
    max_examples: int = 4,
) -> list[Message]:
    """One step: extend the previous step's SQL to answer `sub_question` (examples from demos' steps)."""
    budget = budget or PromptBudget()
    messages: list[Message] = [{"role": "system", "content": SYSTEM_STEP}]
    examples: list[tuple[str | None, str, str]] = []
    for demo in demos:
        prev: str | None = None
        for sub_q, sql in demo_steps(demo):
            examples.append((prev, sub_q, sql))
            prev = sql
    for prev, sub_q, sql in examples[-max_examples:]:
        user = (f"Previous SQL: {demo_sql(prev)}\n" if prev else "") + f"Sub-question: {sub_q}"
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": demo_sql(sql)}]
    tail = (f"Previous SQL: {demo_sql(previous_sql)}\n" if previous_sql else "") + f"Sub-question: {sub_question}"
    messages.append({"role": "user", "content": _target(schema_text, question, tail)})
    return _fit(messages, budget, 1, 1)


def compose_messages(
    schema_text: str, question: str, steps: Sequence[tuple[str, str]], *, budget: PromptBudget | None = None
) -> list[Message]:
    """Write the final SQL from the sub-questions and their SQL."""
    budget = budget or PromptBudget()
    body = render_steps(steps) + "\nWrite the final SQL that answers the question."
    return _fit(
        [{"role": "system", "content": SYSTEM_SQL}, {"role": "user", "content": _target(schema_text, question, body)}],
        budget,
        1,
        1,
    )


def repair_messages(
    schema_text: str, question: str, sql: str, error: str, *, budget: PromptBudget | None = None
) -> list[Message]:
    """Fix a query that failed (or returned nothing); the error message is in the prompt."""
    budget = budget or PromptBudget()
    tail = f"This SQL failed: {demo_sql(sql)}\nError: {error[:300]}\nWrite the corrected SQL."
    return _fit(
        [
            {"role": "system", "content": SYSTEM_REPAIR},
            {"role": "user", "content": _target(schema_text, question, tail)},
        ],
        budget,
        1,
        1,
    )


def render_step(sub_question: str, sql: str) -> str:
    """One step as the synthesis search writes it and DPO trains on it."""
    return f"Sub-question: {sub_question.strip()}\nSQL: {demo_sql(sql)}"


def next_step_messages(
    schema_text: str,
    question: str,
    previous: Sequence[tuple[str, str]],
    *,
    gold_sql: str | None = None,
    budget: PromptBudget | None = None,
) -> list[Message]:
    """The decomposition search's prompt: propose the step after `previous` (sub-question, SQL) pairs.

    `gold_sql` (training time only) shows the target query, as LearNAT's synthesis gives the teacher the
    gold SQL to decompose; the preference pairs are stored with the prompt *without* it, the prompt
    the trained model sees at inference.
    """
    budget = budget or PromptBudget()
    lines = [f"Database:\n{schema_text}", "", f"Question: {question}"]
    if gold_sql:
        lines.append(f"Target SQL: {demo_sql(gold_sql)}")
    if previous:
        lines.append("Steps so far:")
        lines += [render_step(q, sql) for q, sql in previous]
    else:
        lines.append("Steps so far: none")
    lines.append("Write the next step.")
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM_NEXT},
        {"role": "user", "content": "\n".join(lines)},
    ]
    return _fit(messages, budget, 1, 1)


def parse_next_step(text: str) -> tuple[str, str | None]:
    """(sub-question, SQL or None) of a proposed step; tolerant of missing labels and trailing junk."""
    steps, final = parse_steps(text)
    for sub_q, sql in steps:
        if sql:
            return sub_q, sql
    first_line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    return (steps[0][0] if steps else first_line), final


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_rows: int = 5) -> str:
    """A few result rows as `col=value` text for an answer prompt."""
    if not rows:
        return "(no rows)"
    lines = []
    for row in rows[:max_rows]:
        lines.append(", ".join(f"{c}={v!r}" for c, v in zip(columns, row, strict=False)))
    if len(rows) > max_rows:
        lines.append(f"... ({len(rows)} rows in all)")
    return "\n".join(lines)


def answer_messages(question: str, sql: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Message]:
    """One sentence that answers the question from the rows the SQL returned."""
    body = f"Question: {question}\nSQL: {demo_sql(sql)}\nResult:\n{format_rows(columns, rows)}\nAnswer in one sentence."
    return [{"role": "system", "content": SYSTEM_ANSWER}, {"role": "user", "content": body}]


# ---------------------------------------------------------------------------------------------
# Parsing the model's output

_FENCE = re.compile(r"```(?:sql|sqlite|SQL)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_START = re.compile(r"\b(SELECT|WITH)\b", re.IGNORECASE)


def _parses(sql: str) -> bool:
    try:
        parse_sql(sql)
    except SQLError:
        return False
    return True


_COMMENT = re.compile(r"--[^'\n]*$")
_SQL_WORDS = frozenset(
    """select from where group by having order limit join on as and or not in like between is null desc asc union
    intersect except distinct count sum avg min max inner left outer natural case when then else end""".split()  # noqa: SIM905
)
_PROSE = re.compile(r"(?<![\w'\".])([A-Z][a-z]+)\s+([a-z]+)\s+([a-z]+)\b")


def _cut_prose(text: str) -> str:
    """`text` up to the first sentence of prose (`The result is ...`) outside quotes."""
    for m in _PROSE.finditer(text):
        if text[: m.start()].count("'") % 2:
            continue  # inside a string literal
        if m.group(2).lower() not in _SQL_WORDS:
            return text[: m.start()].strip()
    return text.strip()


def _statement_at(text: str, start: int) -> str | None:
    """The longest prefix of `text[start:]` (cut at `;`, a blank line or a fence) that parses, by lines."""
    rest = text[start:]
    cut = len(rest)
    for marker in (";", "\n\n", "```"):
        pos = rest.find(marker)
        if pos >= 0:
            cut = min(cut, pos)
    chunk = _cut_prose(rest[:cut])
    lines = [_COMMENT.sub("", line) for line in chunk.splitlines()]  # a `--` comment would swallow joined lines
    while lines:
        candidate = " ".join(line.strip() for line in lines).strip()
        if candidate and _parses(candidate):
            return candidate
        lines.pop()
    # one long line with prose after the query: cut at the last word boundary that parses
    words = chunk.split()
    for end in range(len(words) - 1, 1, -1):
        candidate = " ".join(words[:end])
        if _parses(candidate):
            return candidate
    return None


def _candidates(text: str) -> list[str]:
    found: list[str] = []
    for block in _FENCE.findall(text):
        for m in _START.finditer(block):
            sql = _statement_at(block, m.start())
            if sql:
                found.append(sql)
                break
    if found:
        return found
    last_end = -1
    for m in _START.finditer(text):
        if m.start() < last_end:
            continue  # a nested SELECT of the statement already taken
        sql = _statement_at(text, m.start())
        if sql:
            found.append(sql)
            last_end = m.start() + len(sql)
    return found


def extract_sql(text: str, *, which: str = "first") -> str | None:
    """The SQL in a model's answer: from code fences when there are any, else from the raw text.

    `which="first"` (direct answers: the query, then often junk) or `"last"` (step-by-step answers: the
    final query comes last). Returns None when no SELECT/WITH statement parses.

    >>> extract_sql("Sure! SELECT count(*) FROM singer;\\n\\nThe answer is 2.")
    'SELECT count(*) FROM singer'
    >>> extract_sql("SQL: SELECT a FROM t\\nFinal SQL: SELECT b FROM t", which="last")
    'SELECT b FROM t'
    """
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    found = _candidates(text or "")
    if not found:
        return None
    return found[0] if which == "first" else found[-1]


_SUBQ = re.compile(r"^\s*(?:\d+[.)]\s*)?sub-?\s*question\s*\d*\s*[:.)-]\s*(.+)$", re.IGNORECASE)
_SQL_LINE = re.compile(r"^\s*(?:final\s+)?sql\s*\d*\s*:\s*(.*)$", re.IGNORECASE)


def parse_steps(text: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """(sub-questions with their SQL or None, final SQL or None) from a step-by-step answer.

    Accepts the shape `render_steps` prints and tolerates missing labels: a SELECT line right after a
    sub-question is its SQL; `Final SQL:` (or else the last parsing SQL) is the final query.
    """
    steps: list[tuple[str, str | None]] = []
    final: str | None = None
    for raw in (text or "").splitlines():
        line = raw.strip().strip("`")
        if not line:
            continue
        m = _SUBQ.match(line)
        if m:
            steps.append((m.group(1).strip(), None))
            continue
        sql_text = None
        m = _SQL_LINE.match(line)
        if m:
            sql_text = m.group(1)
        elif _START.match(line):
            sql_text = line
        if sql_text is None:
            continue
        sql = extract_sql(sql_text)
        if sql is None:
            continue
        if re.match(r"^\s*final", line, re.IGNORECASE):
            final = sql
        elif steps and steps[-1][1] is None:
            steps[-1] = (steps[-1][0], sql)
        else:
            steps.append(("", sql))
    if final is None:
        written = [s for _, s in steps if s]
        final = written[-1] if written else extract_sql(text or "", which="last")
    return steps, final
