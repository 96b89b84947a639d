"""AST-guided decomposition of a SQL query into ordered, runnable subtasks (LearNAT's skeleton).

`decompose(sql)` walks the sqlglot AST and emits one `Subtask` per clause, in the order a person would
build the query:

1. CTEs and nested queries first, innermost first (FROM-derived tables, then WHERE, HAVING, projection
   and ORDER BY subqueries, each in textual order); a correlated subquery (one that reads a table of
   an enclosing query) cannot run on its own and stays part of its outer clause;
2. then, for each SELECT: `from` (`SELECT * FROM ... JOIN ...`), `where` (adds WHERE), `group`
   (projects the group keys), `having`, `order` (ORDER BY and/or LIMIT), and `select` (the complete
   SELECT with its projection and DISTINCT);
3. for a set operation, the steps of its left operand, of its right operand, then `set_op` (the whole
   UNION/INTERSECT/EXCEPT with its ORDER BY/LIMIT).

Every partial SQL is a complete query that SQLite can run (select aliases used by WHERE/GROUP BY/
HAVING/ORDER BY are carried into the partial projection), and the last step is the input query itself
(printed by sqlglot). Each step has a deterministic template sub-question; an LLM may rephrase it.

`is_partial_subtree(step, gold)` is LearNAT's pruning test, defined on normalised ASTs: see its docstring.

>>> [s.kind for s in decompose("SELECT name FROM singer WHERE age > 20 ORDER BY age")]
['from', 'where', 'order', 'select']
>>> decompose("SELECT name FROM singer WHERE age > 20")[1].sql
'SELECT * FROM singer WHERE age > 20'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlglot import exp

from prunekit.nl2sql.sqlast import (
    DIALECT,
    conjuncts,
    get_arg,
    iter_child_queries,
    iter_scope,
    normalize,
    parse_sql,
    query_nodes,
    set_arg,
    unwrap_query,
)

__all__ = ["STEP_KINDS", "Subtask", "decompose", "is_partial_subtree"]

STEP_KINDS = ("cte", "from", "where", "group", "having", "order", "select", "set_op")

_SET_WORDS = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}


@dataclass(frozen=True)
class Subtask:
    """One step: a runnable partial query and the sub-question it answers.

    `scope` names the (sub)query the step belongs to ("main", "subquery 1", "cte x", "main/left"...);
    `depends_on` lists the steps whose results this one builds on (the previous step of the same
    scope and the final steps of the nested queries and CTEs it uses).
    """

    index: int
    kind: str
    sql: str
    question: str
    scope: str = "main"
    depends_on: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sql(node: exp.Expression) -> str:
    # only called on private copies: skip the defensive deep copy sqlglot makes before printing
    return node.sql(dialect=DIALECT, copy=False)


def _with(ctes: Sequence[exp.CTE], recursive: bool) -> exp.With | None:
    if not ctes:
        return None
    return exp.With(expressions=[c.copy() for c in ctes], recursive=recursive or None)


def _attach_with(query: exp.Expression, ctes: Sequence[exp.CTE], recursive: bool) -> exp.Expression:
    """`query` (copied) with the visible CTEs prepended to its own WITH, if any."""
    query = query.copy()
    if not ctes:
        return query
    own = get_arg(query, "with")
    merged = [c.copy() for c in ctes] + (list(own.expressions) if own is not None else [])
    set_arg(
        query,
        "with",
        exp.With(expressions=merged, recursive=(recursive or bool(own and own.args.get("recursive"))) or None),
    )
    return query


def _table_names(node: exp.Expression) -> set[str]:
    names = set()
    for t in node.find_all(exp.Table):
        names.add(t.name.lower())
        if t.alias:
            names.add(t.alias.lower())
    for s in node.find_all(exp.Subquery):
        if s.alias:
            names.add(s.alias.lower())
    for c in node.find_all(exp.CTE):
        names.add(c.alias.lower())
    return names


def _is_correlated(query: exp.Expression) -> bool:
    """Whether a nested query reads a qualified column of a table it does not define itself."""
    defined = _table_names(query)
    return any(c.table and c.table.lower() not in defined for c in query.find_all(exp.Column))


def _alias_refs(select: exp.Select, clauses: Sequence[str]) -> list[exp.Alias]:
    """The projection aliases of `select` that the given clauses refer to by bare name."""
    aliases = {a.alias.lower(): a for a in select.expressions if isinstance(a, exp.Alias)}
    if not aliases:
        return []
    used: list[exp.Alias] = []
    for key in clauses:
        clause = select.args.get(key)
        if clause is None:
            continue
        nodes = [clause, *iter_scope(clause)]
        for col in nodes:
            if isinstance(col, exp.Column) and not col.table and col.name.lower() in aliases:
                alias = aliases[col.name.lower()]
                if alias not in used:
                    used.append(alias)
    return used


def _partial(
    select: exp.Select,
    clauses: Sequence[str],
    projection: Sequence[exp.Expression] | None,
    ctes: Sequence[exp.CTE],
    recursive: bool,
) -> exp.Select:
    """A SELECT with `select`'s FROM/JOINs, the given clauses, and `projection` (None: `*`)."""
    out = exp.Select()
    from_ = get_arg(select, "from")
    if from_ is not None:
        set_arg(out, "from", from_.copy())
    if select.args.get("joins"):
        out.set("joins", [j.copy() for j in select.args["joins"]])
    for key in clauses:
        clause = select.args.get(key)
        if clause is not None:
            out.set(key, clause.copy())
    items: list[exp.Expression] = [exp.Star()] if projection is None else [p.copy() for p in projection]
    used = _alias_refs(select, [*clauses])
    items += [a.copy() for a in used if all(a.alias != getattr(p, "alias", None) for p in items)]
    out.set("expressions", items)
    w = _with(ctes, recursive)
    if w is not None:
        set_arg(out, "with", w)
    return out


