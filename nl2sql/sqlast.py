"""Small helpers over sqlglot ASTs shared by decomposition, margins and the Spider evaluator.

Pure functions, no I/O. The one place that knows sqlglot's argument names (which moved between
versions: `from` became `from_`), how Spider writes string values, and what "normalised" means:

- `parse_sql`: exactly one statement, parsed with the SQLite dialect; `spider_strings=True` first
  rewrites double-quoted tokens as string literals, as Spider's own tokenizer does (Spider's gold SQL
  writes `name = "John"`; to SQLite that is an identifier that falls back to a string).
- `normalize`: a copy of the tree where identifiers are lower-cased and unquoted, table aliases are
  replaced by the table name (kept, lower-cased, when a table occurs twice in one scope), columns are
  qualified by their table where it is known (the scope reads one table, or a schema says), projection
  aliases are removed (and references to them in WHERE/GROUP BY/HAVING/ORDER BY replaced by the aliased
  expression) except where an outer query reads them (derived tables, CTEs), parentheses around
  expressions are dropped, `INNER`/`OUTER` join words and default null ordering are dropped, and
  the operands of `=`/`!=` are put in a canonical order.
- `canonical_sql`: the normalised tree printed back as SQLite text, the key for "equal up to
  normalisation".

>>> canonical_sql('SELECT T1.Name AS n FROM Singer AS T1 WHERE T1.age > 20 ORDER BY n')
'SELECT singer.name FROM singer WHERE singer.age > 20 ORDER BY singer.name'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from prunekit.nl2sql.errors import SQLParseError

__all__ = [
    "DIALECT",
    "canonical_sql",
    "conjuncts",
    "double_quotes_to_strings",
    "get_arg",
    "iter_child_queries",
    "iter_scope",
    "normalize",
    "parse_sql",
    "query_nodes",
    "set_arg",
    "source_names",
    "unwrap_query",
]

DIALECT = "sqlite"

# sqlglot renamed some argument keys (`from` -> `from_`, `with` -> `with_`); read both spellings.
_ARG_SPELLINGS: dict[str, tuple[str, ...]] = {"from": ("from_", "from"), "with": ("with_", "with")}


def get_arg(node: exp.Expression, name: str) -> Any:
    """`node.args[name]` under either of sqlglot's spellings of `name` (`from`/`from_`, `with`/`with_`)."""
    for key in _ARG_SPELLINGS.get(name, (name,)):
        if key in node.args:
            return node.args[key]
    return None


def set_arg(node: exp.Expression, name: str, value: Any) -> None:
    """Set `node.args[name]` under the spelling this sqlglot uses."""
    spellings = _ARG_SPELLINGS.get(name, (name,))
    for key in spellings:
        if key in node.arg_types:
            node.set(key, value)
            return
    node.set(spellings[0], value)


def double_quotes_to_strings(sql: str) -> str:
    """Rewrite every double-quoted token of `sql` as a single-quoted string literal (Spider's convention).

    Single-quoted strings, backtick and bracket identifiers and comments are left alone.

    >>> double_quotes_to_strings('SELECT a FROM t WHERE b = "it\\'s"')
    "SELECT a FROM t WHERE b = 'it''s'"
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'`[":
            close = {"'": "'", "`": "`", "[": "]"}[c]
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:  # doubled quote escapes itself
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif c == '"':
            j = i + 1
            chars: list[str] = []
            while j < n:
                if sql[j] == '"':
                    if j + 1 < n and sql[j + 1] == '"':
                        chars.append('"')
                        j += 2
                        continue
                    break
                chars.append(sql[j])
                j += 1
            out.append("'" + "".join(chars).replace("'", "''") + "'")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_sql(sql: str | exp.Expression, *, spider_strings: bool = False) -> exp.Expression:
    """Parse exactly one SQLite statement; raise `SQLParseError` with sqlglot's reason otherwise.

    An expression passed in is returned as it is (not copied).
    """
    if isinstance(sql, exp.Expression):
        return sql
    text = double_quotes_to_strings(sql) if spider_strings else sql
    try:
        statements = sqlglot.parse(text, read=DIALECT)
    except (SqlglotError, RecursionError, ValueError) as err:
        raise SQLParseError(f"the SQL does not parse: {str(err).splitlines()[0][:200]}", sql) from err
    statements = [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)]
    if len(statements) != 1:
        raise SQLParseError(f"expected exactly one SQL statement, got {len(statements)}", sql)
    return statements[0]


def unwrap_query(node: exp.Expression) -> exp.Expression:
    """The query inside any number of `Subquery` wrappers (`(SELECT ...)` -> `SELECT ...`)."""
    while isinstance(node, exp.Subquery) and isinstance(node.this, exp.Expression):
        node = node.this
    return node


def _is_query(node: exp.Expression) -> bool:
    return isinstance(node, (exp.Select, exp.SetOperation))


def iter_scope(node: exp.Expression) -> Iterator[exp.Expression]:
    """Pre-order walk of the descendants of `node` that belong to its own query scope.

    Nested queries (`Select`/set operations below `node`) are yielded but not descended into.
    """
    for child in node.iter_expressions():
        yield child
        if not _is_query(child):
            yield from iter_scope(child)


def iter_child_queries(node: exp.Expression) -> Iterator[exp.Expression]:
    """The queries nested directly in `node`'s scope (not those nested inside them), in pre-order."""
    for child in iter_scope(node):
        if _is_query(child):
            yield child


