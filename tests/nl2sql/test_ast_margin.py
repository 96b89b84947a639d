"""AST similarity (Zhang-Shasha over normalised sqlglot trees) and LearNAT's step reward."""

from __future__ import annotations

import pytest

from prunekit.nl2sql.ast_margin import (
    REWARD_ALPHA,
    REWARD_BETA,
    LabelledNode,
    ast_similarity,
    count_nodes,
    step_reward,
    to_tree,
    tree_edit_distance,
)
from prunekit.nl2sql.decompose import decompose

GOLD = (
    "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
    "GROUP BY T1.stadium_id ORDER BY count(*) DESC LIMIT 1"
)


def test_tree_labels_collapse_identifiers_and_normalise() -> None:
    tree = to_tree("SELECT T1.Name FROM singer AS T1 WHERE T1.age > 20.0 AND T1.country = 'France'")
    assert tree == LabelledNode(
        "Select",
        [
            LabelledNode("col:singer.name"),
            LabelledNode("From", [LabelledNode("table:singer")]),
            LabelledNode(
                "Where",
                [
                    LabelledNode(
                        "And",
                        [
                            LabelledNode("GT", [LabelledNode("col:singer.age"), LabelledNode("num:20")]),
                            LabelledNode("EQ", [LabelledNode("col:singer.country"), LabelledNode("str:france")]),
                        ],
                    )
                ],
            ),
        ],
    )
    assert count_nodes(tree) == 12


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT name FROM singer", "select NAME from SINGER"),
        ("SELECT T1.name FROM singer AS T1", "SELECT name FROM singer"),
        ('SELECT name FROM singer WHERE country = "France"', "SELECT name FROM singer WHERE country = 'france'"),
        ("SELECT count(*) AS n FROM singer ORDER BY n", "SELECT COUNT(*) FROM singer ORDER BY COUNT(*)"),
        ("SELECT a FROM t WHERE (b = 1)", "SELECT a FROM t WHERE b = 1"),
        ("SELECT a FROM t JOIN u ON t.x = u.y", "SELECT a FROM t INNER JOIN u ON u.y = t.x"),
    ],
)
def test_equivalent_spellings_are_identical(a: str, b: str) -> None:
    assert tree_edit_distance(a, b) == 0
    assert ast_similarity(a, b) == 1.0


def test_distance_counts_edits() -> None:
    base = "SELECT name FROM singer WHERE age > 20"
    assert tree_edit_distance(base, "SELECT name FROM singer WHERE age > 30") == 1  # relabel a value
    assert tree_edit_distance(base, "SELECT name FROM singer WHERE age < 20") == 1  # relabel an operator
    assert tree_edit_distance(base, "SELECT name FROM singer") == 4  # drop Where, GT, column, value
    assert tree_edit_distance(base, base) == 0
    assert tree_edit_distance("SELECT a FROM t", "SELECT b FROM t") == tree_edit_distance(
        "SELECT b FROM t", "SELECT a FROM t"
    )


def test_similarity_is_bounded_and_ordered() -> None:
    far = ast_similarity("SELECT 1", GOLD)
    near = ast_similarity(GOLD.replace("LIMIT 1", "LIMIT 2"), GOLD)
    assert 0.0 <= far < near < 1.0
    assert ast_similarity("SELECT a, b, c, d, e, f FROM t WHERE x = 1 AND y = 2", "SELECT 1") >= 0.0


def test_step_reward_is_lea_rnat_formula() -> None:
    step = "SELECT * FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
    ns, ng = count_nodes(step), count_nodes(GOLD)
    expected = REWARD_ALPHA * min(ns, ng) / max(ns, ng) + REWARD_BETA * ast_similarity(step, GOLD)
    assert step_reward(step, GOLD) == pytest.approx(expected)
    assert (REWARD_ALPHA, REWARD_BETA) == (0.7, 0.3)
    assert step_reward(GOLD, GOLD) == pytest.approx(1.0)
    assert step_reward(step, GOLD, alpha=1.0, beta=0.0) == pytest.approx(min(ns, ng) / max(ns, ng))


def test_rewards_grow_along_a_gold_decomposition() -> None:
    rewards = [step_reward(s.sql, GOLD) for s in decompose(GOLD)]
    assert rewards == sorted(rewards)
    assert rewards[-1] == pytest.approx(1.0)
    wrong = step_reward(
        "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
        "GROUP BY T1.stadium_id ORDER BY count(*) ASC LIMIT 1",
        GOLD,
    )
    assert wrong < 1.0