def _group_projection(select: exp.Select) -> list[exp.Expression] | None:
    group = select.args.get("group")
    if group is None:
        return None
    aliases = {a.alias.lower() for a in select.expressions if isinstance(a, exp.Alias)}
    keys: list[exp.Expression] = []
    for key in group.expressions:
        is_alias_ref = isinstance(key, exp.Column) and not key.table and key.name.lower() in aliases
        is_position = isinstance(key, exp.Literal) and not key.is_string
        if is_alias_ref or is_position or any(k == key for k in keys):
            continue
        keys.append(key)
    return keys or None


def _render_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


class _Builder:
    def __init__(self) -> None:
        self.steps: list[Subtask] = []
        self.n_subqueries = 0
        self.final_of: dict[int, int] = {}  # id(query node) -> index of its final step

    def add(self, kind: str, query: exp.Expression, question: str, scope: str, depends: Sequence[int]) -> int:
        index = len(self.steps)
        deps = tuple(sorted({d for d in depends if d is not None and d < index}))
        self.steps.append(Subtask(index, kind, _sql(query), question, scope, deps))
        return index

    # -- queries ------------------------------------------------------------------------------

    def query(self, node: exp.Expression, scope: str, ctes: list[exp.CTE], recursive: bool) -> int:
        node = unwrap_query(node)
        ctes = list(ctes)
        deps: list[int] = []
        own = get_arg(node, "with")
        rec = recursive or bool(own is not None and own.args.get("recursive"))
        if own is not None:
            for cte in own.expressions:
                if own.args.get("recursive"):
                    # a recursive CTE reads itself: one step that materialises it
                    probe = exp.Select(expressions=[exp.Star()]).from_(exp.to_table(cte.alias))
                    set_arg(probe, "with", _with([*ctes, cte], True))
                    deps.append(
                        self.add(
                            "cte",
                            probe,
                            f"What rows does the recursive CTE {cte.alias} produce?",
                            f"cte {cte.alias}",
                            [],
                        )
                    )
                else:
                    deps.append(self.query(cte.this, f"cte {cte.alias}", ctes, rec))
                ctes.append(cte)
        stripped = node.copy()
        set_arg(stripped, "with", None)
        if isinstance(node, exp.SetOperation):
            return self.set_operation(node, stripped, scope, ctes, rec, deps)
        if isinstance(node, exp.Select):
            return self.select(node, stripped, scope, ctes, rec, deps)
        return self.add("select", _attach_with(stripped, ctes, rec), "What does this query return?", scope, deps)

    def nested(self, select: exp.Select, ctes: list[exp.CTE], recursive: bool) -> list[int]:
        """Decompose the non-correlated queries nested in `select`'s clauses, in clause order."""
        finals: list[int] = []
        for key in ("from", "joins", "where", "group", "having", "expressions", "order"):
            arg = get_arg(select, key)
            parts = arg if isinstance(arg, list) else [arg] if arg is not None else []
            for part in parts:
                for child in [part] if isinstance(part, (exp.Select, exp.SetOperation)) else iter_child_queries(part):
                    if _is_correlated(child):
                        continue
                    self.n_subqueries += 1
                    finals.append(self.query(child, f"subquery {self.n_subqueries}", ctes, recursive))
        return finals

    def select(
        self, original: exp.Select, select: exp.Select, scope: str, ctes: list[exp.CTE], rec: bool, deps: list[int]
    ) -> int:
        deps = deps + self.nested(select, ctes, rec)
        prev: int | None = None
        clauses: list[str] = []
        has_from = get_arg(select, "from") is not None
        if has_from:
            prev = self.add("from", _partial(select, [], None, ctes, rec), self._from_question(select), scope, deps)
        for key in ("where", "group", "having"):
            if select.args.get(key) is None:
                continue
            clauses.append(key)
            projection = None if key == "where" else _group_projection(select)
            question = {
                "where": lambda: f"Which of these rows satisfy {_sql(select.args['where'].this)}?",
                "group": lambda: (
                    "How do these rows group by "
                    + _render_list([_sql(e) for e in select.args["group"].expressions])
                    + "?"
                ),
                "having": lambda: f"Which of these groups satisfy {_sql(select.args['having'].this)}?",
            }[key]()
            prev = self.add(
                key,
                _partial(select, clauses, projection, ctes, rec),
                question,
                scope,
                [prev, *deps] if prev is None else [prev],
            )
        if has_from and (select.args.get("order") is not None or select.args.get("limit") is not None):
            clauses += [k for k in ("order", "limit", "offset") if select.args.get(k) is not None]
            projection = _group_projection(select)
            prev = self.add(
                "order", _partial(select, clauses, projection, ctes, rec), self._order_question(select), scope, [prev]
            )
        final = _attach_with(select, ctes, rec)
        return self.add("select", final, self._select_question(select), scope, [prev] if prev is not None else deps)

    def set_operation(
        self,
        original: exp.SetOperation,
        node: exp.SetOperation,
        scope: str,
        ctes: list[exp.CTE],
        rec: bool,
        deps: list[int],
    ) -> int:
        left = self.query(node.this, f"{scope}/left", ctes, rec)
        right = self.query(node.expression, f"{scope}/right", ctes, rec)
        word = _SET_WORDS.get(type(node), "UNION")
        phrase = {
            "UNION": f"Which rows are in the result of step {left} or in that of step {right}?",
            "INTERSECT": f"Which rows are in both the result of step {left} and that of step {right}?",
            "EXCEPT": f"Which rows of the result of step {left} are not in that of step {right}?",
        }[word]
        if word == "UNION" and not node.args.get("distinct", True):
            phrase = f"What are all the rows of step {left} followed by those of step {right}, duplicates kept?"
        if node.args.get("order") is not None or node.args.get("limit") is not None:
            phrase += " " + self._order_question(node)
        return self.add("set_op", _attach_with(node, ctes, rec), phrase, scope, [left, right, *deps])

    # -- templates ----------------------------------------------------------------------------

    @staticmethod
    def _source(item: exp.Expression) -> str:
        if isinstance(item, exp.Table):
            return item.name + (f" (as {item.alias})" if item.alias and item.alias != item.name else "")
        return "a nested query" + (f" (as {item.alias})" if item.alias else "")

    def _from_question(self, select: exp.Select) -> str:
        from_ = get_arg(select, "from")
        joins = select.args.get("joins") or []
        sources = [self._source(from_.this)] + [self._source(j.this) for j in joins]
        if not joins:
            return f"Which rows does {sources[0]} hold?"
        conds = [_sql(j.args["on"]) for j in joins if j.args.get("on") is not None]
        text = f"Which rows come from joining {_render_list(sources)}"
        return text + (f" on {_render_list(conds)}?" if conds else "?")

    @staticmethod
    def _order_question(node: exp.Expression) -> str:
        parts = []
        order = node.args.get("order")
        if order is not None:
            keys = [_sql(o.this) + (" descending" if o.args.get("desc") else "") for o in order.expressions]
            parts.append(f"sorted by {_render_list(keys)}")
        limit = node.args.get("limit")
        if limit is not None:
            n = limit.expression if isinstance(limit, exp.Limit) else limit
            parts.append(f"keeping the first {_sql(n)}")
        return "What are they " + ", ".join(parts) + "?"

    @staticmethod
    def _select_question(select: exp.Select) -> str:
        items = [_sql(e) for e in select.expressions]
        distinct = "distinct " if select.args.get("distinct") is not None else ""
        return f"What are the {distinct}{_render_list(items)} of the result?"


