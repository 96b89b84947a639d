"""Spider hardness: a hand-labelled set, and agreement with the official rules on all of dev."""

from __future__ import annotations

import json
import time

import pytest

from prunekit.eval.spider.hardness import (
    HardnessCounts,
    count_components,
    distribution,
    hardness,
    hardness_of_spider_sql,
)
from tests.conftest import require_data

JOIN = "FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"

# (query, component1, component2, others, level), labelled by hand from the official rules
LABELLED = [
    ("SELECT count(*) FROM singer", 0, 0, 0, "easy"),
    ("SELECT name FROM singer WHERE age > 20", 1, 0, 0, "easy"),
    (f"SELECT T2.name {JOIN}", 1, 0, 0, "easy"),
    ("SELECT count(*) FROM (SELECT * FROM singer WHERE age > 20)", 0, 0, 0, "easy"),  # FROM subquery: not nested
    # HAVING's aggregates are not counted; its AND is (official quirk)
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1 AND avg(age) > 30", 1, 0, 0, "easy"),
    ("SELECT name, country, age FROM singer ORDER BY age DESC", 1, 0, 1, "medium"),
    ("SELECT name FROM singer WHERE age > 20 AND country = 'France'", 1, 0, 1, "medium"),
    (f"SELECT T2.name, count(*) {JOIN} GROUP BY T1.stadium_id", 2, 0, 1, "medium"),
    ("SELECT count(*) FROM singer WHERE country = 'France' OR age > 40", 2, 0, 1, "medium"),
    ("SELECT name FROM singer WHERE name LIKE '%a%'", 2, 0, 0, "medium"),
    ("SELECT avg(age), max(age), min(age) FROM singer", 0, 0, 2, "medium"),
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)", 1, 1, 0, "hard"),
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30", 1, 1, 0, "hard"),
    # NOT IN: the official code counts the negation as an aggregate (one is not "more than one")
    ("SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", 1, 1, 0, "hard"),
    (
        "SELECT T3.name FROM a AS T1 JOIN b AS T2 ON T1.x = T2.x JOIN c AS T3 ON T2.y = T3.y WHERE T3.z = 1",
        3,
        0,
        0,
        "hard",
    ),
    (
        "SELECT name, age, country FROM singer WHERE age > 20 AND country = 'France' AND is_male = 'T' "
        "GROUP BY country, age ORDER BY count(*) DESC, max(age)",
        3,
        0,
        4,
        "extra",
    ),
    (f"SELECT T2.name, count(*) {JOIN} GROUP BY T1.stadium_id ORDER BY count(*) DESC LIMIT 1", 4, 0, 2, "extra"),
    ("SELECT name, capacity FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", 1, 1, 1, "extra"),
    (
        "SELECT name FROM singer WHERE age > 40 AND country = 'France' EXCEPT SELECT name FROM singer WHERE age > 50",
        1,
        1,
        1,
        "extra",
    ),
    (
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert) "
        "AND age > (SELECT avg(age) FROM singer)",
        1,
        2,
        1,
        "extra",
    ),
]


@pytest.mark.parametrize(("sql", "c1", "c2", "others", "level"), LABELLED)
def test_hand_labelled(sql: str, c1: int, c2: int, others: int, level: str) -> None:
    assert count_components(sql) == HardnessCounts(c1, c2, others)
    assert hardness(sql) == level


def test_levels_of_the_official_thresholds() -> None:
    assert HardnessCounts(1, 0, 0).level == "easy"
    assert HardnessCounts(1, 0, 2).level == "medium"
    assert HardnessCounts(2, 0, 1).level == "medium"
    assert HardnessCounts(2, 0, 3).level == "hard"
    assert HardnessCounts(3, 0, 2).level == "hard"
    assert HardnessCounts(0, 1, 0).level == "hard"
    assert HardnessCounts(4, 0, 0).level == "extra"
    assert HardnessCounts(2, 1, 0).level == "extra"


@pytest.mark.data
def test_dev_distribution_matches_the_official_one() -> None:
    dev = json.loads(require_data("spider/dev.json").read_text())
    started = time.monotonic()
    ours = [hardness(ex["query"]) for ex in dev]
    seconds = time.monotonic() - started
    reference = [hardness_of_spider_sql(ex["sql"]) for ex in dev]
    print(f"\ndev hardness {distribution(ours)} in {seconds:.2f}s")
    # the official distribution of Spider dev (1034 questions)
    assert distribution(reference) == {"easy": 248, "medium": 446, "hard": 174, "extra": 166}
    disagreements = [(ex["query"], a, b) for ex, a, b in zip(dev, ours, reference, strict=True) if a != b]
    assert not disagreements, disagreements[:5]
