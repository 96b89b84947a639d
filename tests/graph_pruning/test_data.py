"""Benchmark loaders, scoring, and the guarantee that evaluation never sees a stage-I task."""

from __future__ import annotations

import json

import pytest

from prunekit.graph_pruning.data import (
    AGP_STAGE1_FILES,
    BENCHMARKS,
    BenchmarkItem,
    agp_stage1_file,
    check_no_leakage,
    exclude_stage1,
    gold_number,
    heldout,
    load_benchmark,
    normalize_task,
    score_answer,
    stage1_files,
    stage1_task_keys,
    training_items,
)
from prunekit.graph_pruning.errors import LeakageError, UnknownBenchmarkError
from prunekit.graph_pruning.records import record_from_topology, save_records
from prunekit.graph_pruning.task import AgentTask
from prunekit.graph_pruning.topology import single
from tests.conftest import SHARED_DATA, require_data


def test_normalize_and_gold_number() -> None:
    assert normalize_task("Janet\u2019s  ducks\n") == normalize_task("janet's ducks")
    assert gold_number("so 9 * 2 = 18\n#### 1,018") == 1018.0


def test_stage1_files_are_agps_three_then_ours(tmp_path, monkeypatch) -> None:
    assert agp_stage1_file("code", tmp_path) == tmp_path / "agp" / "stage1_coding.json"
    files = stage1_files(tmp_path, [tmp_path / "ours.json"])
    assert files == [tmp_path / AGP_STAGE1_FILES[d] for d in ("math", "general", "code")] + [tmp_path / "ours.json"]
    monkeypatch.setenv("PRUNEKIT_SHARED_DATA", str(tmp_path / "shared"))
    assert stage1_files() == [tmp_path / "shared" / f for f in AGP_STAGE1_FILES.values()]


def test_exclusion_on_handmade_items(tmp_path) -> None:
    items = [
        BenchmarkItem("a", "toy", AgentTask("What is 1 + 1?"), ("2",)),
        BenchmarkItem("b", "toy", AgentTask("What is 2 + 2?"), ("4",)),
        BenchmarkItem("c", "toy", AgentTask("Who won?", "span", context="The Broncos won."), ("Broncos",)),
    ]
    path = save_records(
        tmp_path / "ours.json",
        [
            record_from_topology("  what is 1 +  1? ", single(4)),
            record_from_topology("Who won?\n\nThe Broncos won.", single(4)),
        ],
    )
    kept = exclude_stage1(items, stage1_task_keys([path]))
    assert [it.id for it in kept] == ["b"]
    with pytest.raises(LeakageError):
        check_no_leakage(["WHAT is 2 + 2?"], items)
    check_no_leakage(["What is 3 + 3?"], items)


def test_score_answer_kinds() -> None:
    number = BenchmarkItem("n", "toy", AgentTask("q"), ("18.0",))
    assert score_answer(number, "18") == 1.0 and score_answer(number, "17") == 0.0 and score_answer(number, "") == 0.0
    choice = BenchmarkItem("c", "toy", AgentTask("q", "choice", choices=("A", "B", "C", "D", "E")), ("E",))
    assert score_answer(choice, "E") == 1.0 and score_answer(choice, "B") == 0.0
    span = BenchmarkItem("s", "toy", AgentTask("q", "span", context="c"), ("Denver Broncos", "Broncos"))
    assert score_answer(span, "the Broncos") == 1.0
    code = BenchmarkItem(
        "h",
        "toy",
        AgentTask("def f(x):\n", "code", entry_point="f"),
        ("def check(candidate):\n    assert candidate(2) == 3\ncheck(f)\n",),
    )
    assert score_answer(code, "def f(x):\n    return x + 1") == 1.0
    assert score_answer(code, "def f(x):\n    return x") == 0.0


def test_unknown_benchmark() -> None:
    with pytest.raises(UnknownBenchmarkError):
        load_benchmark("mmlu")
    with pytest.raises(UnknownBenchmarkError):
        load_benchmark("gsm8k", "train")
    with pytest.raises(UnknownBenchmarkError):
        training_items("gsm8k")


@pytest.mark.data
@pytest.mark.parametrize(
    ("name", "count", "fmt"),
    [
        ("gsm8k", 1319, "number"),
        ("multiarith", 180, "number"),
        ("svamp", 300, "number"),
        ("aqua", 54, "choice"),
        ("humaneval", 161, "code"),
        ("squad", 4961, "span"),
    ],
)
def test_loaders(name: str, count: int, fmt: str) -> None:
    require_data("agp/gsm8k_test.jsonl")
    items = load_benchmark(name)
    assert len(items) == count and all(it.task.answer_format == fmt and it.gold for it in items)
    assert len({it.id for it in items}) == count
    if name == "aqua":
        assert items[0].task.choices == ("A", "B", "C", "D", "E") and "Option B: 12%" in items[0].task.prompt
    if name == "humaneval":
        assert items[0].task.visible_tests and items[0].task.entry_point
    if name == "gsm8k":
        assert items[0].gold == ("18.0",)


@pytest.mark.data
@pytest.mark.parametrize("name", BENCHMARKS)
def test_evaluation_never_sees_a_stage1_task(name: str) -> None:
    require_data(AGP_STAGE1_FILES["math"])
    stage1 = set()
    for rel in AGP_STAGE1_FILES.values():
        stage1 |= {normalize_task(r["task"]) for r in json.loads((SHARED_DATA / rel).read_text())}
    items = heldout(name)
    assert items
    for it in items:
        assert normalize_task(it.task.text) not in stage1 and normalize_task(it.task.prompt) not in stage1


@pytest.mark.data
def test_known_leaks_are_removed() -> None:
    require_data("agp/gsm8k_test.jsonl")
    assert len(heldout("gsm8k")) == 1319 - 94  # every math stage-I task is a GSM8K test problem
    assert len(heldout("humaneval")) == 161 - 140  # and every coding one a HumanEval problem


@pytest.mark.data
@pytest.mark.parametrize("name", ["multiarith", "svamp"])
def test_training_items_are_disjoint_from_evaluation(name: str) -> None:
    require_data("agp/multiarith_train.json")
    train = training_items(name)
    check_no_leakage([it.task.text for it in train], load_benchmark(name))
    if name == "multiarith":
        assert len(train) == 420 - 6  # MultiArith's train and test files share 6 problems
