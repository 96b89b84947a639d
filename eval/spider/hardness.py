"""Spider hardness levels (easy / medium / hard / extra) with the official rules, on sqlglot ASTs.

The official `eval_hardness` (Spider's `evaluation.py`, also in test-suite-sql-eval) counts three things
on the parsed gold query and thresholds them:

- component1: WHERE, GROUP BY, ORDER BY and LIMIT present (1 each), one per joined table beyond the
  first, one per OR and one per LIKE among the conditions of ON, WHERE and HAVING;
- component2: nested queries: subqueries used as condition values in ON/WHERE/HAVING, plus one when
  the query is the left side of a UNION/INTERSECT/EXCEPT (subqueries in FROM are not counted);
- others: one each for "more than one aggregate", "more than one projection", "more than one WHERE
  condition", "more than one GROUP BY column".

We count them on the outermost (left-most, for set operations) SELECT of the sqlglot tree, mirroring
how Spider's parser builds its dict, including two quirks of the official counters so the levels match:
the aggregate count of the WHERE clause counts negated conditions (`NOT IN`, `NOT LIKE`: the official
code reads a condition's `not` flag where it means an aggregate), and the one of HAVING counts the
AND/OR connectors (it reads the first letter of 'and'). `hardness_of_spider_sql` applies the same
rules to Spider's own parsed dicts (the `sql` field of dev.json) as a reference.

>>> hardness("SELECT count(*) FROM singer")
'easy'
>>> hardness("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)")
'hard'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from prunekit.nl2sql.sqlast import get_arg, parse_sql, unwrap_query

__all__ = ["HARDNESS_LEVELS", "HardnessCounts", "count_components", "hardness", "hardness_of_spider_sql"]

HARDNESS_LEVELS = ("easy", "medium", "hard", "extra")

_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)


@dataclass(frozen=True)
class HardnessCounts:
    component1: int
    component2: int
    others: int

    @property
    def level(self) -> str:
        return _level(self.component1, self.component2, self.others)


def _level(c1: int, c2: int, others: int) -> str:
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


# ---------------------------------------------------------------------------------------------
# sqlglot side


def _strip(node: exp.Expression) -> exp.Expression:
    while isinstance(node, (exp.Paren, exp.Alias)):
        node = node.this
    return node


def _is_agg(node: exp.Expression | None) -> bool:
    return node is not None and isinstance(_strip(node), _AGGREGATES)


def flatten_condition(cond: exp.Expression | None) -> tuple[list[exp.Expression], list[str]]:
    """Condition units and connectors ('and'/'or') of a condition read flat, as Spider's parser does."""
    if cond is None:
        return [], []
    cond = cond.this if isinstance(cond, (exp.Where, exp.Having)) else cond
    while isinstance(cond, exp.Paren):
        cond = cond.this
    if isinstance(cond, exp.Connector):
        lu, lc = flatten_condition(cond.this)
        ru, rc = flatten_condition(cond.expression)
        return lu + ru, [*lc, "or" if isinstance(cond, exp.Or) else "and", *rc]
    return [cond], []


@dataclass
class _Unit:
    negated: bool
    like: bool
    nested: int


def _unit(cond: exp.Expression) -> _Unit:
    negated = False
    while isinstance(cond, (exp.Not, exp.Paren)):
        negated = negated or isinstance(cond, exp.Not)
        cond = cond.this
    like = isinstance(cond, (exp.Like, exp.ILike))
    # values of the condition that are queries: `x IN (SELECT ..)`, `x > (SELECT ..)`, EXISTS (SELECT ..)
    values: list[Any] = []
    if isinstance(cond, exp.In):
        values = [cond.args.get("query"), *(cond.expressions or [])]
    elif isinstance(cond, exp.Between):
        values = [cond.args.get("low"), cond.args.get("high")]
    elif isinstance(cond, exp.Exists):
        values = [cond.this]
    elif isinstance(cond, exp.Binary):
        values = [cond.expression]
    nested = sum(
        1 for v in values if v is not None and isinstance(unwrap_query(_strip(v)), (exp.Select, exp.SetOperation))
    )
    return _Unit(negated, like, nested)


def _left_select(node: exp.Expression) -> tuple[exp.Select | None, bool]:
    """The left-most SELECT of a query and whether it is the left side of a set operation."""
    node = unwrap_query(node)
    set_op = False
    while isinstance(node, exp.SetOperation):
        set_op = True
        node = unwrap_query(node.this)
    return (node if isinstance(node, exp.Select) else None), set_op


