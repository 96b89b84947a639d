"""`prunekit-auto`'s router: only available routes, nearest examples win (real MiniLM encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from prunekit.app.graphs.auto import ROUTE_EXAMPLES, AutoRouter


@pytest.fixture(scope="module")
def router() -> AutoRouter:
    from prunekit.decoding.backends.embeddings import load_embedder

    return AutoRouter(load_embedder())


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Tom has 12 marbles and loses 5. How many marbles does he have now?", "agents"),
        ("How many students are enrolled in each course in the database?", "sql"),
        ("What do the uploaded documents say about the refund policy?", "rag"),
        ("Write a haiku about autumn leaves.", "chat"),
    ],
)
def test_questions_go_to_the_closest_route(router: AutoRouter, question: str, expected: str) -> None:
    assert router.choose(question, ["chat", "agents", "rag", "sql"]) == expected


def test_only_candidates_are_chosen(router: AutoRouter) -> None:
    # a data question with no database available cannot go to sql
    assert router.choose("How many customers are there in the database?", ["chat", "agents"]) in {"chat", "agents"}
    assert router.choose("anything at all", ["rag"]) == "rag"


def test_scores_cover_each_candidate_and_no_candidate_is_an_error() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        out = np.zeros((len(texts), 4), dtype=np.float32)
        out[:, 0] = 1.0
        return out

    router = AutoRouter(embed)
    scores = router.scores("q", ["chat", "sql"])
    assert set(scores) == {"chat", "sql"}
    assert router.choose("q", ["sql", "chat"]) == "sql"  # a tie goes to the earlier candidate
    router.scores("again", ["chat"])
    assert sum(len(c) for c in calls) == sum(len(v) for v in ROUTE_EXAMPLES.values()) + 3  # prototypes once
    with pytest.raises(ValueError, match="no route"):
        router.choose("q", [])
