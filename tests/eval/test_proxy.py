"""`eval.proxy` end to end on two hand-written HotpotQA items: llama-cpp-python's server as the upstream, the proxy
in front of it, both shapes (a user message with a Context block, tool results)."""

from __future__ import annotations

import json

import pytest

from prunekit.app.proxy import ProxySettings, create_proxy_app
from prunekit.app.proxy.background import serve_in_background
from prunekit.app.proxy.llama_server import LLAMA_SERVER_MODEL, llama_server, llama_server_available
from prunekit.eval.proxy import SHAPES, evaluate_proxy, messages_for
from prunekit.eval.qa import load_qa
from tests.conftest import require_part

ITEMS = [
    {
        "id": "a", "question": "Which city is the Eiffel Tower in?", "answer": "Paris", "type": "bridge",
        "level": "easy", "supporting_facts": {"title": ["Eiffel Tower"], "sent_id": [0]},
        "context": {
            "title": ["Eiffel Tower", "Bananas", "Jazz"],
            "sentences": [
                ["The Eiffel Tower is a lattice tower in Paris.", " It was completed in 1889."],
                ["Bananas are rich in potassium.", " They grow in the tropics."],
                ["Jazz began in New Orleans.", " It uses blue notes."],
            ],
        },
    },
    {
        "id": "b", "question": "Which country is Mount Fuji in?", "answer": "Japan", "type": "bridge",
        "level": "easy", "supporting_facts": {"title": ["Mount Fuji"], "sent_id": [0]},
        "context": {
            "title": ["Oslo", "Mount Fuji", "Tea"],
            "sentences": [
                ["Oslo is the capital of Norway.", " It lies on a fjord."],
                ["Mount Fuji is the highest mountain in Japan.", " It is a volcano."],
                ["Tea is brewed from leaves.", " It is drunk hot or cold."],
            ],
        },
    },
]  # fmt: skip


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "tiny_hotpot.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in ITEMS) + "\n")
    return path


def test_both_shapes_carry_the_passages(data):
    item = load_qa(data)[0]
    user, tool = messages_for(item, "user"), messages_for(item, "tool")
    assert "Context:\n[1] Eiffel Tower\n" in user[0]["content"] and user[0]["content"].endswith(item.question)
    assert tool[-1]["role"] == "tool" and "[3] Jazz" in tool[-1]["content"] and tool[1]["content"] == item.question


@pytest.mark.slow
def test_proxy_vs_direct_on_a_real_upstream(data):
    require_part(llama_server_available(), "llama-cpp-python's server: pip install 'llama-cpp-python[server]'")
    with llama_server(n_ctx=1024) as direct:
        settings = ProxySettings(upstream=direct, mode="on")  # tiny passages: past the break-even gate's floor
        with serve_in_background(create_proxy_app(settings)) as proxy:
            result = evaluate_proxy(direct, f"{proxy}/v1", data, model=LLAMA_SERVER_MODEL, max_tokens=4)
    m = result.metrics
    for shape in SHAPES:
        assert m[f"{shape}_direct.error_rate"] == 0 and m[f"{shape}_proxy.error_rate"] == 0
        assert m[f"{shape}_proxy.pruned_share"] == 1.0
        assert m[f"{shape}_proxy.prompt_tokens"] < m[f"{shape}_direct.prompt_tokens"]
        assert 0 < m[f"{shape}_proxy.prompt_token_reduction"] < 1
    assert len(result.items) == 2 * len(SHAPES) * 2