def count_components(sql: str | exp.Expression) -> HardnessCounts:
    """The official component1 / component2 / others counts of a query (Spider's string convention)."""
    tree = parse_sql(sql, spider_strings=True) if isinstance(sql, str) else sql
    select, set_op = _left_select(tree)
    if select is None:
        return HardnessCounts(0, int(set_op), 0)

    joins = select.args.get("joins") or []
    n_sources = (1 if get_arg(select, "from") is not None else 0) + len(joins)
    on_units, on_conn = [], []
    for join in joins:
        u, c = flatten_condition(join.args.get("on"))
        if on_units and u:
            on_conn.append("and")  # Spider joins the ON conditions of successive joins with 'and'
        on_units += u
        on_conn += c
    where_units, where_conn = flatten_condition(select.args.get("where"))
    having_units, having_conn = flatten_condition(select.args.get("having"))
    group = select.args.get("group")
    group_exprs = list(group.expressions) if group is not None else []
    order = select.args.get("order")
    ordered = [o.this for o in order.expressions] if order is not None else []

    units = [_unit(u) for u in (*on_units, *where_units, *having_units)]
    c1 = sum(
        [
            bool(where_units),
            bool(group_exprs),
            bool(ordered),
            select.args.get("limit") is not None,
            max(n_sources - 1, 0),
            sum(c == "or" for c in (*on_conn, *where_conn, *having_conn)),
            sum(u.like for u in units),
        ]
    )
    c2 = sum(u.nested for u in units) + int(set_op)

    agg = 0
    for item in select.expressions:  # a projection is aggregated when it starts with an aggregate
        node = _strip(item)
        while isinstance(node, _ARITHMETIC):
            node = _strip(node.this)
        agg += _is_agg(node)
    agg += sum(_unit(u).negated for u in where_units)  # official quirk: reads the `not` flag
    agg += sum(_is_agg(g) for g in group_exprs)
    for o in ordered:  # each side of an arithmetic ORDER BY expression counts
        o = _strip(o)
        agg += _is_agg(o.this) + _is_agg(o.expression) if isinstance(o, _ARITHMETIC) else _is_agg(o)
    agg += len(having_conn) + sum(_unit(u).negated for u in having_units)  # official quirk: 'and'/'or' count

    others = sum([agg > 1, len(select.expressions) > 1, len(where_units) > 1, len(group_exprs) > 1])
    return HardnessCounts(c1, c2, others)


def hardness(sql: str | exp.Expression) -> str:
    """Spider hardness level of a (gold) query: 'easy', 'medium', 'hard' or 'extra'."""
    return count_components(sql).level


# ---------------------------------------------------------------------------------------------
# Spider-dict side (the reference)


def _conds(conds: list[Any]) -> tuple[list[Any], list[str]]:
    return conds[::2], conds[1::2]


def hardness_of_spider_sql(sql: dict[str, Any]) -> str:
    """The official rules applied to a Spider-parsed query dict (the `sql` field of dev.json)."""
    units_from, conn_from = _conds(sql["from"]["conds"])
    units_where, conn_where = _conds(sql["where"])
    units_having, conn_having = _conds(sql["having"])
    units = units_from + units_where + units_having
    like_id = 9  # index of 'like' in Spider's WHERE_OPS
    c1 = (
        bool(sql["where"])
        + bool(sql["groupBy"])
        + bool(sql["orderBy"])
        + (sql["limit"] is not None)
        + max(len(sql["from"]["table_units"]) - 1, 0)
        + sum(c == "or" for c in conn_from + conn_where + conn_having)
        + sum(u[1] == like_id for u in units)
    )
    c2 = sum(isinstance(u[3], dict) + isinstance(u[4], dict) for u in units)
    c2 += sum(sql[k] is not None for k in ("intersect", "except", "union"))

    def n_agg(items: Iterable[Any]) -> int:
        return sum(1 for it in items if it[0] != 0)  # first field: agg id (or the quirks above)

    agg = n_agg(sql["select"][1]) + n_agg(units_where) + n_agg(sql["groupBy"])
    if sql["orderBy"]:
        agg += n_agg([u[1] for u in sql["orderBy"][1] if u[1]] + [u[2] for u in sql["orderBy"][1] if u[2]])
    agg += n_agg(sql["having"])
    others = sum([agg > 1, len(sql["select"][1]) > 1, len(sql["where"]) > 1, len(sql["groupBy"]) > 1])
    return _level(c1, c2, others)


def distribution(levels: Iterable[str]) -> dict[str, int]:
    counts = Counter(levels)
    return {level: counts.get(level, 0) for level in HARDNESS_LEVELS}
