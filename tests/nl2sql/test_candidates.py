"""Candidate queries: safe execution in place, and the choice by agreement of results."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from prunekit.nl2sql.candidates import MAX_ROWS, Candidate, choose_candidate, execute_candidates, result_signature
from tests.nl2sql.toydb import make_toy_db


def test_votes_pick_the_result_most_candidates_agree_on() -> None:
    a = Candidate("draft", "a", "ok", rows=[(1,)])
    b = Candidate("decompose", "b", "ok", rows=[(2,)])
    c = Candidate("direct_skeleton", "c", "ok", rows=[(2.0,)])
    assert choose_candidate([a, b, c]) == 1
    assert choose_candidate([a, b]) == 0  # a tie goes to the earlier candidate
    err = Candidate("draft", "x", "error", error="boom")
    empty = Candidate("decompose", "y", "empty")
    assert choose_candidate([err, empty, Candidate("z", "z", "ok", rows=[(3,)])]) == 2
    assert choose_candidate([err, empty]) == 1
    assert choose_candidate([err]) == 0
    assert result_signature([(1, "a"), (2, "b")]) == result_signature([("b", 2), ("a", 1)])
    with pytest.raises(ValueError):
        choose_candidate([])


def test_execution_fills_in_only_the_pending_candidates(tmp_path: Path) -> None:
    db = make_toy_db(tmp_path / "toy.sqlite")
    ok = Candidate("draft", "SELECT count(*) FROM singer WHERE country = 'France'")
    empty = Candidate("decompose", "SELECT name FROM singer WHERE country = 'Mars'")
    failing = Candidate("repair", "SELECT nowhere FROM singer")
    done = Candidate("direct_skeleton", "SELECT 1", "ok", rows=[(7,)])
    execute_candidates(db, [ok, empty, failing, done], timeout_s=5.0)
    assert (ok.status, ok.rows, ok.columns) == ("ok", [(4,)], ("count(*)",))
    assert (empty.status, empty.rows) == ("empty", [])
    assert failing.status == "error" and "no such column: nowhere" in (failing.error or "")
    assert done.rows == [(7,)]  # already run: left alone
    assert ok.truncated_reason == ""


def test_a_result_over_the_row_cap_keeps_the_reason(tmp_path: Path) -> None:
    db = tmp_path / "big.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE big (x INTEGER);"
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {MAX_ROWS + 1}) "
            "INSERT INTO big SELECT i FROM n"
        )
    big = Candidate("draft", "SELECT x FROM big")
    execute_candidates(db, [big], timeout_s=5.0)
    assert len(big.rows) == MAX_ROWS and big.truncated_reason == f"the row cap of {MAX_ROWS} rows"
    assert big.summary() == {
        "source": "draft",
        "sql": "SELECT x FROM big",
        "status": "ok",
        "error": None,
        "rows": MAX_ROWS,
    }