def query_nodes(tree: exp.Expression) -> list[exp.Expression]:
    """Every query node (Select or set operation) of `tree`, outermost first (pre-order)."""
    return [n for n in tree.walk() if _is_query(n)]


def conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    """The top-level AND-ed parts of a condition (parentheses looked through); [] for None."""
    if condition is None:
        return []
    if isinstance(condition, (exp.Where, exp.Having)):
        condition = condition.this
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if isinstance(condition, exp.And):
        return conjuncts(condition.this) + conjuncts(condition.expression)
    return [condition]


def source_names(select: exp.Expression) -> list[tuple[str, str | None]]:
    """(table name or '' for a derived table, alias) of each source in a Select's FROM and JOINs."""
    sources: list[tuple[str, str | None]] = []
    from_ = get_arg(select, "from")
    items = [from_.this] if from_ is not None else []
    items += [j.this for j in select.args.get("joins") or []]
    for item in items:
        alias = item.alias or None
        if isinstance(item, exp.Table):
            sources.append((item.name, alias))
        else:
            sources.append(("", alias))
    return sources


# ---------------------------------------------------------------------------------------------
# Normalisation


def _lower_identifiers(tree: exp.Expression) -> None:
    for ident in tree.find_all(exp.Identifier):
        ident.set("this", ident.name.lower())
        ident.set("quoted", False)


# binding strength of operators; a node type not listed is an atom or a non-operator context
_PRECEDENCE: tuple[tuple[type[exp.Expression], ...], ...] = (
    (exp.Or,),
    (exp.And,),
    (exp.Not,),
    (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.In, exp.Is, exp.Between, exp.Glob),
    (exp.Add, exp.Sub, exp.DPipe),
    (exp.Mul, exp.Div, exp.Mod),
    (exp.Neg, exp.BitwiseNot),
)


def _level(node: exp.Expression | None) -> int | None:
    for level, types in enumerate(_PRECEDENCE):
        if isinstance(node, types):
            return level
    return None


def _drop_parens(tree: exp.Expression) -> exp.Expression:
    """Drop the parentheses that change nothing: `(a = 1) AND b` is `a = 1 AND b`.

    A parenthesised expression loses its parentheses when its operator binds tighter than its
    parent's (or is the same associative AND/OR), or when its parent is no operator at all (a clause,
    a function argument, a projection). Parentheses that matter stay, so the tree prints unambiguously.
    """

    changed = False

    def strip(node: exp.Expression) -> exp.Expression:
        nonlocal changed
        if not isinstance(node, exp.Paren) or _is_query(node.this):
            return node
        inner, parent = node.this, node.parent
        while isinstance(parent, exp.Paren):
            parent = parent.parent
        inner_level, parent_level = _level(inner), _level(parent)
        if (
            inner_level is None
            or parent_level is None
            or inner_level > parent_level
            or (inner_level == parent_level and type(inner) is type(parent) and isinstance(inner, exp.Connector))
        ):
            changed = True
            return inner
        return node

    for _ in range(8):  # nested parentheses unwrap one level per pass
        if not any(isinstance(n, exp.Paren) for n in tree.walk()):
            break
        changed = False
        tree = tree.transform(strip, copy=False)
        if not changed:
            break
    return tree


