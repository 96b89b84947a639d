"""Exact-set match (Spider's "EM") through sqlglot normalisation: a documented approximation.

Spider's official EM parses both queries with its own parser into clause structures, drops values,
and declares a match when every clause agrees as a set. We do the same on sqlglot ASTs:

1. Parse both (double-quoted tokens are strings, as in Spider) and normalise them
   (`nl2sql.sqlast.normalize`): identifiers lower-cased, table aliases resolved, projection aliases
   removed; given a schema, every column is qualified by its table and, as the official `kmap` does,
   replaced by a canonical member of its foreign-key class (`a.x` referencing `b.y` counts as `b.y`).
   DISTINCT is ignored everywhere (the official `DISABLE_DISTINCT`). A prediction that does not parse
   scores 0.
2. Read each query as Spider does: the left-most SELECT, with the right side of a set operation
   nested under `union` / `intersect` / `except` (`A UNION B EXCEPT C` is `A union (B except C)`).
3. Compare these components; all must be equal:
   - `select`: multiset of projections (aggregate and expression);
   - `from`: multiset of sources (table names; derived tables by their own components);
   - `where`: multiset of condition units (negation, operator, left operand) and the set of AND/OR
     connectors; values on the right of a condition are ignored, as in the official
     `DISABLE_VALUE` (a column there is ignored too), except nested queries, compared recursively;
   - `group`: multiset of group-by column names, table dropped (as the official `eval_group`);
   - `having`: group keys and HAVING units together (as the official `eval_having`);
   - `order`: the ORDER BY expressions in order with the direction, and whether LIMIT is present
     (its value ignored);
   - `keywords`: the set of clause keywords (where, group, having, order, asc/desc, limit, or, not,
     in, like, union, intersect, except);
   - `iuen`: the nested right side of each set operation, compared recursively.

Known differences: condition units are read flat through parentheses like Spider's parser, but the
left operand of `col = col` is the one that sorts first (normalisation orders `=` operands), so
swapped join equalities still match; JOIN ON conditions are not compared (as in the official EM);
queries Spider's parser rejects (e.g. comma joins) are still scored here.

>>> exact_match("SELECT T1.name FROM singer AS T1 WHERE T1.age > 20", "select name from singer where age > 30")
True
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from prunekit.eval.spider.hardness import flatten_condition  # one reading of conditions for both metrics
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.schema import Schema
from prunekit.nl2sql.sqlast import DIALECT, get_arg, normalize, parse_sql, unwrap_query

__all__ = ["EMComponents", "components", "exact_match", "fk_canonical_map"]

_SET_KEYS = {exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except"}


@dataclass
class EMComponents:
    select: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    where: Counter[str] = field(default_factory=Counter)
    connectors: frozenset[str] = frozenset()
    group: Counter[str] = field(default_factory=Counter)
    having: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    order: tuple[Any, ...] = ()
    keywords: frozenset[str] = frozenset()
    iuen: dict[str, EMComponents] = field(default_factory=dict)

    def signature(self) -> tuple[Any, ...]:
        """A hashable, order-independent form (for comparing nested queries)."""
        return (
            tuple(sorted(self.select.items())),
            tuple(sorted(self.sources.items())),
            tuple(sorted(self.where.items())),
            tuple(sorted(self.connectors)),
            tuple(sorted(self.group.items())),
            self.having,
            self.order,
            tuple(sorted(self.keywords)),
            tuple(sorted((k, v.signature()) for k, v in self.iuen.items())),
        )

    def differences(self, other: EMComponents) -> list[str]:
        """Names of the components that differ (empty when the queries match)."""
        names = ["select", "sources", "where", "connectors", "group", "having", "order", "keywords"]
        diff = [n for n in names if getattr(self, n) != getattr(other, n)]
        for key in ("union", "intersect", "except"):
            a, b = self.iuen.get(key), other.iuen.get(key)
            if (a is None) != (b is None) or (a is not None and b is not None and a.differences(b)):
                diff.append(key)
        return diff


def fk_canonical_map(schema: Schema) -> dict[str, str]:
    """'table.column' (lower-case) -> the representative of its foreign-key class (smallest name)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for fk in schema.foreign_keys:
        a = f"{fk.table}.{fk.column}".lower()
        b = f"{fk.ref_table}.{fk.ref_column}".lower()
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            parent[hi] = lo
            parent.setdefault(lo, lo)
    return {x: find(x) for x in parent}


def _mask(node: exp.Expression) -> exp.Expression:
    """A copy without values (literals become `value`) and without DISTINCT."""

    def strip(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Literal):
            return exp.var("value")
        if isinstance(n, exp.Distinct) and not isinstance(n.parent, exp.Select):
            return n.expressions[0] if len(n.expressions) == 1 else n
        return n

    return node.copy().transform(strip, copy=False)


def _key(node: exp.Expression) -> str:
    return _mask(node).sql(dialect=DIALECT, copy=False)


def _query_of(node: exp.Expression | None) -> exp.Expression | None:
    if node is None:
        return None
    node = unwrap_query(node)
    while isinstance(node, exp.Paren):
        node = unwrap_query(node.this)
    return node if isinstance(node, (exp.Select, exp.SetOperation)) else None