def decompose(sql: str | exp.Expression, *, spider_strings: bool = False) -> list[Subtask]:
    """The ordered subtasks of a query; the last one's SQL is the query itself (see the module doc).

    `spider_strings=True` reads double-quoted tokens as string literals first (Spider's gold SQL).
    """
    tree = parse_sql(sql, spider_strings=spider_strings)
    root = unwrap_query(tree)
    if not isinstance(root, (exp.Select, exp.SetOperation)):
        raise ValueError(f"only queries can be decomposed, got {tree.key.upper()}")
    builder = _Builder()
    builder.query(root, "main", [], False)
    return builder.steps


# ---------------------------------------------------------------------------------------------
# LearNAT pruning: is a step's AST part of the gold AST?


def _key(node: exp.Expression) -> str:
    # normalised trees are private copies and SQLite's generator transforms do not fire on SQLite input
    return node.sql(dialect=DIALECT, copy=False)


def _from_atoms(select: exp.Select) -> tuple[set[str], set[str]]:
    """(sources with their join kind, ON conjuncts) of a normalised SELECT."""
    sources: set[str] = set()
    conds: set[str] = set()
    from_ = get_arg(select, "from")
    if from_ is not None:
        sources.add(_key(from_.this))
    for j in select.args.get("joins") or []:
        kind = " ".join(p for p in (j.args.get("side"), j.args.get("kind")) if p).upper()
        sources.add((kind + " " if kind and kind != "CROSS" else "") + _key(j.this))
        conds.update(_key(c) for c in conjuncts(j.args.get("on")))
    return sources, conds


