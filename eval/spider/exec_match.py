"""Execution accuracy with the semantics of test-suite-sql-eval's `exec_eval.eval_exec_match`.

Rules (the reference's, reimplemented; differences are listed below):

- Both queries get the reference's text clean-ups (`> =` -> `>=`, `< =`, `! =`; `YEAR(CURDATE())` ->
  2020) and, unless `keep_distinct=True` (the reference's default is False), every DISTINCT keyword is
  removed from both, everywhere, including `COUNT(DISTINCT x)` -> `COUNT(x)`, as the reference does.
- The gold query must execute (`GoldExecutionError` otherwise); a prediction that fails to execute
  (SQL error, refused as unsafe, timeout) scores 0.
- Results are compared as bags (multisets) of rows; row order matters only when the gold query has an
  ORDER BY. The reference looks for the text "order by" anywhere in the gold SQL; we check the
  outermost query of the sqlglot AST (an ORDER BY that only sorts a subquery does not order the
  result). Two empty results match whatever their columns.
- Columns are matched up to a permutation: a quick rejection first (the multiset of rows, each row
  taken as a multiset of values, must be equal; as a list when order matters), then a search over
  column permutations where gold column i may only map to a predicted column holding the same
  multiset of values; the first permutation that makes the bags (or lists) equal wins.
- Values compare with Python equality, as the reference (it compares the rows sqlite3 returns): NULL
  equals NULL, `1 == 1.0`, and floats compare exactly. Both queries run on the same SQLite engine,
  so the same computation gives the same bits; `float_digits=N` rounds floats to N significant digits
  first, for predictions that compute a value by another route (`SUM(x)/COUNT(x)` vs `AVG(x)`).
- Several database files may be given (a test suite): the prediction must match on every one.

Differences from the reference: queries run read-only through `nl2sql.safe_exec` with a real
timeout (the reference's asyncio timeout cannot interrupt sqlite3); its optional value plugging
(`plug_value`) is not implemented; text that is not valid UTF-8 decodes with replacement characters
(the reference drops the bytes), identically for both queries.

>>> results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], order_matters=False)
True
>>> results_match([(1,), (2,)], [(2,), (1,)], order_matters=True)
False
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Tokenizer, TokenType

from prunekit.nl2sql.errors import NL2SQLError, SQLError, SQLParseError, SQLTimeoutError, UnsafeSQLError
from prunekit.nl2sql.safe_exec import QueryResult, SafeDatabase, SafeExecConfig
from prunekit.nl2sql.sqlast import parse_sql, unwrap_query

__all__ = [
    "ExecEvaluator",
    "ExecMatch",
    "GoldExecutionError",
    "exec_match",
    "gold_orders_rows",
    "postprocess",
    "remove_distinct",
    "results_match",
]

log = logging.getLogger(__name__)


class GoldExecutionError(NL2SQLError):
    """The gold query failed (or its result was cut by the row cap): the example cannot be scored."""


@dataclass(frozen=True)
class ExecMatch:
    """Outcome of one comparison. `reason` is "match", "pred_error", "pred_unsafe", "pred_timeout",
    "row_count", "column_count", "values" or "order"."""

    match: bool
    reason: str
    order_matters: bool = False
    pred_error: str | None = None

    @property
    def score(self) -> int:
        return int(self.match)


# ---------------------------------------------------------------------------------------------
# Text clean-ups of the reference

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def postprocess(sql: str) -> str:
    """The reference's clean-ups: `> =` -> `>=` (and `<`, `!`), `YEAR(CURDATE())` -> 2020."""
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    return _CUR_YEAR.sub("2020", sql)


