"""`prunekit-auto`: pick the route for a question among the ones this request can use.

A route is only a candidate when its resource is there: `rag` needs a collection, `sql` a database
(named in the request), `agents` (math domain) and `chat` are always possible. Among the candidates
the question goes to the route whose example questions it is closest to, by cosine similarity of
MiniLM embeddings (the encoder every other part of prunekit already loads). Why embeddings and not
the LLM: the embedded 135M model cannot follow a classification prompt reliably, and a nearest-
prototype vote costs one encoder call (~5 ms). The prototypes are generic English questions written
here, not items of any evaluation set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

__all__ = ["ROUTE_EXAMPLES", "AutoRouter"]

ROUTE_EXAMPLES: dict[str, tuple[str, ...]] = {
    "chat": (
        "Hello, how are you today?",
        "Write a short poem about the sea.",
        "Tell me a joke.",
        "Translate 'good morning' into French.",
        "Give me three tips for sleeping better.",
    ),
    "rag": (
        "According to the documents, what is the warranty period?",
        "What does the report say about the budget?",
        "Who founded the company mentioned in the files?",
        "Summarise what our notes say about the project timeline.",
        "When was the building described in the article completed?",
    ),
    "sql": (
        "How many customers are there in the database?",
        "List the names of all employees ordered by salary.",
        "What is the average price of products in each category?",
        "Show the top 5 orders by total amount.",
        "Which department has the most staff?",
    ),
    "agents": (
        "If John has 5 apples and buys 3 more, how many apples does he have?",
        "A train travels 60 km per hour for 3 hours. How far does it go?",
        "What is 15% of 240?",
        "Sara had 24 cookies and gave away a third of them. How many are left?",
        "Solve for x: 3x + 7 = 22.",
    ),
}


class AutoRouter:
    """Nearest-prototype routing; `embed` maps texts to L2-normalised vectors `(N, D)`."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed

    @cached_property
    def _prototypes(self) -> dict[str, np.ndarray]:
        return {route: self._embed(list(examples)) for route, examples in ROUTE_EXAMPLES.items()}

    def scores(self, question: str, candidates: Sequence[str]) -> dict[str, float]:
        """Similarity of `question` to each candidate route: the mean of its two closest examples."""
        q = self._embed([question])[0]
        out: dict[str, float] = {}
        for route in candidates:
            sims = np.sort(self._prototypes[route] @ q)[::-1]
            out[route] = float(sims[:2].mean())
        return out

    def choose(self, question: str, candidates: Sequence[str]) -> str:
        if not candidates:
            raise ValueError("no route to choose from")
        if len(candidates) == 1:
            return candidates[0]
        scores = self.scores(question, candidates)
        return max(candidates, key=lambda r: scores[r])  # ties go to the earlier candidate
