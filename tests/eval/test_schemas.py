"""`prunekit eval schemas`: JSONSchemaBench read from its archive or folder, outlines-core under a deadline, and
one tiny run on the embedded model over hand-written schemas laid out like the dataset."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.eval.jsonschemabench import ARCHIVE, load_schemas
from prunekit.eval.outlines_compile import OutlinesCompiler
from prunekit.eval.schemas import evaluate_schemas, instance_messages, shortest_answer_tokens
from tests.conftest import require_data

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
TAGS = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
    "required": ["tags"],
}
REFUSED = {"type": "object", "not": {"type": "string"}}  # `not`: a keyword llguidance cannot enforce
SCHEMAS = {"Flat/p.json": PERSON, "Flat/refused.json": REFUSED, "Nested/t.json": TAGS}


def _archive(folder: Path, files: dict[str, object]) -> Path:
    """`folder/schemas.tar.xz` holding `files` as the shared copy lays them out (`<Subset>/<file>.json`)."""
    with tarfile.open(folder / ARCHIVE, "w:xz") as tar:
        for name, schema in files.items():
            data = json.dumps(schema).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder


def test_schemas_load_from_the_archive_and_from_a_folder(tmp_path):
    archived = load_schemas(_archive(tmp_path, SCHEMAS))
    unpacked = tmp_path / "unpacked"
    for name, schema in SCHEMAS.items():
        (unpacked / name).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / name).write_text(json.dumps(schema))
    (unpacked / "Flat" / "broken.json").write_text("{not json")
    assert sorted(i.id for i in archived) == sorted(i.id for i in load_schemas(unpacked)) == sorted(SCHEMAS)
    one = load_schemas(tmp_path, limit_per_subset=1, seed=3)
    assert [i.subset for i in one] == ["Flat", "Nested"] and one == load_schemas(tmp_path, limit_per_subset=1, seed=3)


def test_a_folder_without_schemas_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidRequestError, match=r"schemas\.tar\.xz"):
        load_schemas(tmp_path)


def test_the_shared_collection_has_its_subsets():
    items = load_schemas(require_data("jsonschemabench"), limit_per_subset=1)
    assert {"Github_easy", "Kubernetes", "Glaiveai2K", "WashingtonPost"} <= {i.subset for i in items}


def test_a_long_schema_is_cut_in_the_prompt_only():
    schema = {"type": "object", "description": "x" * 10_000}
    content = instance_messages(schema)[0]["content"]
    assert len(content) < 3_200 and content.endswith("...(cut)")


def test_the_shortest_answer_is_measured_in_tokens(embedded_model):
    """A schema whose every valid answer is long cannot be answered within a small `max_tokens` by any engine: the
    evaluation measures that length, so those cuts are told apart from failures of enforcement."""
    vocab = embedded_model.vocabulary()
    short = shortest_answer_tokens(vocab, PERSON)
    assert short is not None and short < 20
    many = {"type": "object", "properties": {f"key_{i}": {"type": "string"} for i in range(40)},
            "required": [f"key_{i}" for i in range(40)]}  # fmt: skip
    assert shortest_answer_tokens(vocab, many) > 100
    assert shortest_answer_tokens(vocab, many, limit=50) is None


def test_outlines_is_killed_at_its_deadline_and_the_next_schema_gets_a_fresh_child(embedded_model):
    vocab = embedded_model.vocabulary()
    with OutlinesCompiler(vocab, timeout_s=0.005) as compiler:  # indexing takes ~50 ms over 49k tokens
        assert compiler.compile(PERSON).error == "timeout"
        compiler.timeout_s = 60.0
        verdict = compiler.compile(PERSON)
        assert verdict.accepted and '"name"' in verdict.regex
        assert not compiler.compile({"type": "no-such-type"}).accepted


def test_a_tiny_run_reports_coverage_and_compliance(tmp_path, embedded_model):
    result = evaluate_schemas(
        embedded_model, _archive(tmp_path, SCHEMAS), limit_per_subset=2, generate=1, max_tokens=64, concurrency=2
    )
    m = result.metrics
    assert m["Flat.prunekit_accepted"] == 0.5 and m["Flat.llguidance_accepted"] == 0.5
    assert m["Flat.decog"] == 1 and m["Nested.llguidance"] == 1  # PERSON is flat: Deco-G; TAGS nests: llguidance
    assert m["all.prunekit_generated"] == 2 and m["all.prunekit_valid"] == 1.0
    assert m["all.outlines_accepted"] > 0 and "all.outlines_valid" in m
    assert m["all.over_budget"] == 0 and m["all.prunekit_valid_in_budget"] == 1.0
    refused = next(r for r in result.items if r["id"] == "Flat/refused.json")
    assert "not" in refused["prunekit"]["error"] and "generation" not in refused
    json.dumps(result.to_json())  # the records are plain JSON
