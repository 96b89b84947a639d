"""Database schemas: introspection of any SQLite file, Spider's tables.json, prompt text, schema linking.

One set of frozen dataclasses (`Schema` > `Table` > `Column`, plus `ForeignKey`) whatever the source:

- `introspect_sqlite(path)`: tables, columns, declared types, primary and foreign keys and a few
  distinct example values per column, read through a read-only connection.
- `load_spider_tables(path)`: every database of a Spider `tables.json` (no example values there;
  `with_examples(schema, db_path)` adds them from the database file).
- `render_schema(schema)`: compact CREATE TABLE-like text for prompts, with keys and example values.
- `link_schema(question, schema, embed=...)`: which tables and columns a question is about, without any
  oracle: embedding similarity (an encoder passed in), value matching (question n-grams found among the
  database's values, through a bounded `ValueIndex`) and name matching; tables needed to join the linked
  ones along foreign keys are kept.

>>> s = Schema("toy", (Table("singer", (Column("singer_id", "INTEGER", True), Column("name", "TEXT"))),))
>>> print(render_schema(s))
CREATE TABLE singer (
  singer_id INTEGER PRIMARY KEY,
  name TEXT
);
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.nl2sql.errors import DatabaseNotFoundError

__all__ = [
    "Column",
    "ForeignKey",
    "LinkWeights",
    "LinkedColumn",
    "LinkedSchema",
    "LinkedTable",
    "Schema",
    "Table",
    "ValueIndex",
    "introspect_sqlite",
    "link_schema",
    "load_spider_tables",
    "render_schema",
    "with_examples",
]

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Column:
    name: str
    type: str = ""
    primary_key: bool = False
    examples: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ForeignKey:
    """`table.column` references `ref_table.ref_column`."""

    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    @property
    def primary_keys(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)

    def column(self, name: str) -> Column | None:
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)


@dataclass(frozen=True)
class Schema:
    db_id: str
    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()

    def table(self, name: str) -> Table | None:
        low = name.lower()
        return next((t for t in self.tables if t.name.lower() == low), None)

    def column_sets(self) -> dict[str, set[str]]:
        """Lower-case table name -> set of lower-case column names (what `sqlast.normalize` takes)."""
        return {t.name.lower(): {c.name.lower() for c in t.columns} for t in self.tables}

    def subset(self, tables: Iterable[str], columns: dict[str, Sequence[str]] | None = None) -> Schema:
        """The schema restricted to `tables` (and, per table, to `columns` when given), FKs among them."""
        keep = [t.lower() for t in tables]
        out = []
        for name in keep:
            table = self.table(name)
            if table is None:
                continue
            if columns is not None and name in columns:
                wanted = {c.lower() for c in columns[name]}
                table = replace(table, columns=tuple(c for c in table.columns if c.name.lower() in wanted))
            out.append(table)
        names = {t.name.lower() for t in out}
        fks = tuple(fk for fk in self.foreign_keys if fk.table.lower() in names and fk.ref_table.lower() in names)
        return Schema(self.db_id, tuple(out), fks)


# ---------------------------------------------------------------------------------------------
# Reading schemas


def _connect_ro(path: str | Path) -> sqlite3.Connection:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise DatabaseNotFoundError(f"no SQLite database at {p}")
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(p))}?mode=ro", uri=True)
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    try:  # connecting succeeds on any file: the first read tells whether it is a database
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        raise DatabaseNotFoundError(f"{p} is not a readable SQLite database: {err}") from err
    return conn


def _quote(name: str) -> str:
    # backticks, not double quotes: SQLite reads an unknown "name" as a string literal
    return "`" + name.replace("`", "``") + "`"


def _examples(conn: sqlite3.Connection, table: str, column: str, n: int, max_chars: int = 60) -> tuple[Any, ...]:
    if n <= 0:
        return ()
    sql = f"SELECT DISTINCT {_quote(column)} FROM {_quote(table)} WHERE {_quote(column)} IS NOT NULL LIMIT {int(n)}"
    try:
        values = [r[0] for r in conn.execute(sql).fetchall()]
    except sqlite3.Error:
        return ()
    out = []
    for v in values:
        if isinstance(v, bytes):
            continue
        if isinstance(v, str) and len(v) > max_chars:
            v = v[:max_chars] + "..."
        out.append(v)
    return tuple(out)


def introspect_sqlite(path: str | Path, *, n_examples: int = 3, db_id: str | None = None) -> Schema:
    """Read a SQLite file's schema (read-only): tables, columns, types, keys, `n_examples` values a column."""
    conn = _connect_ro(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        tables, fks = [], []
        for name in names:
            info = conn.execute(f"PRAGMA table_info({_quote(name)})").fetchall()  # cid, name, type, notnull, dflt, pk
            columns = tuple(
                Column(
                    name=col[1],
                    type=(col[2] or "").upper(),
                    primary_key=bool(col[5]),
                    examples=_examples(conn, name, col[1], n_examples),
                )
                for col in info
            )
            tables.append(Table(name, columns))
            fk_rows = conn.execute(f"PRAGMA foreign_key_list({_quote(name)})").fetchall()
            for row in sorted(fk_rows, key=lambda r: (-r[0], r[1])):  # SQLite numbers them last-declared first
                # id, seq, table, from, to, on_update, on_delete, match; `to` is NULL for "REFERENCES t"
                ref_table, src, dst = row[2], row[3], row[4]
                if dst is None:
                    ref_info = conn.execute(f"PRAGMA table_info({_quote(ref_table)})").fetchall()
                    pks = [c[1] for c in ref_info if c[5]]
                    dst = pks[0] if pks else src
                fks.append(ForeignKey(name, src, ref_table, dst))
    finally:
        conn.close()
    return Schema(db_id or Path(path).stem, tuple(tables), tuple(_resolve_fk_case(tables, fks)))


def _resolve_fk_case(tables: Sequence[Table], fks: Iterable[ForeignKey]) -> list[ForeignKey]:
    """Spell FK table/column names as the tables spell them (SQLite keeps whatever the DDL said)."""
    by_name = {t.name.lower(): t for t in tables}
    out = []
    for fk in fks:
        src, dst = by_name.get(fk.table.lower()), by_name.get(fk.ref_table.lower())
        if src is None or dst is None:
            continue
        scol, dcol = src.column(fk.column), dst.column(fk.ref_column)
        if scol is None or dcol is None:
            continue
        out.append(ForeignKey(src.name, scol.name, dst.name, dcol.name))
    return out


def load_spider_tables(path: str | Path) -> dict[str, Schema]:
    """Every database of a Spider `tables.json`, by db_id (original table/column spellings)."""
    entries = json.loads(Path(path).read_text())
    out: dict[str, Schema] = {}
    for entry in entries:
        table_names = entry["table_names_original"]
        col_names = entry["column_names_original"]  # [table index, name]; index -1 is the `*` column
        types = entry["column_types"]
        pk_ids: set[int] = set()
        for pk in entry.get("primary_keys", []):
            pk_ids.update(pk if isinstance(pk, list) else [pk])
        per_table: list[list[Column]] = [[] for _ in table_names]
        for idx, (t_idx, name) in enumerate(col_names):
            if t_idx < 0:
                continue
            per_table[t_idx].append(Column(name, types[idx].upper(), idx in pk_ids))
        tables = [Table(name, tuple(cols)) for name, cols in zip(table_names, per_table, strict=True)]
        fks = []
        for src, dst in entry.get("foreign_keys", []):
            st, sc = col_names[src]
            dt, dc = col_names[dst]
            fks.append(ForeignKey(table_names[st], sc, table_names[dt], dc))
        out[entry["db_id"]] = Schema(entry["db_id"], tuple(tables), tuple(fks))
    return out


def with_examples(schema: Schema, db_path: str | Path, *, n_examples: int = 3) -> Schema:
    """`schema` with example values read from the database file (columns missing there get none)."""
    conn = _connect_ro(db_path)
    try:
        tables = tuple(
            replace(
                t, columns=tuple(replace(c, examples=_examples(conn, t.name, c.name, n_examples)) for c in t.columns)
            )
            for t in schema.tables
        )
    finally:
        conn.close()
    return replace(schema, tables=tables)


# ---------------------------------------------------------------------------------------------
# Prompt text


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def render_schema(schema: Schema, *, examples: bool = True, foreign_keys: bool = True) -> str:
    """Compact CREATE TABLE-like text: types, primary keys, foreign keys, and `-- e.g.` example values."""
    blocks = []
    for table in schema.tables:
        lines = []
        fks = [fk for fk in schema.foreign_keys if fk.table == table.name] if foreign_keys else []
        for col in table.columns:
            line = f"  {_ident(col.name)}" + (f" {col.type}" if col.type else "")
            if col.primary_key and len(table.primary_keys) == 1:
                line += " PRIMARY KEY"
            lines.append([line, col])
        if len(table.primary_keys) > 1:
            lines.append([f"  PRIMARY KEY ({', '.join(_ident(k) for k in table.primary_keys)})", None])
        for fk in fks:
            lines.append(
                [
                    f"  FOREIGN KEY ({_ident(fk.column)}) REFERENCES {_ident(fk.ref_table)}({_ident(fk.ref_column)})",
                    None,
                ]
            )
        rendered = []
        for i, (line, col) in enumerate(lines):
            sep = "," if i < len(lines) - 1 else ""
            comment = ""
            if examples and col is not None and col.examples:
                comment = " -- e.g. " + ", ".join(_literal(v) for v in col.examples)
            rendered.append(line + sep + comment)
        blocks.append(f"CREATE TABLE {_ident(table.name)} (\n" + "\n".join(rendered) + "\n);")
    return "\n".join(blocks)


# ---------------------------------------------------------------------------------------------
# Schema linking

_STOPWORDS = frozenset(
    """a an the of in on at to for by with from and or not is are was were be been it its this that these those what
    which who whom whose how many much list show give find return all each every any some me us their there than then
    as do does did have has had number count name names id ids""".split()  # noqa: SIM905
)
_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    # split camelCase and snake_case, lower-case
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return _TOKEN.findall(text.lower())


def _stem(token: str) -> str:
    for suffix in ("ies", "es", "s"):
        if len(token) > 3 and token.endswith(suffix):
            return token[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return token


def _norm_value(text: str) -> str:
    return " ".join(_TOKEN.findall(text.lower()))


class ValueIndex:
    """Distinct text values of a database's columns, for finding the question's words among them.

    Cost is bounded: at most `max_values_per_column` distinct values of at most `max_value_chars`
    characters per text column; a lookup is one dict probe per question n-gram.
    """

    def __init__(self, values: dict[str, set[tuple[str, str]]]) -> None:
        self._values = values  # normalised value -> {(table, column)}

    @classmethod
    def from_sqlite(
        cls,
        path: str | Path,
        schema: Schema | None = None,
        *,
        max_values_per_column: int = 2000,
        max_value_chars: int = 64,
    ) -> ValueIndex:
        schema = schema or introspect_sqlite(path, n_examples=0)
        conn = _connect_ro(path)
        values: dict[str, set[tuple[str, str]]] = {}
        try:
            for table in schema.tables:
                for col in table.columns:
                    if col.type and not any(k in col.type for k in ("CHAR", "TEXT", "CLOB", "VARCHAR", "STRING")):
                        continue
                    c = _quote(col.name)
                    sql = (
                        f"SELECT DISTINCT {c} FROM {_quote(table.name)} "
                        f"WHERE typeof({c}) = 'text' AND length({c}) <= {max_value_chars} "
                        f"LIMIT {int(max_values_per_column)}"
                    )
                    try:
                        rows = conn.execute(sql).fetchall()
                    except sqlite3.Error:
                        continue
                    for (value,) in rows:
                        key = _norm_value(str(value))
                        if key and not key.isdigit() and key not in _STOPWORDS:
                            values.setdefault(key, set()).add((table.name, col.name))
        finally:
            conn.close()
        return cls(values)

    def __len__(self) -> int:
        return len(self._values)

    def match(self, question: str, max_n: int = 6) -> dict[tuple[str, str], list[str]]:
        """(table, column) -> the question's n-grams (n <= max_n) that are values of that column."""
        toks = _TOKEN.findall(question.lower())
        found: dict[tuple[str, str], list[str]] = {}
        for n in range(1, max_n + 1):
            for i in range(len(toks) - n + 1):
                gram = " ".join(toks[i : i + n])
                if n == 1 and (gram in _STOPWORDS or len(gram) < 3):
                    continue
                for key in self._values.get(gram, ()):
                    found.setdefault(key, []).append(gram)
        return found


@dataclass(frozen=True)
class LinkWeights:
    """How the evidence adds up to a score (each piece is in [0, 1])."""

    embedding: float = 0.5
    name: float = 0.35
    value: float = 0.6
    column_to_table: float = 0.9  # a table scores at least this times its best column
    table_threshold: float = 0.25  # tables under this (after the first) are not linked


@dataclass(frozen=True)
class LinkedTable:
    name: str
    score: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkedColumn:
    table: str
    name: str
    score: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkedSchema:
    """The tables and columns a question is linked to, best first, and the schema restricted to them."""

    tables: tuple[LinkedTable, ...]
    columns: tuple[LinkedColumn, ...]
    schema: Schema
    value_matches: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]


def _name_score(name_tokens: Sequence[str], question_stems: set[str]) -> float:
    toks = [_stem(t) for t in name_tokens if t not in ("id",)]
    if not toks:
        return 0.0
    return sum(t in question_stems for t in toks) / len(toks)


def _cosine(embed: Embedder, question: str, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embed([question, *texts]), dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.clip(vectors[1:] @ vectors[0], 0.0, 1.0)


def link_schema(
    question: str,
    schema: Schema,
    embed: Embedder | None = None,
    *,
    values: ValueIndex | None = None,
    top_k_tables: int = 4,
    top_k_columns: int = 8,
    weights: LinkWeights | None = None,
) -> LinkedSchema:
    """Link a question to the tables and columns it is about, without looking at any gold SQL.

    Score of a column = `embedding * cos(question, "table column") + name * (share of the column name's
    words in the question) + value * (1 if a question n-gram is one of its values)`; a table scores the
    larger of its own evidence and `column_to_table` times its best column. The `top_k_tables` best
    tables above `table_threshold` are kept (always at least one), then the tables on the shortest
    foreign-key paths that connect them (reason `fk_bridge`). Each kept table keeps its primary and
    foreign key columns and its `top_k_columns` best columns.

    `embed` maps a list of texts to a (n, d) array; None drops the embedding term.
    """
    w = weights or LinkWeights()
    matches = values.match(question) if values is not None else {}
    col_scores, table_scores = _link_scores(question, schema, embed, matches, w)

    ranked = sorted(table_scores, key=lambda n: -table_scores[n][0])
    chosen = [n for n in ranked[:top_k_tables] if table_scores[n][0] >= w.table_threshold] or ranked[:1]
    bridges = _fk_bridges(schema, chosen)
    linked_tables = [LinkedTable(n, round(table_scores[n][0], 4), table_scores[n][1]) for n in chosen]
    linked_tables += [LinkedTable(n, round(table_scores[n][0], 4), ("fk_bridge",)) for n in bridges]

    keep_names = [t.name for t in linked_tables]
    linked_cols, per_table_cols = _pick_columns(schema, keep_names, col_scores, top_k_columns)
    return LinkedSchema(
        tables=tuple(linked_tables),
        columns=tuple(linked_cols),
        schema=schema.subset(keep_names, per_table_cols),
        value_matches=matches,
    )


Scored = tuple[float, tuple[str, ...]]  # a score and the evidence behind it


def _link_scores(
    question: str, schema: Schema, embed: Embedder | None, matches: dict[tuple[str, str], Any], w: LinkWeights
) -> tuple[dict[tuple[str, str], Scored], dict[str, Scored]]:
    """Every column's score and every table's (see `link_schema`), each with its reasons."""
    q_stems = {_stem(t) for t in _tokens(question)}
    col_keys = [(t.name, c.name) for t in schema.tables for c in t.columns]
    col_texts = [f"{t} {c}".replace("_", " ") for t, c in col_keys]
    tab_texts = [t.name.replace("_", " ") for t in schema.tables]
    if embed is not None and col_keys:
        sims = _cosine(embed, question, tab_texts + col_texts)
        tab_sim, col_sim = sims[: len(tab_texts)], sims[len(tab_texts) :]
    else:
        tab_sim, col_sim = np.zeros(len(tab_texts)), np.zeros(len(col_keys))

    col_scores: dict[tuple[str, str], Scored] = {}
    for i, (t, c) in enumerate(col_keys):
        reasons = []
        score = w.embedding * float(col_sim[i])
        if col_sim[i] > 0:
            reasons.append(f"embedding {col_sim[i]:.2f}")
        name = _name_score(_tokens(c), q_stems)
        if name > 0:
            score += w.name * name
            reasons.append(f"name {name:.2f}")
        if (t, c) in matches:
            score += w.value
            reasons.append("value " + "|".join(sorted(set(matches[(t, c)]))[:3]))
        col_scores[(t, c)] = (score, tuple(reasons))

    table_scores: dict[str, Scored] = {}
    for i, table in enumerate(schema.tables):
        own = w.embedding * float(tab_sim[i]) + w.name * _name_score(_tokens(table.name), q_stems)
        best_col = max((col_scores[(table.name, c.name)][0] for c in table.columns), default=0.0)
        reasons = [f"own {own:.2f}"] if own > 0 else []
        if best_col * w.column_to_table > own:
            reasons.append(f"column {best_col:.2f}")
        table_scores[table.name] = (max(own, w.column_to_table * best_col), tuple(reasons))
    return col_scores, table_scores


def _pick_columns(
    schema: Schema, keep_names: list[str], col_scores: dict[tuple[str, str], Scored], top_k_columns: int
) -> tuple[list[LinkedColumn], dict[str, list[str]]]:
    """Per kept table: its `top_k_columns` best columns plus its primary keys and the foreign keys joining it to
    another kept table. Returns the linked columns (best first) and the column names per table (lowercased)."""
    key_cols: dict[str, set[str]] = {n: set() for n in keep_names}
    for fk in schema.foreign_keys:
        if fk.table in key_cols and fk.ref_table in key_cols:
            key_cols[fk.table].add(fk.column)
            key_cols[fk.ref_table].add(fk.ref_column)
    linked_cols: list[LinkedColumn] = []
    per_table_cols: dict[str, list[str]] = {}
    for name in keep_names:
        table = schema.table(name)
        assert table is not None
        ranked_cols = sorted(table.columns, key=lambda c: -col_scores[(name, c.name)][0])
        picked = {c.name for c in ranked_cols[:top_k_columns]} | set(table.primary_keys) | key_cols[name]
        cols = [c for c in ranked_cols if c.name in picked]
        per_table_cols[name.lower()] = [c.name for c in cols]
        for c in cols:
            score, reasons = col_scores[(name, c.name)]
            if c.name in table.primary_keys or c.name in key_cols[name]:
                reasons = (*reasons, "key")
            linked_cols.append(LinkedColumn(name, c.name, round(score, 4), reasons))
    linked_cols.sort(key=lambda c: -c.score)
    return linked_cols, per_table_cols


def _fk_bridges(schema: Schema, chosen: Sequence[str]) -> list[str]:
    """Tables (not in `chosen`) on shortest FK paths that connect the chosen tables, in order of use."""
    graph: dict[str, set[str]] = {t.name: set() for t in schema.tables}
    for fk in schema.foreign_keys:
        if fk.table in graph and fk.ref_table in graph and fk.table != fk.ref_table:
            graph[fk.table].add(fk.ref_table)
            graph[fk.ref_table].add(fk.table)
    connected = {chosen[0]} if chosen else set()
    bridges: list[str] = []
    for target in chosen[1:]:
        if target in connected:
            continue
        # BFS from the connected set to the target
        parents: dict[str, str | None] = {n: None for n in connected}
        queue = deque(sorted(connected))
        while queue and target not in parents:
            node = queue.popleft()
            for nxt in sorted(graph[node]):
                if nxt not in parents:
                    parents[nxt] = node
                    queue.append(nxt)
        if target not in parents:
            connected.add(target)  # not reachable through FKs: keep it, without a bridge
            continue
        node: str | None = target
        while node is not None and node not in connected:
            connected.add(node)
            if node not in chosen and node not in bridges:
                bridges.append(node)
            node = parents[node]
    return bridges
