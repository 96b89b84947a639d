"""Stage-I records: per task, the agent mask and edge weights of a good graph, in AGP's JSON layout.

AGP (arXiv 2506.02951) stores a JSON list of `{"task", "edge_weight", "mask"}`: `edge_weight` is N×N with
row = source, `mask[i] == 1` means agent i was PRUNED (see `graph_pruning.pools` for how this was established).
Our collector writes the same layout plus optional fields `score` (the graph's score on the task), `tokens`
(prompt + completion tokens it cost), `domain` and `source`; AGP's files load unchanged, and files we write load
in AGP's code (extra keys are ignored there). Our records set `edge_weight[i][j]` to 1.0 for each realised edge,
where AGP's hold the edge probability of every candidate edge that did not close a cycle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from prunekit.graph_pruning.errors import InvalidRecordError
from prunekit.graph_pruning.topology import Topology

__all__ = ["RECORDS_DIR", "StageRecord", "load_records", "record_from_topology", "save_records", "shipped_record_files"]

logger = logging.getLogger(__name__)

# our stage-I records, committed as training data (`<domain>_<model>.json`); every evaluation excludes their tasks
RECORDS_DIR = Path(__file__).resolve().parent / "records"


class StageRecord(BaseModel):
    """One stage-I record."""

    model_config = ConfigDict(extra="ignore")

    task: str
    edge_weight: list[list[float]]
    mask: list[float]
    score: float | None = None
    tokens: int | None = None
    domain: str | None = None
    source: str | None = None

    @field_validator("mask")
    @classmethod
    def _binary_mask(cls, mask: list[float]) -> list[float]:
        if any(m not in (0.0, 1.0) for m in mask):
            raise ValueError(f"mask entries must be 0 (kept) or 1 (pruned), got {mask}")
        return mask

    @model_validator(mode="after")
    def _square(self) -> StageRecord:
        n = len(self.mask)
        if n == 0 or len(self.edge_weight) != n or any(len(row) != n for row in self.edge_weight):
            raise ValueError(f"edge_weight must be {n}×{n} to match mask of length {n}")
        if not self.task.strip():
            raise ValueError("task is empty")
        return self

    @property
    def n_agents(self) -> int:
        return len(self.mask)

    @property
    def kept(self) -> list[int]:
        """Indices of kept agents (mask == 0)."""
        return [i for i, m in enumerate(self.mask) if m == 0.0]

    def keep_target(self) -> list[float]:
        """1.0 = keep: the target of the pruner's keep head."""
        return [1.0 - m for m in self.mask]

    def edge_target(self) -> list[list[float]]:
        """1.0 where both endpoints are kept and the record has a (non-zero) edge; 0.0 elsewhere and on the diagonal.

        This is AGP's supervision: `edge_weight != 0` among kept agents, everything else pushed to 0.
        """
        keep = self.keep_target()
        n = self.n_agents
        return [
            [float(i != j and keep[i] == 1.0 and keep[j] == 1.0 and self.edge_weight[i][j] != 0.0) for j in range(n)]
            for i in range(n)
        ]


def record_from_topology(
    task: str,
    topology: Topology,
    *,
    score: float | None = None,
    tokens: int | None = None,
    domain: str | None = None,
    source: str | None = None,
) -> StageRecord:
    """A record for a graph that was run: realised edges weigh 1.0, pruned agents have mask 1."""
    n = topology.n_agents
    edges = set(topology.edges)
    weights = [[1.0 if (i, j) in edges else 0.0 for j in range(n)] for i in range(n)]
    return StageRecord(
        task=task, edge_weight=weights, mask=topology.mask(), score=score, tokens=tokens, domain=domain, source=source
    )


def load_records(path: str | Path, n_agents: int | None = None) -> list[StageRecord]:
    """Read a JSON list of records (AGP's layout or ours); check every record has `n_agents` agents when given."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(f"{path} is not valid JSON ({exc}); stage-I files are one JSON list") from exc
    if not isinstance(raw, list):
        raise InvalidRecordError(f"{path} must hold a JSON list of records, got {type(raw).__name__}")
    records: list[StageRecord] = []
    for i, item in enumerate(raw):
        try:
            record = StageRecord.model_validate(item)
        except ValidationError as exc:
            raise InvalidRecordError(f"{path} record {i}: {exc.errors()[0]['msg']}") from exc
        if n_agents is not None and record.n_agents != n_agents:
            raise InvalidRecordError(f"{path} record {i} has {record.n_agents} agents; the pool has {n_agents}")
        records.append(record)
    logger.info("loaded %d stage-I records from %s", len(records), path)
    return records


def save_records(path: str | Path, records: Iterable[StageRecord] | Sequence[StageRecord]) -> Path:
    """Write records as one JSON list (None fields left out, so the file stays in AGP's layout); atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [r.model_dump(exclude_none=True) for r in records]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def shipped_record_files(domain: str | None = None) -> list[Path]:
    """Our committed stage-I record files (`graph_pruning/records/<domain>_*.json`), all domains when None.

    Resume bookkeeping (`*.progress.json`) is not a record file.
    """
    pattern = f"{domain}_*.json" if domain else "*.json"
    return sorted(p for p in RECORDS_DIR.glob(pattern) if not p.name.endswith(".progress.json"))
