"""Response bodies from a graph's final state (the live stream is tested on the real service, test_service.py)."""

from __future__ import annotations

from prunekit.app.api.completions import completion_body


def test_completion_body_adds_savings_to_usage_and_the_prunekit_object():
    final = {
        "answer": "Paris.",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 40, "completion_tokens": 3},
        "savings": {"context_tokens_removed": 120.0, "note": "not a number"},
        "route": "rag",
        "details": {"citations": [1]},
    }
    body = completion_body(final, "chatcmpl-1", "prunekit-rag")
    assert body["object"] == "chat.completion" and body["model"] == "prunekit-rag"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris."}
    # integers only in usage: strict OpenAI clients parse every field as a count
    assert body["usage"] == {
        "prompt_tokens": 40,
        "completion_tokens": 3,
        "total_tokens": 43,
        "context_tokens_removed": 120,
    }
    assert body["prunekit"] == {"route": "rag", "savings": final["savings"], "citations": [1]}
