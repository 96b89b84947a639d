"""POST /v1/prune and `prunekit prune` with the shipped context pruner."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.app.test_cli import PRUNEKIT
from tests.conftest import SERVICE_KEY

CONTEXT = "The Eiffel Tower is in Paris. Cats purr loudly. It was finished in 1889."


def post(live_service, body):
    return httpx.post(
        f"{live_service.url}/v1/prune", json=body, headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=120
    )


def test_prune_a_batch(live_service):
    body = {
        "items": [
            {"question": "When was the Eiffel Tower finished?", "contexts": [CONTEXT, "Bananas are yellow."]},
            {"question": "Do cats purr?", "contexts": [CONTEXT]},
        ],
        "threshold": 0.3,
    }
    response = post(live_service, body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert [len(r) for r in data["results"]] == [2, 1]
    for item, results in zip(body["items"], data["results"], strict=True):
        for context, r in zip(item["contexts"], results, strict=True):
            kept = [context[a:b] for a, b in (r["sentence_spans"][i] for i in r["kept_sentences"])]
            assert r["pruned_text"] == " ".join(kept)  # a verbatim subset of the context
    usage = data["usage"]
    assert (
        usage["context_tokens"] >= usage["kept_tokens"]
        and usage["removed_tokens"] == usage["context_tokens"] - usage["kept_tokens"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"question": "", "contexts": ["x"]}]},
        {"items": [{"question": "q", "contexts": []}]},
        {"items": [{"question": "q", "contexts": ["x"] * 65}]},
        {"items": [{"question": "q", "contexts": ["x"]}], "threshold": 2},
        {"items": [{"question": "q", "contexts": [5]}]},
    ],
)
def test_bad_prune_requests(live_service, body):
    response = post(live_service, body)
    assert response.status_code == 400 and response.json()["error"]["message"]


def test_cli_prune_file_and_stdin(tmp_path):
    path = tmp_path / "ctx.txt"
    path.write_text(CONTEXT)
    done = subprocess.run(
        [*PRUNEKIT, "prune", "-q", "When was it finished?", str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for sentence in re.split(r"(?<=\.)\s+", done.stdout.strip()):
        assert sentence in CONTEXT
    stdin = json.dumps({"question": "Where is the tower?", "contexts": [CONTEXT]})
    done = subprocess.run([*PRUNEKIT, "prune", "--json"], input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["results"][0]["tokens_before"] > 0
    missing = subprocess.run([*PRUNEKIT, "prune", str(path)], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "--question" in missing.stderr
