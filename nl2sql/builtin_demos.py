"""Which demonstrations the agent retrieves from: a Spider training folder, else the few that ship with prunekit.

LearNAT's inference prompts with retrieved decomposed demonstrations; with none, a small model tends to copy
the schema back instead of writing a query. `demonstration_index` is the one place that decides: the training
split of a Spider folder when one is configured (`--demos`, `PRUNEKIT_SQL_DEMOS`), else `BUILTIN_EXAMPLES`, a
few question/SQL pairs written here on made-up databases. They cover the SQL shapes questions usually need
(count, filter, aggregate per group, order and limit, join, nested query, set operation) and belong to no
benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.nl2sql.retrieval import DemoIndex, Embedder, RetrievalError, TrainExample

__all__ = ["BUILTIN_EXAMPLES", "SPIDER_TRAIN_FILE", "builtin_index", "demonstration_index"]

SPIDER_TRAIN_FILE = "train_spider_slim.json"  # the training split a Spider folder's demonstrations come from

_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("shop", "How many customers are there?", "SELECT count(*) FROM customers"),
    ("shop", "List the names of customers who live in Paris.", "SELECT name FROM customers WHERE city = 'Paris'"),
    ("shop", "What is the average price of all products?", "SELECT avg(price) FROM products"),
    (
        "shop",
        "How many products are there in each category?",
        "SELECT category, count(*) FROM products GROUP BY category",
    ),
    (
        "shop",
        "What are the names of the three most expensive products?",
        "SELECT name FROM products ORDER BY price DESC LIMIT 3",
    ),
    (
        "shop",
        "Show the order dates of the customer named Ann Lee.",
        "SELECT T2.order_date FROM customers AS T1 JOIN orders AS T2 ON T1.customer_id = T2.customer_id "
        "WHERE T1.name = 'Ann Lee'",
    ),
    (
        "school",
        "Which teachers teach more than two courses?",
        "SELECT T1.name FROM teachers AS T1 JOIN courses AS T2 ON T1.teacher_id = T2.teacher_id "
        "GROUP BY T1.teacher_id HAVING count(*) > 2",
    ),
    (
        "school",
        "Find the names of students older than the average student age.",
        "SELECT name FROM students WHERE age > (SELECT avg(age) FROM students)",
    ),
    (
        "school",
        "What is the maximum and minimum grade in the course with id 7?",
        "SELECT max(grade), min(grade) FROM enrollments WHERE course_id = 7",
    ),
    (
        "school",
        "List the ids of students who are not enrolled in any course.",
        "SELECT student_id FROM students EXCEPT SELECT student_id FROM enrollments",
    ),
    (
        "company",
        "Which department has the most employees?",
        "SELECT department FROM employees GROUP BY department ORDER BY count(*) DESC LIMIT 1",
    ),
    (
        "company",
        "How many distinct job titles are there?",
        "SELECT count(DISTINCT title) FROM employees",
    ),
)

BUILTIN_EXAMPLES: tuple[TrainExample, ...] = tuple(
    TrainExample(index=i, db_id=db, question=q, query=sql) for i, (db, q, sql) in enumerate(_PAIRS)
)


def builtin_index(embed: Any) -> DemoIndex:
    """An index over `BUILTIN_EXAMPLES` (a dozen encoder calls: built on the spot, no cache needed)."""
    return DemoIndex.build(BUILTIN_EXAMPLES, embed)


def demonstration_index(
    spider_dir: Path | None, encoder: Embedder | None = None, *, progress: bool = False
) -> DemoIndex:
    """The demonstration index: Spider's training split under `spider_dir` (embedded once, then cached on disk),
    or the builtin examples when no folder is given. `encoder` defaults to the shared MiniLM encoder.

    A folder without `train_spider_slim.json` is refused (`RetrievalError`, an `InvalidRequestError`) before
    any encoder is loaded.

    >>> import numpy as np
    >>> constant = lambda texts: np.ones((len(texts), 4), dtype=np.float32)  # any encoder: texts -> (N, D)
    >>> len(demonstration_index(None, constant)) == len(BUILTIN_EXAMPLES)
    True
    >>> demonstration_index(Path("/nowhere"), constant)
    Traceback (most recent call last):
    ...
    prunekit.nl2sql.retrieval.RetrievalError: /nowhere has no train_spider_slim.json: give a Spider folder that holds it
    """
    if spider_dir is not None and not (Path(spider_dir) / SPIDER_TRAIN_FILE).is_file():
        raise RetrievalError(f"{spider_dir} has no {SPIDER_TRAIN_FILE}: give a Spider folder that holds it")
    if encoder is None:
        from prunekit.decoding.backends.embeddings import load_embedder

        encoder = load_embedder()
    if spider_dir is None:
        return builtin_index(encoder)
    return DemoIndex.from_spider(spider_dir, encoder, train_file=SPIDER_TRAIN_FILE, progress=progress)