def remove_distinct(sql: str) -> str:
    """`sql` without any DISTINCT keyword (the reference's default), the rest of the text untouched.

    >>> remove_distinct("SELECT DISTINCT name, count(DISTINCT id) FROM t")
    'SELECT name, count(id) FROM t'
    """
    try:
        tokens = Tokenizer().tokenize(sql)
    except (SqlglotError, ValueError):
        return re.sub(r"\bdistinct\b\s*", "", sql, flags=re.IGNORECASE)
    out, last = [], 0
    for tok in tokens:
        if tok.token_type == TokenType.DISTINCT:
            out.append(sql[last : tok.start])
            last = tok.end + 1
            while last < len(sql) and sql[last].isspace():
                last += 1
    out.append(sql[last:])
    return "".join(out)


def gold_orders_rows(gold_sql: str) -> bool:
    """Whether row order matters: the outermost query of the gold AST has an ORDER BY."""
    try:
        tree = unwrap_query(parse_sql(gold_sql))
    except SQLError:
        return "order by" in gold_sql.lower()  # the reference's test, for what sqlglot cannot parse
    return isinstance(tree, (exp.Select, exp.SetOperation)) and tree.args.get("order") is not None


# ---------------------------------------------------------------------------------------------
# Result comparison


def _canon(value: Any, float_digits: int | None) -> Any:
    if float_digits is not None and isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{float_digits}g}")
    return value


def _row_bag(row: Sequence[Any]) -> Hashable:
    return frozenset(Counter(row).items())


_MAX_SEARCH_NODES = 200_000


def _column_search(
    gold: list[tuple[Any, ...]], pred: list[tuple[Any, ...]], candidates: list[list[int]], order_matters: bool
) -> bool:
    """Depth-first search for a column permutation that makes `pred` equal `gold` (bag or list).

    Gold column i may map to any pred column in candidates[i], each pred column used once. A partial
    assignment survives only if the pred rows projected on the chosen columns equal the gold rows
    projected on the first columns (as bags, or as lists when order matters), which prunes almost
    every branch; a hard cap on visited nodes bounds pathological inputs (then: no match).
    """
    n = len(candidates)
    chosen: list[int] = []
    used: set[int] = set()
    visited = 0

    def consistent(depth: int) -> bool:
        g = [r[:depth] for r in gold]
        p = [tuple(r[j] for j in chosen) for r in pred]
        return g == p if order_matters else Counter(g) == Counter(p)

    def walk(i: int) -> bool:
        nonlocal visited
        if i == n:
            return True
        for j in candidates[i]:
            if j in used:
                continue
            visited += 1
            if visited > _MAX_SEARCH_NODES:
                log.warning("column permutation search gave up after %d nodes", visited)
                return False
            used.add(j)
            chosen.append(j)
            if consistent(i + 1) and walk(i + 1):
                return True
            chosen.pop()
            used.discard(j)
        return False

    return walk(0)


def _compare(gold: list[tuple[Any, ...]], pred: list[tuple[Any, ...]], order_matters: bool) -> str:
    if not gold and not pred:
        return "match"
    if len(gold) != len(pred):
        return "row_count"
    n_cols = len(gold[0])
    if len(pred[0]) != n_cols:
        return "column_count"
    gold_bags = [_row_bag(r) for r in gold]
    pred_bags = [_row_bag(r) for r in pred]
    if order_matters:
        if gold_bags != pred_bags:
            return "order" if Counter(gold_bags) == Counter(pred_bags) else "values"
    elif Counter(gold_bags) != Counter(pred_bags):
        return "values"
    gold_cols = [Counter(r[i] for r in gold) for i in range(n_cols)]
    pred_cols = [Counter(r[j] for r in pred) for j in range(n_cols)]
    candidates = [[j for j in range(n_cols) if pred_cols[j] == gold_cols[i]] for i in range(n_cols)]
    if any(not c for c in candidates):
        return "values"
    return "match" if _column_search(gold, pred, candidates, order_matters) else "values"


def results_match(
    gold_rows: Sequence[Sequence[Any]],
    pred_rows: Sequence[Sequence[Any]],
    *,
    order_matters: bool,
    float_digits: int | None = None,
) -> bool:
    """Whether two results are the same bag (list, if `order_matters`) of rows up to a column permutation."""
    gold = [tuple(_canon(v, float_digits) for v in r) for r in gold_rows]
    pred = [tuple(_canon(v, float_digits) for v in r) for r in pred_rows]
    return _compare(gold, pred, order_matters) == "match"


