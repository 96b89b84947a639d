"""Stage-I records: AGP's files load, ours round-trip in the same layout, bad records are refused."""

from __future__ import annotations

import json

import pytest

from prunekit.graph_pruning.data import AGP_STAGE1_FILES
from prunekit.graph_pruning.errors import InvalidRecordError
from prunekit.graph_pruning.records import StageRecord, load_records, record_from_topology, save_records
from prunekit.graph_pruning.topology import Topology
from tests.conftest import require_data


@pytest.mark.data
@pytest.mark.parametrize(("domain", "n", "count"), [("math", 4, 94), ("general", 9, 138), ("code", 5, 140)])
def test_agp_records_load(domain: str, n: int, count: int) -> None:
    records = load_records(require_data(AGP_STAGE1_FILES[domain]), n)
    assert len(records) == count and all(r.score is None for r in records)
    with pytest.raises(InvalidRecordError, match="the pool has"):
        load_records(require_data(AGP_STAGE1_FILES[domain]), n + 1)


def test_round_trip_keeps_agp_layout(tmp_path) -> None:
    topology = Topology.build(4, [0, 2, 3], [(0, 2), (2, 3)])
    record = record_from_topology("What is 2 + 2?", topology, score=1.0, tokens=321, domain="math")
    path = save_records(tmp_path / "r.json", [record])
    raw = json.loads(path.read_text())
    assert set(raw[0]) == {"task", "edge_weight", "mask", "score", "tokens", "domain"}
    assert raw[0]["mask"] == [0.0, 1.0, 0.0, 0.0] and raw[0]["edge_weight"][0][2] == 1.0
    back = load_records(path, 4)
    assert back == [record] and back[0].kept == [0, 2, 3]


def test_targets_mask_pruned_agents() -> None:
    record = StageRecord(task="t", edge_weight=[[0, 0.5, 0.4], [0.5, 0, 0.3], [0.4, 0, 0]], mask=[0, 1, 0])
    assert record.keep_target() == [1.0, 0.0, 1.0]
    # edges touching the pruned agent 1 are 0 even though the record has weight there; self edges are 0
    assert record.edge_target() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "bad",
    [
        {"task": "t", "edge_weight": [[0, 1], [1, 0]], "mask": [0, 0.5]},
        {"task": "t", "edge_weight": [[0, 1]], "mask": [0, 0]},
        {"task": " ", "edge_weight": [[0]], "mask": [0]},
    ],
)
def test_bad_records_are_refused(tmp_path, bad: dict) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([bad]))
    with pytest.raises(InvalidRecordError, match="record 0"):
        load_records(path)


def test_not_a_list(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"task": "t"}')
    with pytest.raises(InvalidRecordError, match="JSON list"):
        load_records(path)
