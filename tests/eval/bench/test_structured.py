"""`prunekit bench structured` on the embedded model, and `bench openai-structured` against the real service through
the official `openai` client, both on tiny settings."""

from __future__ import annotations

import time

from prunekit.eval.bench.openai_structured import bench_openai_structured, pick_schemas
from prunekit.eval.bench.structured import SMALL_SCHEMA, StepClock, bench_structured
from prunekit.eval.jsonschemabench import SchemaItem
from tests.conftest import SERVICE_KEY

POINT = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x", "y"],
}
REFUSED = {"type": "object", "not": {"type": "string"}}


def test_the_step_clock_times_whole_steps():
    clock = StepClock()
    for _ in range(3):
        assert clock(None, "scores") == "scores"
        time.sleep(0.01)
    steps = clock.steps_ms()
    assert len(steps) == 2 and all(step >= 9 for step in steps)


def test_the_small_schema_is_timed_unconstrained_masked_and_under_decog(embedded_model):
    figures = bench_structured(embedded_model, rounds=1, max_tokens=32, schemas={"small": SMALL_SCHEMA})
    for method in ("unconstrained", "llguidance", "decog", "outlines"):
        assert figures[f"small.{method}.ms_per_token"] > 0
    assert "small.decog.slowdown_pct" in figures and "small.unconstrained.slowdown_pct" not in figures
    assert figures["small.decog.valid"] == 1.0  # Deco-G knows the budget: the object is always finished


def test_only_schemas_prunekit_accepts_are_picked(embedded_model):
    items = [SchemaItem("A", f"{i}.json", REFUSED if i % 2 else POINT) for i in range(6)]
    chosen = pick_schemas(items, 2, embedded_model.vocabulary())
    assert len(chosen) == 2 and all(item.schema == POINT for item in chosen)


def test_the_openai_client_gets_valid_json_and_tool_calls(live_service):
    schemas = [SchemaItem("Tiny", "point.json", POINT), SchemaItem("Tiny", "small.json", SMALL_SCHEMA)]
    figures, records = bench_openai_structured(
        f"{live_service.url}/v1",
        schemas,
        api_key=SERVICE_KEY,
        requests=2,
        tool_requests=2,
        stream_pairs=1,
        max_tokens=96,
        concurrency=2,
    )
    assert figures["json_schema.valid"] == 1.0 and figures["json_schema.decog"] == 2, records["json_schema"]
    assert figures["tools.valid"] == 1.0, records["tools"]
    assert figures["tools_stream.equal"] == 1.0, records["tools_stream"]