# ---------------------------------------------------------------------------------------------
# Execution


class ExecEvaluator:
    """Scores predictions against gold queries by execution; keeps one guarded connection per database.

    Gold results are cached (per database and gold text), so several methods can be scored on the
    same examples with one gold run each.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        max_rows: int = 100_000,
        keep_distinct: bool = False,
        float_digits: int | None = None,
        cache_gold: bool = True,
    ) -> None:
        self.config = SafeExecConfig(timeout_s=timeout_s, max_rows=max_rows, max_result_bytes=512 * 1024 * 1024)
        self.keep_distinct = keep_distinct
        self.float_digits = float_digits
        self.cache_gold = cache_gold
        self._dbs: dict[Path, SafeDatabase] = {}
        self._gold_cache: dict[tuple[Path, str], QueryResult] = {}

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()

    def __enter__(self) -> ExecEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self, path: str | Path) -> SafeDatabase:
        key = Path(path).expanduser().resolve()
        if key not in self._dbs:
            self._dbs[key] = SafeDatabase(key, self.config)
        return self._dbs[key]

    def _prepare(self, sql: str) -> str:
        sql = postprocess(sql.strip())
        return sql if self.keep_distinct else remove_distinct(sql)

    def _gold(self, path: str | Path, gold: str) -> QueryResult:
        db = self._db(path)
        key = (db.path, gold)
        if self.cache_gold and key in self._gold_cache:
            return self._gold_cache[key]
        try:
            result = db.execute(gold)
        except SQLError as err:
            raise GoldExecutionError(f"the gold query fails on {db.path.name}: {err}") from err
        if result.truncated:
            raise GoldExecutionError(f"the gold result on {db.path.name} exceeds the row cap; raise max_rows")
        if self.cache_gold:
            self._gold_cache[key] = result
        return result

    def evaluate(self, db_paths: str | Path | Sequence[str | Path], pred_sql: str, gold_sql: str) -> ExecMatch:
        """Score one prediction (see the module docstring for the rules)."""
        paths = [db_paths] if isinstance(db_paths, (str, Path)) else list(db_paths)
        gold = self._prepare(gold_sql)
        pred = self._prepare(pred_sql or "")
        order = gold_orders_rows(gold)
        for path in paths:
            gold_result = self._gold(path, gold)
            try:
                pred_result = self._db(path).execute(pred)
            except SQLTimeoutError as err:
                return ExecMatch(False, "pred_timeout", order, str(err))
            except SQLParseError as err:
                return ExecMatch(False, "pred_error", order, str(err))
            except UnsafeSQLError as err:
                return ExecMatch(False, "pred_unsafe", order, str(err))
            except SQLError as err:
                return ExecMatch(False, "pred_error", order, str(err))
            gold_rows = [tuple(_canon(v, self.float_digits) for v in r) for r in gold_result.rows]
            pred_rows = [tuple(_canon(v, self.float_digits) for v in r) for r in pred_result.rows]
            if pred_result.truncated:
                return ExecMatch(False, "row_count", order)
            outcome = _compare(gold_rows, pred_rows, order)
            if outcome != "match":
                return ExecMatch(False, outcome, order)
        return ExecMatch(True, "match", order)


def exec_match(
    db_paths: str | Path | Sequence[str | Path],
    pred_sql: str,
    gold_sql: str,
    *,
    keep_distinct: bool = False,
    timeout_s: float = 30.0,
    float_digits: int | None = None,
) -> ExecMatch:
    """One-off `ExecEvaluator(...).evaluate(db_paths, pred_sql, gold_sql)`."""
    with ExecEvaluator(
        timeout_s=timeout_s, keep_distinct=keep_distinct, float_digits=float_digits, cache_gold=False
    ) as ev:
        return ev.evaluate(db_paths, pred_sql, gold_sql)