def _resolve_aliases(select: exp.Select, outer: Mapping[str, str], schema: Mapping[str, set[str]] | None) -> None:
    """Replace table aliases of `select`'s scope by table names; recurse into nested queries."""
    sources = source_names(select)
    counts: dict[str, int] = {}
    for name, _ in sources:
        if name:
            counts[name] = counts.get(name, 0) + 1
    mapping = dict(outer)
    for name, alias in sources:
        if name and alias and counts[name] == 1:
            mapping[alias] = name
    # drop the alias of every table that occurs once: its columns now say the table's name
    from_ = get_arg(select, "from")
    items = [from_.this] if from_ is not None else []
    items += [j.this for j in select.args.get("joins") or []]
    for item in items:
        if isinstance(item, exp.Table) and item.name and counts.get(item.name) == 1 and item.args.get("alias"):
            item.set("alias", None)
    # the one source of a single-source scope qualifies its bare columns (a derived table by its alias)
    single = (sources[0][0] or sources[0][1] or "") if len(sources) == 1 else ""
    projection_aliases = {a.alias.lower() for a in select.expressions if isinstance(a, exp.Alias)}
    scope_tables = [name for name, _ in sources if name]
    for node in list(iter_scope(select)):
        if isinstance(node, exp.Column):
            table = node.table
            if table and table in mapping:
                node.set("table", exp.to_identifier(mapping[table]))
                table = mapping[table]
            if table or node.name == "*" or isinstance(node.this, exp.Star) or node.name in projection_aliases:
                continue
            if single:
                node.set("table", exp.to_identifier(single))
            elif schema is not None:
                owners = {t for t in scope_tables if node.name in schema.get(t, ())}
                if len(owners) == 1:
                    node.set("table", exp.to_identifier(owners.pop()))
    for child in iter_child_queries(select):
        _resolve_query(child, mapping, schema)


def _resolve_query(node: exp.Expression, outer: Mapping[str, str], schema: Mapping[str, set[str]] | None) -> None:
    if isinstance(node, exp.Select):
        _resolve_aliases(node, outer, schema)
    else:
        for child in iter_child_queries(node):
            _resolve_query(child, outer, schema)


def _names_are_read(select: exp.Select) -> bool:
    """Whether an outer query reads `select`'s output columns by name (a derived table or a CTE body)."""
    node: exp.Expression = select
    while isinstance(node.parent, exp.SetOperation):
        node = node.parent
    parent = node.parent
    if isinstance(parent, exp.CTE):
        return True
    return isinstance(parent, exp.Subquery) and isinstance(parent.parent, (exp.From, exp.Join))


def _remove_projection_aliases(tree: exp.Expression) -> None:
    for select in [n for n in tree.walk() if isinstance(n, exp.Select)]:
        if _names_are_read(select):
            continue
        aliases: dict[str, exp.Expression] = {}
        new_exprs = []
        for item in select.expressions:
            if isinstance(item, exp.Alias):
                aliases[item.alias.lower()] = item.this
                new_exprs.append(item.this)
            else:
                new_exprs.append(item)
        if not aliases:
            continue
        select.set("expressions", new_exprs)
        for key in ("where", "group", "having", "order"):
            clause = select.args.get(key)
            if clause is None:
                continue
            for col in [c for c in iter_scope(clause) if isinstance(c, exp.Column)]:
                if not col.table and col.name.lower() in aliases and col.parent is not None:
                    col.replace(aliases[col.name.lower()].copy())


def _operand_key(node: exp.Expression) -> tuple[bool, str]:
    return (isinstance(node, exp.Literal), node.sql(copy=False))


def _canonical_details(tree: exp.Expression) -> None:
    for node in list(tree.walk()):
        if isinstance(node, exp.Join):
            if (node.args.get("kind") or "").upper() in ("INNER", "OUTER"):
                node.set("kind", None)
        elif isinstance(node, exp.Ordered):
            # SQLite's default null ordering (nulls are small): spelled out or not, the same query
            desc = bool(node.args.get("desc"))
            node.set("desc", True if desc else None)
            node.set("nulls_first", not desc)
        elif isinstance(node, (exp.EQ, exp.NEQ)):
            left, right = node.this, node.expression
            if left is not None and right is not None and _operand_key(left) > _operand_key(right):
                node.set("this", right)
                node.set("expression", left)
        elif isinstance(node, exp.Literal) and not node.is_string:
            text = node.this
            try:
                value = float(text)
            except ValueError:
                continue
            if value.is_integer() and "e" not in text.lower() and abs(value) < 1e15:
                node.set("this", str(int(value)))


def normalize(
    sql: str | exp.Expression,
    *,
    schema: Mapping[str, set[str]] | None = None,
    spider_strings: bool = True,
) -> exp.Expression:
    """A normalised copy of a query's AST (see the module docstring for what changes).

    An unqualified column gets its table when its scope reads a single table, or, given `schema`
    (lower-case table -> set of lower-case column names), when exactly one table of its scope has it;
    otherwise it stays unqualified.
    """
    tree = parse_sql(sql, spider_strings=spider_strings)
    tree = tree.copy()
    _lower_identifiers(tree)
    tree = _drop_parens(tree)
    _remove_projection_aliases(tree)  # first: `ORDER BY n` must still read as a reference to alias n
    _resolve_query(unwrap_query(tree), {}, schema)
    _canonical_details(tree)
    return tree


def canonical_sql(sql: str | exp.Expression, **kwargs: Any) -> str:
    """The normalised query as SQLite text: two queries are equal up to normalisation iff these are equal."""
    return normalize(sql, **kwargs).sql(dialect=DIALECT, copy=False)  # the normalised tree is ours