def _occurs_in(expr: exp.Expression, tree: exp.Expression) -> bool:
    key = _key(expr)
    return any(_key(n) == key for n in tree.walk() if type(n) is type(expr))


def _select_embeds(step: exp.Select, gold: exp.Select) -> bool:
    s_src, s_on = _from_atoms(step)
    g_src, g_on = _from_atoms(gold)
    if not s_src <= g_src or not s_on <= g_on:
        return False
    for key in ("where", "having"):
        s_c = {_key(c) for c in conjuncts(step.args.get(key))}
        # a gold ON condition written in the step's WHERE (or the reverse) is the same join
        g_c = {_key(c) for c in conjuncts(gold.args.get(key))} | (g_on if key == "where" else set())
        if not s_c <= g_c:
            return False
    s_group = step.args.get("group")
    g_group = gold.args.get("group")
    if s_group is not None and (
        g_group is None or not {_key(e) for e in s_group.expressions} <= {_key(e) for e in g_group.expressions}
    ):
        return False
    for key in ("order", "limit", "offset"):
        s_part = step.args.get(key)
        if s_part is not None and (gold.args.get(key) is None or _key(s_part) != _key(gold.args[key])):
            return False
    if step.args.get("distinct") is not None and gold.args.get("distinct") is None:
        return False
    projection = [e for e in step.expressions if not isinstance(e, exp.Star)]
    return all(_occurs_in(e, gold) for e in projection)


