"""Choosing Deco-G's guidance weight on training items and storing it in the HMM's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.decoding.decog.guidance_weights import (
    check_training_files,
    choose_guidance_weight,
    store_guidance_weights,
)
from prunekit.decoding.decog.guided import stored_guidance_weight
from prunekit.decoding.errors import LeakageError


def _table(scores: dict[float, float], key: str) -> dict[float, dict[str, float]]:
    return {w: {key: s, "loglik_per_token": -1.0} for w, s in scores.items()}


def test_stored_weights_per_task_and_general(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 4, "metadata": {"model": "x"}}))
    math_table = _table({0.5: 0.2, 1.0: 0.4}, "accuracy")  # relative: 0.5, 1.0
    store_guidance_weights(tmp_path, {"math": math_table}, {"math": 1.0}, "multiarith_train.json")
    extract_table = _table({0.5: 0.30, 1.0: 0.10}, "f1")  # relative: 1.0, 0.33
    store_guidance_weights(tmp_path, {"extract": extract_table}, {"extract": 0.5}, "train_subset-v1.1.json")
    meta = json.loads((tmp_path / "config.json").read_text())["metadata"]
    assert meta["model"] == "x" and set(meta["guidance"]["tables"]) == {"math", "extract"}  # earlier runs kept
    assert stored_guidance_weight(meta, "math") == 1.0
    assert stored_guidance_weight(meta, "extract") == 0.5
    # general: mean relative score 0.75 at w=0.5 vs 0.67 at w=1.0
    assert stored_guidance_weight(meta, "judge") == stored_guidance_weight(meta) == 0.5
    assert stored_guidance_weight({}, "math") == 1.0


def test_the_best_task_score_wins_and_ties_go_to_the_more_natural_text() -> None:
    rows = {
        0.25: {"accuracy": 0.4, "loglik_per_token": -2.0},
        0.5: {"accuracy": 0.4, "loglik_per_token": -1.0},  # tied on accuracy, more natural
        1.0: {"accuracy": 0.3, "loglik_per_token": -0.5},
    }
    tried: list[float] = []

    def trial(weight: float) -> dict[str, float]:
        tried.append(weight)
        return rows[weight]

    best, table = choose_guidance_weight(trial, "math", (0.25, 0.5, 1.0))
    assert best == 0.5 and tried == [0.25, 0.5, 1.0] and table == rows
    with pytest.raises(ValueError, match="task"):
        choose_guidance_weight(trial, "poetry", (0.5,))


@pytest.mark.parametrize("name", ["dev-v1.1.half_A.json", "multiarith_test.json", "gsm8k_train.jsonl",
                                  "stage1_math_reasoning.json"])  # fmt: skip
def test_the_weight_is_chosen_on_training_files_only(name: str) -> None:
    with pytest.raises(LeakageError):
        check_training_files([Path("agp/multiarith_train.json"), Path(name)])
    check_training_files([Path("agp/multiarith_train.json"), Path("qa/squad_v1.1/train_subset-v1.1.json")])