def _unit(cond: exp.Expression) -> tuple[str, bool, str]:
    """(key, negated, operator) of one condition unit; right-hand values are dropped."""
    negated = False
    while isinstance(cond, (exp.Not, exp.Paren)):
        negated = negated or isinstance(cond, exp.Not)
        cond = cond.this
    op = type(cond).__name__.lower()
    left = cond.this if isinstance(cond, (exp.Binary, exp.In, exp.Between, exp.Like)) else cond
    nested: list[str] = []
    values: list[Any] = []
    if isinstance(cond, exp.In):
        values = [cond.args.get("query")]
    elif isinstance(cond, exp.Binary):
        values = [cond.expression]
    elif isinstance(cond, exp.Between):
        values = [cond.args.get("low"), cond.args.get("high")]
    for v in values:
        q = _query_of(v)
        if q is not None:
            nested.append(repr(_components(q).signature()))
    left_key = _key(left) if isinstance(left, exp.Expression) else ""
    return f"{'not ' if negated else ''}{op}({left_key})[{';'.join(nested)}]", negated, op


def _select_components(select: exp.Select) -> EMComponents:
    comp = EMComponents()
    comp.select = Counter(_key(e) for e in select.expressions)
    from_ = get_arg(select, "from")
    items = ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]
    for item in items:
        q = _query_of(item) if isinstance(item, exp.Subquery) else None
        comp.sources[repr(_components(q).signature()) if q is not None else _key(item)] += 1

    keywords: set[str] = set()
    where_units, where_conn = flatten_condition(select.args.get("where"))
    having_units, having_conn = flatten_condition(select.args.get("having"))
    on_units: list[exp.Expression] = []
    on_conn: list[str] = []
    for join in select.args.get("joins") or []:
        u, c = flatten_condition(join.args.get("on"))
        on_units += u
        on_conn += c
    parsed_where = [_unit(u) for u in where_units]
    comp.where = Counter(k for k, _, _ in parsed_where)
    comp.connectors = frozenset(where_conn)
    all_units = parsed_where + [_unit(u) for u in having_units + on_units]
    if where_units:
        keywords.add("where")
    group = select.args.get("group")
    group_exprs = list(group.expressions) if group is not None else []
    comp.group = Counter((g.name if isinstance(g, exp.Column) else _key(g)) for g in group_exprs)
    if group_exprs:
        keywords.add("group")
    if having_units:
        keywords.add("having")
    if group_exprs or having_units:
        comp.having = (
            tuple(_key(g) for g in group_exprs),
            tuple(_unit(u)[0] for u in having_units) + tuple(having_conn),
        )
    order = select.args.get("order")
    limit = select.args.get("limit") is not None
    if order is not None:
        terms = tuple(_key(o.this) for o in order.expressions)
        direction = "desc" if any(o.args.get("desc") for o in order.expressions) else "asc"
        comp.order = (direction, terms, limit)
        keywords.update({"order", direction})
    elif limit:
        comp.order = ("", (), True)
    if limit:
        keywords.add("limit")
    if "or" in where_conn + having_conn + on_conn:
        keywords.add("or")
    if any(neg for _, neg, _ in all_units):
        keywords.add("not")
    if any(op == "in" for _, _, op in all_units):
        keywords.add("in")
    if any(op in ("like", "ilike") for _, _, op in all_units):
        keywords.add("like")
    comp.keywords = frozenset(keywords)
    return comp


def _components(node: exp.Expression) -> EMComponents:
    """Spider's reading of a query: the left-most SELECT, set operations nested to the right."""
    node = unwrap_query(node)
    operands: list[exp.Expression] = []
    ops: list[str] = []

    def walk(n: exp.Expression) -> None:
        n = unwrap_query(n)
        if isinstance(n, exp.SetOperation):
            walk(n.this)
            ops.append(_SET_KEYS.get(type(n), "union"))
            operands.append(unwrap_query(n.expression))
        else:
            operands.append(n)

    walk(node)
    comps = [(_select_components(o) if isinstance(o, exp.Select) else _components(o)) for o in operands]
    for i in range(len(comps) - 1, 0, -1):
        comps[i - 1].iuen[ops[i - 1]] = comps[i]
    if ops:
        comps[0].keywords = comps[0].keywords | {ops[0]}
    return comps[0]


def components(sql: str | exp.Expression, schema: Schema | None = None) -> EMComponents:
    """The components compared by `exact_match` (see the module docstring)."""
    tree = normalize(
        parse_sql(sql, spider_strings=True) if isinstance(sql, str) else sql,
        schema=schema.column_sets() if schema else None,
    )
    if schema is not None:
        fk = fk_canonical_map(schema)
        for col in tree.find_all(exp.Column):
            key = f"{col.table}.{col.name}"
            if col.table and key in fk:
                table, name = fk[key].split(".", 1)
                col.set("table", exp.to_identifier(table))
                col.set("this", exp.to_identifier(name))
    return _components(tree)


def exact_match(pred_sql: str, gold_sql: str, schema: Schema | None = None) -> bool:
    """Whether the prediction matches the gold component by component, values ignored."""
    gold = components(gold_sql, schema)
    try:
        pred = components(pred_sql, schema)
    except SQLError:
        return False
    return not gold.differences(pred)