def _embeds(step: exp.Expression, gold: exp.Expression) -> bool:
    step, gold = unwrap_query(step), unwrap_query(gold)
    if isinstance(step, exp.Select) and isinstance(gold, exp.Select):
        return _select_embeds(step, gold)
    if isinstance(step, exp.SetOperation) and type(step) is type(gold):
        same_mods = all(
            step.args.get(k) is None or (gold.args.get(k) is not None and _key(step.args[k]) == _key(gold.args[k]))
            for k in ("order", "limit")
        )
        return (
            same_mods
            and bool(step.args.get("distinct", True)) == bool(gold.args.get("distinct", True))
            and _embeds(step.this, gold.this)
            and _embeds(step.expression, gold.expression)
        )
    return False


def is_partial_subtree(
    step_sql: str | exp.Expression,
    gold_sql: str | exp.Expression,
    *,
    schema: Mapping[str, set[str]] | None = None,
    spider_strings: bool = True,
) -> bool:
    """LearNAT's pruning test: is the step's query a part of the gold query's AST?

    Both queries are normalised (`sqlast.normalize`: case, quoting, table and projection aliases,
    redundant parentheses, operand order of `=`). The step S is a partial subtree of the gold G iff
    some query node Q of G (the whole query, a set-operation operand, a CTE body or any nested
    subquery) embeds S, where a SELECT S embeds in a SELECT Q when S is Q with parts deleted:

    - S's FROM sources (with their join kind) are a subset of Q's, and its ON conjuncts a subset of
      Q's ON conjuncts;
    - S's WHERE conjuncts are a subset of Q's WHERE conjuncts together with Q's ON conjuncts (an
      implicit join written in WHERE is the same join); S's HAVING conjuncts a subset of Q's;
    - S's GROUP BY keys are a subset of Q's;
    - S's ORDER BY, LIMIT and OFFSET are absent or identical to Q's; DISTINCT only if Q has it;
    - each projected expression of S other than `*` is a subtree of Q (so the group keys, one
      aggregate or the final projection all qualify);

    and a set operation S embeds in a set operation Q of the same kind (and ALL-ness) when the left
    and right operands embed pairwise and S's ORDER BY/LIMIT are absent or equal to Q's. Values and
    nested subqueries are compared exactly (after normalisation): a step with `age > 30` is not part
    of a gold with `age > 40`. Every step produced by `decompose(gold)` passes this test.
    """
    step = normalize(step_sql, schema=schema, spider_strings=spider_strings)
    if isinstance(gold_sql, str) and schema is None:
        gold_queries = _gold_queries(gold_sql, spider_strings)
    else:
        gold_queries = tuple(query_nodes(normalize(gold_sql, schema=schema, spider_strings=spider_strings)))
    step_root = unwrap_query(step)
    if not isinstance(step_root, (exp.Select, exp.SetOperation)):
        return False
    # CTEs of the step may be the gold's CTEs: compare the bodies without the WITH
    if get_arg(step_root, "with") is not None:
        step_root = step_root.copy()
        set_arg(step_root, "with", None)
    return any(_embeds(step_root, q) for q in gold_queries)


@functools.lru_cache(maxsize=256)
def _gold_queries(gold_sql: str, spider_strings: bool) -> tuple[exp.Expression, ...]:
    # a search checks many steps against one gold query: normalise it once (never mutated after)
    return tuple(query_nodes(normalize(gold_sql, spider_strings=spider_strings)))
