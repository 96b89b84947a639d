"""The AGP face: POST /v1/agents and `prunekit agents` run the pruner's team on the embedded model."""

from __future__ import annotations

import httpx
import pytest

from app.agents import make_task
from decoding.errors import InvalidRequestError
from tests.conftest import SERVICE_KEY

PARAGRAPH = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."


def post(live_service, body):
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    return httpx.post(f"{live_service.url}/v1/agents", json=body, headers=headers, timeout=600)


def test_a_span_task_runs_the_chosen_team(live_service):
    response = post(
        live_service, {"task": "When was the Eiffel Tower completed?", "domain": "general", "context": PARAGRAPH}
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["agents_total"] == 9 and 1 <= run["agents_kept"] <= 9
    ran = {turn["agent"] for turn in run["turns"] if turn["agent"] >= 0}
    assert ran <= set(run["topology"]["agents"])  # pruned agents never ran
    assert run["agent_calls_avoided"] == (9 - run["agents_kept"]) * run["topology"]["rounds"]
    assert run["llm_calls"] == len(run["turns"]) and run["tokens"] > 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"task": "", "domain": "math"}, "task"),
        ({"task": "x", "domain": "poetry"}, "domain"),
        ({"task": "Who?", "domain": "general"}, "give context"),
        ({"task": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_agent_requests(live_service, body, fragment):
    response = post(live_service, body)
    assert response.status_code == 400 and fragment in response.json()["error"]["message"]


def test_make_task_formats():
    assert make_task("math", "1+1?").answer_format == "number"
    assert make_task("general", "Which?", choices=("A", "B")).answer_format == "choice"
    assert make_task("code", "def f(): ...").answer_format == "code"
    with pytest.raises(InvalidRequestError):
        make_task("math", "   ")
