"""AST similarity and LearNAT's step reward: normalised tree edit distance over sqlglot ASTs (zss).

Trees: each query is normalised first (`sqlast.normalize`: case, quoting, table and projection
aliases, redundant parentheses, `=` operand order), then turned into a labelled ordered tree where
identifiers collapse into their parent's label, so a column is one node:

- `Column` -> `col:<table>.<name>` (table omitted when the scope reads one table), `Table` ->
  `table:<name>`, `Star` -> `*`;
- `Literal` -> `str:<lower-cased text>` or `num:<number>`;
- every other node -> its sqlglot type name (plus `desc` for a descending `Ordered`, the join
  side/kind for a `Join`, `distinct` for a DISTINCT SELECT), children in argument order.

`tree_edit_distance` is Zhang-Shasha with unit costs (insert, delete, relabel = 1). Since it can exceed
the larger tree's size, `ast_similarity = max(0, 1 - TED / max(|A|, |B|))`, in [0, 1], 1 iff equal trees.

`step_reward(step, gold) = 0.7 * min(|S|, |G|) / max(|S|, |G|) + 0.3 * ast_similarity(S, G)`: LearNAT's
reward (MCTS.py: `alpha * node_sim + beta * structure_sim`, alpha 0.7, beta 0.3). LearNAT's `node_sim`
is |S| / |G|; we use the symmetric ratio so an over-long step cannot score above 1.

>>> ast_similarity("SELECT name FROM singer", "select NAME from SINGER")
1.0
>>> round(ast_similarity("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer"), 3)
0.5
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import zss
from sqlglot import exp

from prunekit.nl2sql.sqlast import normalize

__all__ = [
    "REWARD_ALPHA",
    "REWARD_BETA",
    "LabelledNode",
    "ast_similarity",
    "count_nodes",
    "step_reward",
    "to_tree",
    "tree_edit_distance",
]

REWARD_ALPHA = 0.7  # weight of the node-count ratio
REWARD_BETA = 0.3  # weight of the structural similarity


@dataclass
class LabelledNode:
    label: str
    children: list[LabelledNode] = field(default_factory=list)

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)


def _label(node: exp.Expression) -> str | None:
    """The collapsed label of a leaf-like node, or None for a structural node."""
    if isinstance(node, exp.Column):
        return f"col:{node.table + '.' if node.table else ''}{node.name}"
    if isinstance(node, exp.Table):
        return f"table:{node.name}" + (f" as {node.alias}" if node.alias else "")
    if isinstance(node, exp.Star):
        return "*"
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "str:" + node.this.lower()
        try:
            return f"num:{float(node.this):g}"
        except ValueError:
            return "num:" + node.this
    if isinstance(node, exp.Identifier):
        return "id:" + node.name.lower()
    if isinstance(node, exp.Null):
        return "null"
    if isinstance(node, exp.Boolean):
        return f"bool:{node.this}"
    return None


def _struct_label(node: exp.Expression) -> str:
    name = type(node).__name__
    if isinstance(node, exp.Ordered) and node.args.get("desc"):
        return name + ":desc"
    if isinstance(node, exp.Join):
        kind = " ".join(str(node.args.get(k)) for k in ("side", "kind") if node.args.get(k))
        return f"{name}:{kind}" if kind else name
    if isinstance(node, exp.Select) and node.args.get("distinct") is not None:
        return name + ":distinct"
    if isinstance(node, exp.Anonymous):
        return f"{name}:{str(node.this).lower()}"
    return name


def _convert(node: exp.Expression) -> LabelledNode:
    label = _label(node)
    if label is not None:
        return LabelledNode(label)
    children = [
        _convert(child)
        for child in node.iter_expressions()
        if not (isinstance(child, exp.Distinct) and isinstance(node, exp.Select))  # folded into the label
    ]
    return LabelledNode(_struct_label(node), children)


def to_tree(sql: str | exp.Expression, *, schema: Mapping[str, set[str]] | None = None) -> LabelledNode:
    """The labelled tree of a query after normalisation (see the module docstring)."""
    if isinstance(sql, str) and schema is None:
        return _cached_tree(sql)
    return _convert(normalize(sql, schema=schema))


@functools.lru_cache(maxsize=512)
def _cached_tree(sql: str) -> LabelledNode:
    # a search compares many steps with one gold query: build each tree once (never mutated)
    return _convert(normalize(sql))


def count_nodes(sql: str | exp.Expression | LabelledNode) -> int:
    tree = sql if isinstance(sql, LabelledNode) else to_tree(sql)
    return tree.size()


def _as_tree(sql: str | exp.Expression | LabelledNode) -> LabelledNode:
    return sql if isinstance(sql, LabelledNode) else to_tree(sql)


def tree_edit_distance(a: str | exp.Expression | LabelledNode, b: str | exp.Expression | LabelledNode) -> int:
    """Zhang-Shasha tree edit distance with unit costs between two queries' labelled trees."""
    ta, tb = _as_tree(a), _as_tree(b)
    return int(
        zss.simple_distance(
            ta,
            tb,
            get_children=lambda n: n.children,
            get_label=lambda n: n.label,
            label_dist=lambda x, y: 0 if x == y else 1,
        )
    )


def ast_similarity(a: str | exp.Expression | LabelledNode, b: str | exp.Expression | LabelledNode) -> float:
    """1 - TED / max(|A|, |B|), clipped to [0, 1]; 1.0 iff the normalised trees are equal."""
    ta, tb = _as_tree(a), _as_tree(b)
    biggest = max(ta.size(), tb.size())
    return max(0.0, 1.0 - tree_edit_distance(ta, tb) / biggest)


def step_reward(
    step: str | exp.Expression | LabelledNode,
    gold: str | exp.Expression | LabelledNode,
    *,
    alpha: float = REWARD_ALPHA,
    beta: float = REWARD_BETA,
) -> float:
    """LearNAT's step reward: `alpha * node-count ratio + beta * ast_similarity` (0.7 / 0.3)."""
    ts, tg = _as_tree(step), _as_tree(gold)
    ns, ng = ts.size(), tg.size()
    ratio = min(ns, ng) / max(ns, ng)
    return alpha * ratio + beta * ast_similarity(ts, tg)
