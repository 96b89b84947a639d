"""`/v1/rerank` on a real service: the context pruner's rerank head orders the documents, and each result carries
its pruned text and kept sentence spans."""

from __future__ import annotations

import httpx
import pytest

from prunekit.context_pruner import default_pruner
from tests.conftest import SERVICE_KEY

QUERY = "When was the Eiffel Tower completed?"
DOCUMENTS = [
    "Bananas are rich in potassium. They grow in tropical climates.",
    "The Eiffel Tower is a wrought-iron tower in Paris. It was completed in 1889 for the World's Fair.",
    "The Louvre is the world's most-visited museum.",
]


def _rerank(live_service, **body):
    return httpx.post(
        f"{live_service.url}/v1/rerank",
        json={"model": "prunekit-rerank", "query": QUERY, "documents": DOCUMENTS, **body},
        headers={"Authorization": f"Bearer {SERVICE_KEY}"},
        timeout=60,
    )


def test_results_are_ranked_and_pruned(live_service):
    response = _rerank(live_service, top_n=2, return_documents=True)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert results[0]["index"] == 1 and len(results) == 2
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
    best = results[0]
    assert best["document"] == {"text": DOCUMENTS[1]}
    assert "1889" in best["pruned_text"]
    assert all(DOCUMENTS[1][start:end] in best["pruned_text"] for start, end in best["kept_sentence_spans"])
    expected = default_pruner().prune(QUERY, DOCUMENTS)  # the library's own call gives the same text and tokens
    assert best["pruned_text"] == expected[1].pruned_text
    assert body["usage"]["total_tokens"] == sum(r.tokens_before for r in expected)
    assert body["model"] == "prunekit-rerank"


def test_object_documents_and_no_documents_back(live_service):
    response = _rerank(live_service, documents=[{"text": d} for d in DOCUMENTS])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3 and all("document" not in r for r in results)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"model": "rerank-english-v3.0"}, 404, "does not exist"),
        ({"documents": []}, 400, "documents"),
        ({"documents": ["x"] * 129}, 400, "documents"),
        ({"top_n": 0}, 400, "top_n"),
        ({"threshold": 2}, 400, "threshold"),
        ({"rank_fields": ["title"]}, 400, "rank_fields"),
    ],
)
def test_bad_requests_are_clear_4xx(live_service, body, status, says):
    response = _rerank(live_service, **body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
