"""Deco-G's guidance weight, chosen per task on TRAINING items and stored in the HMM's config (`train guidance`).

The weight is the exponent of the HMM term in the guided distribution (`guidance.py`); 1.0 is Deco-G's plain
product of the two. An HMM distilled from a 135M model is a rough guide, and a smaller weight can serve a task
better, so each candidate weight is tried on training items of the task (a `GuidanceTrial`: guided decoding and
its metrics; `eval.decoding.guidance_trial` is the one the command line runs) and the best task score wins, ties
to the more natural text (`loglik_per_token`). The choice goes into the HMM's `config.json` (`metadata.guidance`),
next to the weights it was chosen for; the service and the evaluation read it back (`guided.stored_guidance_weight`).

>>> trial = {0.5: {"f1": 0.3, "loglik_per_token": -1.0}, 1.0: {"f1": 0.1, "loglik_per_token": -0.5}}.__getitem__
>>> choose_guidance_weight(trial, "extract", (0.5, 1.0))[0]
0.5
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunekit.decoding.decog.prompts import is_evaluation_file
from prunekit.decoding.errors import InvalidRequestError, LeakageError

__all__ = [
    "TASK_SCORES",
    "GuidanceTrial",
    "check_training_files",
    "choose_guidance_weight",
    "store_guidance_weights",
]

# The metric each task's weight is chosen by (the rows of a trial also hold the others).
TASK_SCORES = {"math": "accuracy", "extract": "f1", "judge": "accuracy"}

# Metrics of guided decoding of one task on training items at one guidance weight; they must hold the task's score
# (`TASK_SCORES`) and `loglik_per_token`.
GuidanceTrial = Callable[[float], Mapping[str, float]]

Table = dict[float, dict[str, float]]  # {weight: metrics}


def check_training_files(paths: Sequence[str | Path]) -> None:
    """`LeakageError` when a file looks like an evaluation split (test, dev, AGP's stage I, GSM8K)."""
    for path in paths:
        if is_evaluation_file(path):
            raise LeakageError(f"{path}: choose the guidance weight on training data only")


def choose_guidance_weight(trial: GuidanceTrial, task: str, weights: Sequence[float]) -> tuple[float, Table]:
    """The weight among `weights` whose `trial` scores best on `task`, ties to the higher `loglik_per_token`.

    Returns (best weight, {weight: metrics}).
    """
    if task not in TASK_SCORES:
        raise InvalidRequestError(f"task must be one of {tuple(TASK_SCORES)}, got {task!r}")
    if not weights:
        raise InvalidRequestError("give at least one candidate weight")
    table = {w: dict(trial(w)) for w in weights}
    score = TASK_SCORES[task]
    best = max(weights, key=lambda w: (table[w][score], table[w]["loglik_per_token"]))
    return best, table


def store_guidance_weights(
    hmm_dir: str | Path, tables: Mapping[str, Table], chosen: Mapping[str, float], source: str
) -> Path:
    """Write the weights chosen per task on training items into the HMM's `config.json` (`metadata.guidance`).

    Tables of earlier runs for other tasks are kept. The general weight (for formats no task covers, e.g. a user's
    `response_format`) is the one with the best mean score over every stored task, each task's score divided by its
    best, so that no task dominates by its scale. Returns the config's path.
    """
    path = Path(hmm_dir) / "config.json"
    cfg = json.loads(path.read_text())
    guidance = cfg.setdefault("metadata", {}).setdefault("guidance", {})
    stored = guidance.setdefault("tables", {})
    stored.update({task: {str(w): row for w, row in table.items()} for task, table in tables.items()})
    guidance.setdefault("by_task", {}).update(chosen)
    guidance["chosen_on"] = source
    general = _general_weight(stored)
    guidance["weight"] = general if general is not None else guidance.get("weight", 1.0)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def _general_weight(stored: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> float | None:
    """The weight every stored task tried with the best mean relative score; None when they share none."""
    common = set.intersection(*({float(w) for w in table} for table in stored.values()))

    def mean_relative(w: float) -> float:
        rel = []
        for task, table in stored.items():
            key = TASK_SCORES[task]
            best = max(row[key] for row in table.values())
            rel.append(table[str(w)][key] / best if best > 0 else 1.0)
        return sum(rel) / len(rel)

    return max(sorted(common), key=mean_relative) if common else None
