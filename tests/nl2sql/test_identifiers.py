"""Identifier repair: unknown names mapped to the nearest real ones, one fix after another."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.nl2sql.candidates import Candidate, execute_candidates
from prunekit.nl2sql.identifiers import fix_identifiers, repair_identifiers
from prunekit.nl2sql.schema import introspect_sqlite
from tests.nl2sql.toydb import make_toy_db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_db(tmp_path_factory.mktemp("identifiers") / "toy.sqlite")


def test_fix_identifiers(db: Path) -> None:
    schema = introspect_sqlite(db)
    assert fix_identifiers("SELECT nam FROM singer", "no such column: nam", schema) == "SELECT name FROM singer"
    assert fix_identifiers("SELECT T1.nam FROM singer AS T1", "no such column: T1.nam", schema) == (
        "SELECT T1.name FROM singer AS T1"
    )
    assert fix_identifiers("SELECT * FROM singers", "no such table: singers", schema) == "SELECT * FROM singer"
    assert fix_identifiers("SELECT 1", "syntax error", schema) is None


def _failed(db: Path, sql: str) -> Candidate:
    candidate = Candidate("draft", sql)
    execute_candidates(db, [candidate], timeout_s=5.0)
    assert candidate.status == "error"
    return candidate


def test_two_wrong_names_are_fixed_one_after_the_other(db: Path) -> None:
    failed = _failed(db, "SELECT count(*) FROM singers WHERE contry = 'France'")
    runs: list[str] = []

    def execute(candidates: list[Candidate]) -> None:
        runs.extend(c.sql for c in candidates)
        execute_candidates(db, candidates, timeout_s=5.0)

    fixed, _ = repair_identifiers(failed, introspect_sqlite(db), {failed.sql}, execute)
    assert fixed is not None and fixed.source == "draft+fix" and fixed.rows == [(4,)]
    assert fixed.sql == "SELECT count(*) FROM singer WHERE country = 'France'" and len(runs) == 2


def test_no_fix_leaves_the_latest_error_for_the_model(db: Path) -> None:
    failed = _failed(db, "SELECT count(*) FROM singer WHERE qqq_zzz > 1")
    fixed, error = repair_identifiers(failed, introspect_sqlite(db), {failed.sql}, lambda c: None)
    assert fixed is None and error == failed.error
    # a fix that would repeat a query already tried is not run again
    failed = _failed(db, "SELECT nam FROM singer")
    fixed, error = repair_identifiers(failed, introspect_sqlite(db), {"SELECT name FROM singer"}, lambda c: None)
    assert fixed is None and error == failed.error
